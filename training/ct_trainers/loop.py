"""The epoch loop both CT trainers share: data, resume, progress, validation, curves, package.

Why: FCN and pix2pix differ only in their networks and in one training step; everything else
(checkpoint/resume, linear lr decay, rich progress bar, validation each epoch through the same
`ModelPackage.predict` the node uses, loss-curve PNG, the exported package) must not drift
apart between them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from pipeline.models.package import ModelPackage, save_package
from training.ct_trainers import runtime as R
from training.ct_trainers.averaging import average_snapshots, save_snapshot
from training.ct_trainers.checkpoint import load_checkpoint, save_checkpoint
from training.ct_trainers.config import TrainConfig
from training.ct_trainers.curves import plot_curves
from training.ct_trainers.data import load_split, make_loader, validate
from training.ct_trainers.hard_examples import mine_hard_examples
from training.ct_trainers.init_weights import init_from_package
from training.ct_trainers.sampling import PatchSampler
from training.slices import CT_WINDOW, SliceSet

log = logging.getLogger(__name__)

Step = Callable[[torch.Tensor, torch.Tensor], dict[str, float]]


def manifest(cfg: TrainConfig, arch: str, params: dict, metrics: dict, history: list,
             processes: int = 1) -> dict:
    """Package manifest: architecture, CT window input, model grid, SUVbw output with scale.
    `processes` > 1 (a torchrun DDP run) is recorded with the command that repeats it."""
    command = cfg.command
    if processes > 1 and command.startswith("vpet "):
        command = (f"torchrun --nproc_per_node {processes} -m dicom_node.cli "
                   f"{command.removeprefix('vpet ')}")
    return {
        "name": cfg.name or f"ct-pet-{arch}",
        "version": cfg.version,
        "description": ("CT -> virtual PET (SUVbw) network of seed paper 000 trained by "
                        "training.ct_trainers. Research use only: its output is a synthetic "
                        "picture, not a measurement."),
        "architecture": {"name": arch, "params": params},
        "input": {"modality": "CT", "normalization": CT_WINDOW,
                  "spacing_mm": list(cfg.spacing_mm), "antialias": cfg.antialias},
        "output": {"units": "SUVbw", "scale": cfg.suv_max,
                   "mapping": ("SUV = network output x scale; fcn4s regresses SUV/scale "
                               "linearly, pix2pix_unet gives (tanh + 1) / 2")},
        "training": {"command": command, "processes": processes, "data": str(cfg.data),
                     "config": json.loads(json.dumps(asdict(cfg), default=str)),
                     "history": history},
        "metrics": metrics,
    }


def fit(cfg: TrainConfig, rt: R.Runtime, arch: str, params: dict, export: nn.Module,
        modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
        step: Step, base_lr: dict[str, float], batch_size: int, multiple: int,
        train_mode: Callable[[bool], None]) -> Path:
    """Run epochs with `step(x, y_suv)`; `export` is the (unwrapped) network the package holds."""
    if cfg.crop is not None and cfg.crop % multiple:
        raise ValueError(f"crop {cfg.crop} must be a multiple of the network stride {multiple}")
    work = cfg.resolved_work_dir()
    train_pairs, val_pairs = load_split(cfg)
    slices = SliceSet(train_pairs, cfg.context, multiple)
    gen = torch.Generator().manual_seed(cfg.seed + rt.rank)
    loader, dist_sampler = make_loader(slices, cfg, batch_size, gen, rt.distributed, train_pairs)
    history: list[dict] = []
    start = 0
    if cfg.resume:
        meta = load_checkpoint(work / "checkpoint", {k: R.unwrap(m) for k, m in modules.items()},
                               optimizers, gen)
        if meta:
            start, history = int(meta["epoch"]), list(meta["history"])
    if start == 0 and cfg.init is not None:  # a resumed run already holds its own weights
        init_from_package(export, arch, params, cfg.init)
    decay = cfg.decay_epochs if cfg.decay_epochs is not None else cfg.epochs // 2
    package = ModelPackage(Path(cfg.out), manifest(cfg, arch, params, {}, history), export,
                           rt.device)
    started = time.monotonic()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                  TimeRemainingColumn(), disable=not (cfg.progress and rt.main),
                  transient=True) as bar:
        for epoch in range(start, cfg.epochs):
            factor = R.lr_factor(epoch, cfg.epochs, decay)
            for name, opt in optimizers.items():
                R.set_lr(opt, base_lr[name] * factor)
            if dist_sampler is not None:
                dist_sampler.set_epoch(epoch)
            sampler = loader.sampler
            if (cfg.negative_p > 0 or cfg.positive_p > 0) and isinstance(sampler, PatchSampler):
                train_mode(False)
                sampler.negatives, sampler.positives = mine_hard_examples(
                    package.predict, train_pairs, sampler.regions if cfg.positive_p > 0 else [],
                    cfg.negative_studies, gen)
            train_mode(True)
            task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=len(loader), info="")
            sums: dict[str, float] = {}
            for x, y in loader:
                parts = step(R.to_device(x, rt), R.to_device(y, rt))
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.update(task, advance=1, info=" ".join(f"{k} {v:.4g}" for k, v in parts.items()))
            bar.remove_task(task)
            record = {"epoch": epoch + 1, "lr_factor": round(factor, 4)}
            record.update({k: round(R.all_mean(v / max(len(loader), 1), rt), 6)
                           for k, v in sums.items()})
            train_mode(False)
            if rt.main:
                record.update(validate(package.predict, val_pairs))
            history.append(record)
            log.info("epoch %d/%d (%.0f s): %s", epoch + 1, cfg.epochs,
                     time.monotonic() - started, json.dumps(record))
            if rt.main:
                if cfg.average_last > 1:
                    save_snapshot(export, work, epoch + 1, cfg.average_last)
                save_checkpoint(work / "checkpoint", {k: R.unwrap(m) for k, m in modules.items()},
                                optimizers, {"epoch": epoch + 1, "history": history, "arch": arch},
                                gen)
                keys = sorted({k for h in history for k in h} - {"epoch", "lr_factor"})
                plot_curves(history, keys, work / "curves.png")
            if R.all_mean(float(_out_of_time(cfg, started, epoch)), rt) > 0:
                break  # any rank past the budget stops all: a split decision would hang DDP
    if rt.main:
        train_mode(False)
        metrics = {k: v for k, v in (history[-1] if history else {}).items() if k != "epoch"}
        if cfg.average_last > 1 and history:
            metrics = _average_into(export, work, history[-1]["epoch"], cfg.average_last,
                                    package.predict, val_pairs)
        save_package(Path(cfg.out), export,
                     manifest(cfg, arch, params, metrics, history, processes=rt.world))
        if (work / "curves.png").is_file():
            (Path(cfg.out) / "curves.png").write_bytes((work / "curves.png").read_bytes())
        log.info("wrote %s package to %s", arch, cfg.out)
    R.leave_process_group(rt.world)
    return Path(cfg.out)


def _out_of_time(cfg: TrainConfig, started: float, epoch: int) -> bool:
    """True when `max_minutes` has passed and epochs remain (the run stops, still exports)."""
    spent = (time.monotonic() - started) / 60
    if cfg.max_minutes is None or spent < cfg.max_minutes or epoch + 1 >= cfg.epochs:
        return False
    log.warning("stopping after epoch %d of %d: %.1f of --max-minutes %.1f spent", epoch + 1,
                cfg.epochs, spent, cfg.max_minutes)
    return True


def _average_into(export: nn.Module, work: Path, last_epoch: int, count: int,
                  predict: Callable, val_pairs: list) -> dict:
    """Load the mean of the last `count` epochs' weights into `export`; its validation."""
    state, epochs = average_snapshots(work, last_epoch, count)
    export.load_state_dict(state)
    log.info("exporting the mean weights of epochs %s", epochs)
    return {"averaged_epochs": epochs, **validate(predict, val_pairs)}
