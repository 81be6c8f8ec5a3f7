"""2-D slice pairs for the CT trainers: a thin adapter over `training.pairs` and `training.slices`.

Why: `load_pairs` already aligns PET onto the CT model grid, converts to SUV, clips 0..20 and
caches .npz per study; `SliceSet` windows CT to -160..240 HU -> [-1, 1] exactly as
`ModelPackage.predict` does and pads to the network stride. This module only adds the
train/validation split, a DataLoader (hot-slice oversampling, or DistributedSampler under DDP)
and the per-epoch validation numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, get_worker_info

from pipeline.errors import InputError
from training.ct_trainers.config import TrainConfig
from training.ct_trainers.hard_examples import false_hot_in, missed
from training.ct_trainers.sampling import Augment, PatchSampler, hot_regions, patch_batch
from training.metrics import BODY_HU
from training.pairs import Pair, Skipped, load_pairs, why_skipped
from training.slices import SliceSet

log = logging.getLogger(__name__)


def load_split(cfg: TrainConfig) -> tuple[list[Pair], list[Pair]]:
    """Training and validation pairs (whole studies, never slices of one study in both)."""
    cache = cfg.resolved_cache_dir()
    skipped: list[Skipped] = []
    pairs = load_pairs(cfg.data, cfg.spacing_mm, cache, cfg.antialias, cfg.workers, skipped)
    if not pairs:
        raise InputError(f"no paired PET/CT studies under {cfg.data}{why_skipped(skipped)}")
    if cfg.val_data is not None:
        skipped = []
        val = load_pairs(cfg.val_data, cfg.spacing_mm, cache, cfg.antialias, cfg.workers,
                         skipped)
        if not val:  # else every epoch would report a validation error of 0
            raise InputError(f"no paired PET/CT studies under the validation data "
                             f"{cfg.val_data}{why_skipped(skipped)}")
        for i, pair in enumerate(pairs):  # one by one: the float32 copies go as we go
            pairs[i] = pair.compact()
        return pairs, val
    order = np.random.default_rng(cfg.seed).permutation(len(pairs))
    n_val = round(len(pairs) * cfg.val_fraction) if len(pairs) > 1 else 0
    n_val = min(max(n_val, 1 if len(pairs) > 1 else 0), len(pairs) - 1)
    val = [pairs[i] for i in order[:n_val]]
    train = [pairs[i].compact() for i in order[n_val:]]
    if not val:
        log.warning("only one study: validating on the training study")
        val = train
    log.info("%d training studies, %d validation studies", len(train), len(val))
    return train, val


class _Indices(Dataset):
    """Slice indices; the collate function turns a list of them into a cropped batch."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):  # an index, or the (index, y, x) a PatchSampler yields
        return i


def make_loader(slices: SliceSet, cfg: TrainConfig, batch_size: int, gen: torch.Generator,
                distributed: bool, pairs: Sequence[Pair] = ()
                ) -> tuple[DataLoader, DistributedSampler | None]:
    """Batches (x [-1,1], y SUV); returns the DistributedSampler too (set_epoch each epoch).

    Single process: `cfg.lesion_p` of the samples are crops centred on hot regions of `pairs`
    (see `sampling`), the rest random crops of slices drawn with the hot-slice boost.
    """
    aug = Augment(**cfg.augment) if cfg.augment is not None else None
    aug = None if aug is not None and aug.off else aug
    collate = partial(_collate, slices, cfg.crop, aug, gen)
    if distributed:
        sampler: Sampler = DistributedSampler(_Indices(len(slices)), shuffle=True, seed=cfg.seed)
    else:
        regions = hot_regions(pairs) if cfg.lesion_p > 0 else []
        log.info("%d hot regions to centre %.0f%% of the crops on", len(regions),
                 100 * cfg.lesion_p if regions else 0)
        sampler = PatchSampler(slices, regions, cfg.samples_per_epoch or len(slices),
                               cfg.lesion_p, cfg.crop, cfg.hot_boost, gen, cfg.negative_p,
                               cfg.positive_p)
    loader = DataLoader(_Indices(len(slices)), batch_size=batch_size, sampler=sampler,
                        collate_fn=collate, num_workers=cfg.workers,
                        generator=gen if cfg.workers else None)
    return loader, sampler if isinstance(sampler, DistributedSampler) else None


def _collate(slices: SliceSet, crop: int | None, aug: Augment | None, gen: torch.Generator,
             items: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
    return patch_batch(slices, items, crop, aug, _worker_generator() or gen)


_WORKER_GENERATORS: dict[int, torch.Generator] = {}


def _worker_generator() -> torch.Generator | None:
    """In a loader process, a generator of its own (seeded per worker and epoch by the loader):
    the copies of the main generator that each worker inherits would repeat one another's crops
    and augmentations."""
    info = get_worker_info()
    if info is None:
        return None
    if info.seed not in _WORKER_GENERATORS:
        _WORKER_GENERATORS.clear()
        _WORKER_GENERATORS[info.seed] = torch.Generator().manual_seed(info.seed % 2**63)
    return _WORKER_GENERATORS[info.seed]


def validate(predict: Callable[[np.ndarray], np.ndarray], pairs: Sequence[Pair]) -> dict:
    """MAE / RMSE in SUV over body voxels (CT > -500 HU), the mean predicted SUVmax error, and
    detection: the share of real hot regions the prediction finds (> 2.5 SUV in them) and its
    false hot regions per study. Why both: a checkpoint can gain MAE while losing lesions."""
    abs_err = sq_err = 0.0
    n = hot = found = false_hot = 0
    max_err = []
    for pair in pairs:
        pred = predict(pair.ct)
        body = pair.ct > BODY_HU
        diff = (pred - pair.suv)[body].astype(np.float64)
        abs_err += float(np.abs(diff).sum())
        sq_err += float((diff**2).sum())
        n += int(body.sum())
        max_err.append(abs(float(pred[body].max(initial=0)) - float(pair.suv[body].max(initial=0))))
        regions = [v for _, v in hot_regions([pair])]
        hot += len(regions)
        found += len(regions) - len(missed(pred, regions))
        false_hot += len(false_hot_in(pred, pair.suv))
    n = max(n, 1)
    return {"val_mae": round(abs_err / n, 5), "val_rmse": round(float(np.sqrt(sq_err / n)), 5),
            "val_suvmax_err": round(float(np.mean(max_err)) if max_err else 0.0, 4),
            "val_hot_found": round(found / hot, 4) if hot else None,
            "val_false_hot": round(false_hot / max(len(pairs), 1), 3)}
