"""2.5-D training samples: adjacent normalized CT slices in, one SUV slice out.

Why: the demo network sees `context` neighbouring slices exactly as `ModelPackage.predict`
feeds them (edge-padded in z, replicate-padded to a multiple of the network's stride), so
training and inference agree voxel for voxel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pipeline.models.package import normalize
from pipeline.models.windows import CT_INPUT_WINDOW_HU
from training.pairs import Pair

CT_WINDOW = {"kind": "ct_window", "low": CT_INPUT_WINDOW_HU[0], "high": CT_INPUT_WINDOW_HU[1]}


class SliceSet:
    """All slices of all pairs in memory as float16 tensors (half the memory; 0.1 HU and
    0.01 SUV steps); `batch(indices)` returns float32 (x, y)."""

    def __init__(self, pairs: Sequence[Pair], context: int = 3, multiple: int = 8,
                 normalization: dict | None = None) -> None:
        half = context // 2
        self.context = context
        self.inputs: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.index: list[tuple[int, int]] = []
        hot: list[bool] = []
        for p, pair in enumerate(pairs):
            x = normalize(pair.ct.astype(np.float32), normalization or CT_WINDOW)
            x = np.pad(x, ((half, half), (0, 0), (0, 0)), mode="edge")
            ph, pw = (-x.shape[1]) % multiple, (-x.shape[2]) % multiple
            x = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="edge")
            y = np.pad(pair.suv, ((0, 0), (0, ph), (0, pw)), mode="edge")
            self.inputs.append(torch.from_numpy(np.ascontiguousarray(x, np.float16)))
            self.targets.append(torch.from_numpy(np.ascontiguousarray(y, np.float16)))
            for k in range(pair.suv.shape[0]):
                self.index.append((p, k))
                hot.append(bool(pair.suv[k].max() > 3.0))
        self.hot = torch.tensor(hot)

    def __len__(self) -> int:
        return len(self.index)

    def sampling_weights(self, hot_boost: float = 2.0) -> torch.Tensor:
        """Slices with hot voxels (lesions, kidneys) drawn `1 + hot_boost` times as often."""
        return 1.0 + hot_boost * self.hot.float()

    def batch(self, indices: Sequence[int], crop: int | None = None,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack samples, each cropped to `crop` x `crop` at a random place (None: the smallest
        common size, centred). Crops make CPU training steps cheap; the network is convolutional
        so it runs on whole slices afterwards."""
        xs, ys = [], []
        for i in indices:
            p, k = self.index[int(i)]
            xs.append(self.inputs[p][k : k + self.context])
            ys.append(self.targets[p][k : k + 1])
        h = min([t.shape[-2] for t in xs] + ([crop] if crop else []))
        w = min([t.shape[-1] for t in xs] + ([crop] if crop else []))
        x, y = [], []
        for tx, ty in zip(xs, ys, strict=True):
            top, left = _offset(tx.shape[-2] - h, crop, generator), _offset(tx.shape[-1] - w, crop,
                                                                            generator)
            x.append(tx[..., top : top + h, left : left + w])
            y.append(ty[..., top : top + h, left : left + w])
        return torch.stack(x).float(), torch.stack(y).float()


def _offset(room: int, crop: int | None, generator: torch.Generator | None) -> int:
    if not crop or room <= 0:
        return max(room, 0) // 2
    return int(torch.randint(0, room + 1, (1,), generator=generator))


def suv_weighted_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L2 weighted by (1 + target SUV), as the CT->PET paper weights its loss by SUV."""
    return ((1.0 + target) * (pred - target) ** 2).mean()
