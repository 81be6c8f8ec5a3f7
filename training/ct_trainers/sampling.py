"""Lesion-centred patch sampling and CT augmentation for the CT -> PET trainers.

Why: a liver lesion covers a few slices of a 64-80 slice study and a few percent of a slice, so
uniform (or hot-slice) sampling shows small lesions to the network rarely and mostly off-centre
in a crop; held-out misses were small and subtle lesions. Here a share `lesion_p` of the samples
is centred (with jitter) on a voxel of a hot region of the real PET (SUV > 2.5, the detection
threshold, or the SEG mask where one is given), each region drawn equally often whatever its
size, so a 8 mm lesion is seen as often as a kidney; the rest are random crops of random slices
(the cold liver, cysts and organ edges the network must keep cold).

Augmentation makes the network hold on other scanners' and generators' data: in-plane zoom and
rotation (body and lesion sizes), a global HU offset (calibration, contrast phase) and extra
Gaussian CT noise (dose, reconstruction), drawn per sample. Target SUV is warped with the CT.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F
from torch.utils.data import Sampler

from training.ct_noise import correlated
from training.pairs import Pair
from training.slices import SliceSet

log = logging.getLogger(__name__)

HOT_SUV = 2.5
HU_PER_UNIT = 200.0  # CT window -160..240 HU mapped to [-1, 1]: 1 unit = 200 HU


@dataclass
class Augment:
    """Per-sample augmentation ranges; zeros switch a part off."""

    zoom: float = 0.15  # in-plane scale drawn from [1 - zoom, 1 + zoom]
    rotate_deg: float = 10.0
    hu_shift: float = 15.0  # global offset drawn from [-hu_shift, hu_shift] HU
    noise_hu: float = 12.0  # extra noise sigma drawn from [0, noise_hu] HU
    noise_grain_px: float = 0.0  # its in-plane correlation: FWHM drawn from [0, this] pixels

    @property
    def off(self) -> bool:
        return not (self.zoom or self.rotate_deg or self.hu_shift or self.noise_hu)


def hot_regions(pairs: Sequence[Pair], threshold: float = HOT_SUV, min_voxels: int = 2
                ) -> list[tuple[int, np.ndarray]]:
    """(pair index, voxel indices (n, 3) z/y/x) per connected hot region of each pair.

    Single voxels over the threshold are PET noise in normal liver or blood far more often
    than lesions (about half of all regions in phantom PET), so regions need `min_voxels`."""
    out = []
    for p, pair in enumerate(pairs):
        source = pair.seg > 0 if pair.seg is not None and pair.seg.any() else pair.suv > threshold
        labels, n = ndimage.label(source)
        if not n:
            continue
        order = np.argsort(labels.ravel(), kind="stable")
        counts = np.bincount(labels.ravel(), minlength=n + 1)
        starts = np.cumsum(counts)[:-1]
        for k in range(1, n + 1):
            if counts[k] < min_voxels:
                continue
            flat = order[starts[k - 1]:starts[k - 1] + counts[k]]
            out.append((p, np.stack(np.unravel_index(flat, labels.shape), 1)))
    return out


class PatchSampler(Sampler):
    """Yields (slice index, centre y, centre x) or (slice index, -1, -1) for a random crop.

    `negatives` (set between epochs by hard-example mining) are regions the network paints hot
    where the PET is cold; `negative_p` of the crops are centred on them when there are any.
    `positives` (mined alike) are real hot regions the network misses; `positive_p` of the
    crops are centred on them, or on any hot region while none is missed."""

    def __init__(self, slices: SliceSet, regions: list[tuple[int, np.ndarray]], n: int,
                 lesion_p: float, crop: int | None, hot_boost: float,
                 generator: torch.Generator, negative_p: float = 0.0,
                 positive_p: float = 0.0) -> None:
        self.slices, self.regions, self.n = slices, regions, n
        self.lesion_p = lesion_p if regions else 0.0
        self.negative_p = negative_p
        self.negatives: list[tuple[int, np.ndarray]] = []
        self.positive_p = positive_p if regions else 0.0
        self.positives: list[tuple[int, np.ndarray]] = []
        self.crop, self.gen = crop, generator
        self.first = {}
        for i, (p, _k) in enumerate(slices.index):
            self.first.setdefault(p, i)
        self.weights = slices.sampling_weights(hot_boost)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        g = self.gen
        negative_p = self.negative_p if self.negatives else 0.0
        # Drawn for the whole epoch at once: one multinomial call per sample over tens of
        # thousands of slice weights costs ~1 ms, which capped a GPU run at ~1000 crops/s.
        kinds = torch.rand(self.n, generator=g).tolist()
        plain = torch.multinomial(self.weights, self.n, replacement=True, generator=g).tolist()
        for u, i in zip(kinds, plain, strict=True):
            if u < self.lesion_p:
                yield self._centred(self.regions)
            elif u < self.lesion_p + self.positive_p:
                yield self._centred(self.positives or self.regions)
            elif u < self.lesion_p + self.positive_p + negative_p:
                yield self._centred(self.negatives)
            else:
                yield i, -1, -1

    def _centred(self, regions: list[tuple[int, np.ndarray]]) -> tuple[int, int, int]:
        """A jittered centre on a random voxel of a random region (each region equally often)."""
        g = self.gen
        p, voxels = regions[int(torch.randint(len(regions), (1,), generator=g))]
        z, y, x = (int(v) for v in voxels[int(torch.randint(len(voxels), (1,), generator=g))])
        jitter = (self.crop or 64) // 3
        dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=g))
        return self.first[p] + z, y + dy, x + dx


def patch_batch(slices: SliceSet, items: Sequence[tuple[int, int, int] | int], crop: int | None,
                aug: Augment | None, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops (centred where given, else random) with augmentation; whole slices when no crop."""
    if crop is None:
        idx = [it if isinstance(it, int) else it[0] for it in items]
        x, y = slices.batch(idx, None, gen)
        return (_intensity(x, aug, gen), y) if aug else (x, y)
    xs, ys = [], []
    for it in items:
        i, cy, cx = (it, -1, -1) if isinstance(it, int) else it
        p, k = slices.index[int(i)]
        tx = slices.inputs[p][k:k + slices.context]
        ty = slices.targets[p][k:k + 1]
        h, w = tx.shape[-2:]
        if cy < 0:  # random crop: any centre that keeps most of the crop inside the slice
            cy = _uniform(crop / 2, max(h - crop / 2, crop / 2), gen)
            cx = _uniform(crop / 2, max(w - crop / 2, crop / 2), gen)
        x, y = _warp(torch.cat([tx, ty]).float(), float(cy), float(cx), crop, aug, gen)
        xs.append(x[:-1])
        ys.append(y)
    x = torch.stack(xs)
    return (_intensity(x, aug, gen) if aug else x), torch.stack(ys)


