"""Weight averaging of the last epochs (Polyak / SWA style) for the exported package.

Why: with lesion-centred and hard-negative crops the networks' hot/cold operating point swings
from epoch to epoch (on 48 validation phantoms one FCN went 0.25 -> 0.67 -> 1.5 false positives
per case over three consecutive epochs), so the last epoch is a lottery ticket. The mean of the
last few epochs' weights sits in the middle of that swing. Each epoch's network weights are
kept as `snapshots/epochNNNN.safetensors` in the work dir (only the last `keep`), so a resumed
run averages the same epochs as an uninterrupted one.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

SNAPSHOTS = "snapshots"
_NAME = re.compile(r"epoch(\d{4,})\.safetensors$")


def _snapshots(folder: Path) -> list[tuple[int, Path]]:
    found = [(int(m.group(1)), p) for p in folder.glob("epoch*.safetensors")
             if (m := _NAME.search(p.name))]
    return sorted(found)


def save_snapshot(network: nn.Module, work: Path, epoch: int, keep: int) -> Path:
    """Store this epoch's weights; drop snapshots older than the last `keep` epochs."""
    folder = work / SNAPSHOTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"epoch{epoch:04d}.safetensors"
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()},
              str(tmp))
    tmp.replace(path)
    for number, old in _snapshots(folder):
        if number <= epoch - keep or number > epoch:  # too old, or left by an abandoned run
            old.unlink(missing_ok=True)
    return path


def average_snapshots(work: Path, last_epoch: int, count: int) -> tuple[dict, list[int]]:
    """Mean state dict of the snapshots of epochs last_epoch - count + 1 .. last_epoch
    (integer buffers such as BatchNorm's batch counter come from the newest one)."""
    chosen = [(n, p) for n, p in _snapshots(work / SNAPSHOTS) if last_epoch - count < n <= last_epoch]
    if not chosen:
        raise FileNotFoundError(f"no weight snapshots for epochs <= {last_epoch} in {work}")
    total: dict[str, torch.Tensor] = {}
    for _, path in chosen:
        for key, value in load_file(str(path)).items():
            if value.is_floating_point():
                total[key] = total.get(key, 0) + value.double()
            else:
                total[key] = value
    mean = {k: (v / len(chosen)).float() if v.is_floating_point() else v for k, v in total.items()}
    return mean, [n for n, _ in chosen]
