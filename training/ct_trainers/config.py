"""Settings of the CT -> PET trainers (`train_fcn`, `train_pix2pix`).

Why one dataclass: the manifest records it verbatim, so a package says how it was trained, and
`vpet train` can map its options onto it one to one. `None` means "the network's default".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass
class TrainConfig:
    """One training run. Defaults follow the paper / pix2pix; tests shrink `net` and sizes."""

    data: Path
    out: Path
    work_dir: Path | None = None  # checkpoints, curves, pair cache; default: <out>.work
    cache_dir: Path | None = None  # pair cache to share between runs; default: work_dir/pairs-cache
    val_data: Path | None = None  # held-out studies; default: `val_fraction` of `data`
    val_fraction: float = 0.2
    epochs: int = 20
    decay_epochs: int | None = None  # last epochs with linear lr decay to 0; None: epochs // 2
    batch_size: int | None = None  # None: fcn 8, pix2pix 1 (as published)
    lr: float | None = None  # None: fcn 1e-4, pix2pix 2e-4
    input_lr_factor: float = 1.0  # the first convolution's lr multiple (runtime.param_groups)
    betas: tuple[float, float] = (0.5, 0.999)
    crop: int | None = None  # random in-plane crop (multiple of the network stride); None: whole
    context: int = 1  # adjacent CT slices as input channels (1 = the paper's 2-D slices)
    spacing_mm: tuple[float, float, float] = (2.0, 2.0, 3.0)
    antialias: bool = True  # CT low-passed to the model grid before resampling (manifest input)
    suv_max: float = 20.0  # SUV clip of the paper; network units are SUV / suv_max
    loss: Literal["l2", "l1"] = "l2"
    weighted: bool = True  # per-pixel weight = target SUV (paper); False = plain loss
    weight_floor: float = 0.0  # weights clamp(SUV, floor); 0 = exactly the paper
    lam: float = 100.0  # pix2pix lambda on the pixel loss
    hot_boost: float = 2.0  # slices with SUV > 3 drawn 1 + hot_boost times as often
    lesion_p: float = 0.5  # share of crops centred on a hot region (sampling.py); 0 = off
    negative_p: float = 0.0  # share centred on mined false hot regions (hard_examples.py)
    positive_p: float = 0.0  # share centred on mined missed hot regions (hard_examples.py)
    negative_studies: int | None = None  # mine a random subset of this many studies; None: all
    augment: dict | None = field(default_factory=dict)  # sampling.Augment ranges; None = off
    average_last: int = 1  # export the mean weights of the last N epochs (averaging.py)
    samples_per_epoch: int | None = None  # slices drawn per epoch; None: all training slices
    net: dict = field(default_factory=dict)  # architecture params (width, ngf, num_downs, ...)
    vgg_weights: Path | None = None  # FCN only: torchvision-named VGG-16 safetensors
    init: Path | None = None  # start from this package's weights (a blend: its member)
    seed: int = 0
    device: str = "cpu"
    amp: bool = True  # bf16 autocast, only ever on CUDA
    resume: bool = True
    progress: bool = True
    threads: int | None = None
    workers: int = 0  # processes building the pair cache and assembling batches; 0 = in process
    max_minutes: float | None = None  # stop after the epoch that passes this wall time; export
    name: str | None = None
    version: str = "0.1.0"
    command: str = ""

    def resolved_work_dir(self) -> Path:
        return Path(self.work_dir) if self.work_dir else Path(str(self.out) + ".work")

    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else self.resolved_work_dir() / "pairs-cache"