def _uniform(low: float, high: float, gen: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand(1, generator=gen))


def _warp(stack: torch.Tensor, cy: float, cx: float, crop: int, aug: Augment | None,
          gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A crop x crop patch centred at (cy, cx), zoomed/rotated; border values outside."""
    _, h, w = stack.shape
    scale, angle = 1.0, 0.0
    if aug is not None:
        scale = _uniform(1 - aug.zoom, 1 + aug.zoom, gen)
        angle = math.radians(_uniform(-aug.rotate_deg, aug.rotate_deg, gen))
    if scale == 1.0 and angle == 0.0:  # plain crop: exact voxels, no interpolation
        top = round(min(max(cy - crop / 2, 0), max(h - crop, 0)))
        left = round(min(max(cx - crop / 2, 0), max(w - crop, 0)))
        patch = stack[:, top:top + crop, left:left + crop]
        if patch.shape[-2:] != (crop, crop):
            patch = F.pad(patch[None], (0, crop - patch.shape[-1], 0, crop - patch.shape[-2]),
                          mode="replicate")[0]
        return patch, patch[-1:]
    # output pixel (u, v) around the centre -> input pixel, then to grid_sample's [-1, 1]
    r = torch.arange(crop, dtype=torch.float32) - (crop - 1) / 2
    v, u = torch.meshgrid(r, r, indexing="ij")
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    px = cx + cos * u - sin * v
    py = cy + sin * u + cos * v
    grid = torch.stack([(2 * px + 1) / w - 1, (2 * py + 1) / h - 1], -1)[None]
    out = F.grid_sample(stack[None], grid, mode="bilinear", padding_mode="border",
                        align_corners=False)[0]
    return out, out[-1:]


def _intensity(x: torch.Tensor, aug: Augment, gen: torch.Generator) -> torch.Tensor:
    """Global HU offset and extra noise per sample, in window units, clipped to [-1, 1]; the
    noise white, or with `noise_grain_px` correlated in-plane like a scanner's (training.ct_noise:
    networks that only saw white noise call its blobs lesions, CT_MODEL_HISTORY.md)."""
    b = x.shape[0]
    shift = (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * aug.hu_shift / HU_PER_UNIT
    sigma = torch.rand(b, 1, 1, 1, generator=gen) * aug.noise_hu / HU_PER_UNIT
    noise = torch.randn(x.shape, generator=gen)
    if aug.noise_grain_px > 0:
        fwhm = torch.rand(b, generator=gen) * aug.noise_grain_px
        noise = torch.stack([torch.from_numpy(correlated(n.numpy(), float(f)))
                             for n, f in zip(noise, fwhm, strict=True)])
    return (x + shift + noise * sigma).clamp(-1.0, 1.0)
