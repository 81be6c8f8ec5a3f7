"""`vpet` commands of the CT -> PET method (seed paper 000): train fcn | pix2pix | blend, bench.

Why a module of its own: cli.py is shared by several people; these bodies live here and cli.py
only registers them. Heavy imports (torch, training) stay inside the commands. Multi-GPU:
`torchrun --nproc_per_node N -m dicom_node.cli train fcn ...` (the trainers join the process
group when WORLD_SIZE > 1).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger(__name__)

DataOpt = Annotated[Path, typer.Option("--data", help="Folder of PET/CT DICOM studies or "
                                       "autoPET NIfTI cases.", exists=True, file_okay=False)]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Model package folder to write.")]
EpochsOpt = Annotated[int, typer.Option(min=1, help="Epochs.")]
BatchOpt = Annotated[int | None, typer.Option("--batch", help="Slices per step "
                                              "(default fcn 8, pix2pix 1).")]
ResumeOpt = Annotated[bool, typer.Option("--resume/--no-resume",
                                         help="Continue from OUT.work/checkpoint.")]
LossOpt = Annotated[str, typer.Option("--loss", help="weighted (per-pixel weight = target "
                                      "SUV, the paper) or plain.")]
SeedOpt = Annotated[int, typer.Option(help="Random seed (split, init, sampling).")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
AmpOpt = Annotated[bool, typer.Option("--amp/--no-amp", help="bf16 autocast (CUDA only).")]
SpacingOpt = Annotated[str, typer.Option(help="Model grid X,Y,Z mm (or one value).")]
ContextOpt = Annotated[int, typer.Option(help="Adjacent CT slices in (1 = the paper's 2-D).")]
CropOpt = Annotated[int | None, typer.Option(help="Random in-plane training crop (px).")]
SamplesOpt = Annotated[int | None, typer.Option(help="Slices drawn per epoch (default all).")]
LrOpt = Annotated[float | None, typer.Option(help="Adam lr (default fcn 1e-4, pix2pix 2e-4).")]
ValOpt = Annotated[Path | None, typer.Option("--val-data", help="Held-out studies for the "
                                             "per-epoch validation.", exists=True)]
FloorOpt = Annotated[float, typer.Option(help="Weighted loss: weight = max(SUV, floor).")]
ThreadsOpt = Annotated[int | None, typer.Option(help="CPU threads for torch.")]
WorkersOpt = Annotated[int, typer.Option(min=0, help="Processes that build the pair cache and "
                                         "assemble batches (0 = in the training process).")]
CacheOpt = Annotated[Path | None, typer.Option("--cache-dir", help="Pair cache to share "
                                               "between runs on the same data and grid "
                                               "(default OUT.work/pairs-cache).")]
MinutesOpt = Annotated[float | None, typer.Option("--max-minutes", min=0.0, help="Stop after "
                                                  "the epoch that passes this wall time, and "
                                                  "export (a GPU lease, a night).")]
NameOpt = Annotated[str | None, typer.Option(help="Package name.")]
VersionOpt = Annotated[str, typer.Option(help="Package version.")]
LesionOpt = Annotated[float, typer.Option(help="Share of crops centred on a hot region "
                                          "(lesion-centred sampling; 0 = off).")]
NegativeOpt = Annotated[float, typer.Option(help="Share of crops centred on regions the "
                                            "network paints hot where the PET is cold, mined "
                                            "each epoch (hard negatives; 0 = off).")]
PositiveOpt = Annotated[float, typer.Option(help="Share of crops centred on real hot regions "
                                            "the network misses, mined each epoch (hard "
                                            "positives; 0 = off).")]
NegStudiesOpt = Annotated[int | None, typer.Option(help="Mine hard examples in a random subset "
                                                  "of this many training studies per epoch "
                                                  "(default all).", min=1)]
AverageOpt = Annotated[int, typer.Option(help="Export the mean weights of the last N epochs "
                                          "(smooths the epoch-to-epoch swing; 1 = last epoch).",
                                          min=1)]
AntialiasOpt = Annotated[bool, typer.Option("--antialias/--no-antialias", help="Low-pass "
                                           "the CT to the model grid before resampling (grid-"
                                           "independent input; recorded in the manifest).")]
InitOpt = Annotated[Path | None, typer.Option("--init", help="Start from this model "
                                              "package's weights (a blend: its member of this "
                                              "architecture); fine-tuning. A larger --context than the "
                                              "package's widens its first layer (new slices "
                                              "start at zero).", exists=True,
                                              file_okay=False)]
WindowOpt = Annotated[list[str] | None, typer.Option(
    "--extra-window", help="A narrower CT window LOW,HIGH HU (inside -160,240) fed beside each "
    "slice, e.g. -5,145 for the liver; repeatable. With --init, windows after the package's "
    "start at zero.")]
InputLrOpt = Annotated[float, typer.Option("--input-lr-factor", min=0.0, help="The first "
                                          "convolution learns this many times faster (new "
                                          "slices or windows after --init; 1 = off).")]
NoiseOpt = Annotated[float | None, typer.Option("--aug-noise-hu", min=0.0, help="Largest "
                                                "extra CT noise sigma of the augmentation "
                                                "(HU on the model grid; default 12).")]
GrainOpt = Annotated[float, typer.Option("--aug-noise-grain", min=0.0, help="Largest in-plane "
                                         "correlation (FWHM, mm) of that noise, drawn per "
                                         "sample; default 0: white.")]
AugOpt = Annotated[bool, typer.Option("--augment/--no-augment", help="Zoom, rotation, HU "
                                      "offset and CT noise per sample.")]


def _command(ctx: typer.Context) -> str:
    """The command line that reproduces this run (recorded in the manifest)."""
    names, c = [], ctx
    while c.parent is not None:  # sub-command names; the root's name differs under torchrun
        names.append(str(c.info_name))
        c = c.parent
    parts = ["vpet", *reversed(names)]
    for key, value in ctx.params.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, (list, tuple)):  # a repeatable option: once per value
            parts += [_option(flag, v) for v in value]
        elif value is not None:
            parts.append(_option(flag, value))
    return " ".join(parts)


def _option(flag: str, value: object) -> str:
    """`--flag value` as a shell word; `--flag=value` where the value starts with '-' (a window
    such as -5,145 would otherwise read as an option)."""
    text = str(value)
    return f"{flag}={shlex.quote(text)}" if text.startswith("-") else f"{flag} {shlex.quote(text)}"


def _spacing(text: str) -> tuple[float, float, float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"--spacing wants X,Y,Z mm, got {text!r}") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or min(values) <= 0:
        raise typer.BadParameter(f"--spacing wants X,Y,Z mm, got {text!r}")
    return values[0], values[1], values[2]


def _sampling(ctx: typer.Context, lesion_p: float, negative_p: float,
              negative_studies: int | None, augment: bool, spacing: str, context: int,
              crop: int | None, samples_per_epoch: int | None, lr: float | None,
              val_data: Path | None, weight_floor: float, threads: int | None,
              name: str | None, version: str, average_last: int, workers: int = 0,
              max_minutes: float | None = None, cache_dir: Path | None = None,
              positive_p: float = 0.0) -> dict:
    """The settings every CT trainer takes (data sampling, schedule, package identity)."""
    return {"average_last": average_last, "lesion_p": lesion_p, "negative_p": negative_p,
            "positive_p": positive_p,
            "negative_studies": negative_studies, "augment": {} if augment else None,
            "spacing_mm": _spacing(spacing), "context": context, "crop": crop,
            "samples_per_epoch": samples_per_epoch, "lr": lr, "val_data": val_data,
            "weight_floor": weight_floor, "threads": threads, "name": name,
            "version": version, "command": _command(ctx), "workers": workers,
            "max_minutes": max_minutes, "cache_dir": cache_dir}


def _config(**kw):
    from pipeline.device import resolve_device
    from training.ct_trainers import TrainConfig

    if kw.pop("loss") not in ("weighted", "plain"):
        raise typer.BadParameter("--loss must be weighted or plain")
    noise, grain = kw.pop("aug_noise_hu"), kw.pop("aug_noise_grain", 0.0)
    if (noise is not None or grain) and kw["augment"] is None:
        raise typer.BadParameter("--aug-noise-hu and --aug-noise-grain need the augmentation "
                                 "(drop --no-augment)")
    if noise is not None:
        kw["augment"] = {**kw["augment"], "noise_hu": noise}
    if grain:  # mm -> pixels of the model grid (in-plane spacing)
        kw["augment"] = {**kw["augment"], "noise_grain_px": grain / kw["spacing_mm"][0]}
    device = resolve_device(kw.pop("device"))
    return TrainConfig(**kw, device=device)


def _run(run, cfg) -> Path:
    """A trainer run; a package (--init) or data it cannot use ends with its reason, exit 2."""
    from pipeline.errors import InputError, ModelError

    try:
        return run(cfg)
    except (ModelError, InputError) as exc:
        typer.echo(f"cannot train: {exc}", err=True)
        raise typer.Exit(2) from None


def _finish(out: Path) -> None:
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 writes the package
        return
    manifest = json.loads((out / "manifest.json").read_text())
    typer.echo(json.dumps(manifest.get("metrics", {}), indent=2))
    typer.echo(f"model package written to {out}")


def train_fcn(
    ctx: typer.Context, data: DataOpt, out: OutOpt, epochs: EpochsOpt = 20, batch: BatchOpt = None,
    resume: ResumeOpt = True, loss: LossOpt = "weighted",
    vgg16: Annotated[Path | None, typer.Option("--vgg16", help="VGG-16 weights (safetensors, "
                                               "torchvision names).", exists=True)] = None,
    seed: SeedOpt = 0, device: DeviceOpt = "auto", amp: AmpOpt = True,
    width: Annotated[float, typer.Option(help="VGG channel multiplier (paper 1.0).")] = 1.0,
    fc_channels: Annotated[int, typer.Option(help="fc6/fc7 channels (paper 4096).")] = 4096,
    spacing: SpacingOpt = "3,3,3", context: ContextOpt = 1, crop: CropOpt = None,
    samples_per_epoch: SamplesOpt = None, lr: LrOpt = None, val_data: ValOpt = None,
    weight_floor: FloorOpt = 0.0, threads: ThreadsOpt = None, name: NameOpt = None,
    version: VersionOpt = "0.1.0", lesion_p: LesionOpt = 0.5, negative_p: NegativeOpt = 0.0,
    negative_studies: NegStudiesOpt = None, augment: AugOpt = True, average_last: AverageOpt = 1,
    antialias: AntialiasOpt = True, init: InitOpt = None, aug_noise_hu: NoiseOpt = None,
    workers: WorkersOpt = 0, max_minutes: MinutesOpt = None, cache_dir: CacheOpt = None,
    positive_p: PositiveOpt = 0.0, aug_noise_grain: GrainOpt = 0.0,
    dropout: Annotated[float, typer.Option(help="fc6/fc7 dropout (paper 0.5 at 4096 "
                                           "channels).")] = 0.5,
    batch_norm: Annotated[bool, typer.Option("--batch-norm/--no-batch-norm", help="VGG-16-BN "
                                             "blocks (for training from scratch).")] = False,
    extra_window: WindowOpt = None, input_lr_factor: InputLrOpt = 1.0,
) -> None:
    """Train FCN-4s (VGG-16 backbone) CT -> SUV and write an `fcn4s` model package."""
    from training.ct_trainers import train_fcn as run
    from training.slices import CT_WINDOW

    cfg = _config(data=data, out=out, epochs=epochs, batch_size=batch, resume=resume, loss=loss,
                  weighted=loss == "weighted", vgg_weights=vgg16, seed=seed, device=device,
                  antialias=antialias, init=init, aug_noise_hu=aug_noise_hu,
                  aug_noise_grain=aug_noise_grain,
                  input_lr_factor=input_lr_factor,
                  amp=amp, net={"width": width, "fc_channels": fc_channels, "dropout": dropout,
                                "batch_norm": batch_norm, **_windows(extra_window, CT_WINDOW)},
                  **_sampling(ctx, lesion_p, negative_p, negative_studies, augment, spacing,
                              context, crop, samples_per_epoch, lr, val_data, weight_floor,
                              threads, name, version, average_last, workers, max_minutes,
                              cache_dir, positive_p))
    _finish(_run(run, cfg))


def _windows(values: list[str] | None, base: dict) -> dict:
    """Network parameters for `--extra-window LOW,HIGH` values (none: none, manifests as before)."""
    if not values:
        return {}
    windows = []
    for value in values:
        try:
            low, high = (float(v) for v in value.split(","))
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not LOW,HIGH in HU",
                                     param_hint="--extra-window") from None
        if not base["low"] <= low < high <= base["high"]:
            raise typer.BadParameter(f"{value} is not inside {base['low']:g},{base['high']:g} HU",
                                     param_hint="--extra-window")
        windows.append([low, high])
    return {"extra_windows": windows, "input_window": [base["low"], base["high"]]}


def train_pix2pix(
    ctx: typer.Context, data: DataOpt, out: OutOpt, epochs: EpochsOpt = 20, batch: BatchOpt = None,
    resume: ResumeOpt = True, loss: LossOpt = "weighted",
    seed: SeedOpt = 0, device: DeviceOpt = "auto", amp: AmpOpt = True,
    ngf: Annotated[int, typer.Option(help="Generator width (paper 64).")] = 64,
    ndf: Annotated[int, typer.Option(help="PatchGAN width (paper 64).")] = 64,
    num_downs: Annotated[int, typer.Option(help="U-Net downsamplings (8 = U-Net-256).")] = 8,
    lam: Annotated[float, typer.Option(help="Weight of the pixel loss (pix2pix 100).")] = 100.0,
    spacing: SpacingOpt = "3,3,3", context: ContextOpt = 1, crop: CropOpt = None,
    samples_per_epoch: SamplesOpt = None, lr: LrOpt = None, val_data: ValOpt = None,
    weight_floor: FloorOpt = 0.0, threads: ThreadsOpt = None, name: NameOpt = None,
    version: VersionOpt = "0.1.0", lesion_p: LesionOpt = 0.5, negative_p: NegativeOpt = 0.0,
    negative_studies: NegStudiesOpt = None, augment: AugOpt = True, average_last: AverageOpt = 1,
    antialias: AntialiasOpt = True, init: InitOpt = None, aug_noise_hu: NoiseOpt = None,
    workers: WorkersOpt = 0, max_minutes: MinutesOpt = None, cache_dir: CacheOpt = None,
    positive_p: PositiveOpt = 0.0, extra_window: WindowOpt = None,
    input_lr_factor: InputLrOpt = 1.0, aug_noise_grain: GrainOpt = 0.0,
) -> None:
    """Train pix2pix (U-Net generator + 70x70 PatchGAN) CT -> SUV; writes a `pix2pix_unet`
    package (the generator)."""
    from training.ct_trainers import train_pix2pix as run
    from training.slices import CT_WINDOW

    cfg = _config(data=data, out=out, epochs=epochs, batch_size=batch, resume=resume, loss=loss,
                  weighted=loss == "weighted", seed=seed, device=device, amp=amp,
                  antialias=antialias, init=init, aug_noise_hu=aug_noise_hu,
                  aug_noise_grain=aug_noise_grain,
                  input_lr_factor=input_lr_factor,
                  net={"ngf": ngf, "ndf": ndf, "num_downs": num_downs,
                       **_windows(extra_window, CT_WINDOW)}, lam=lam,
                  **_sampling(ctx, lesion_p, negative_p, negative_studies, augment, spacing,
                              context, crop, samples_per_epoch, lr, val_data, weight_floor,
                              threads, name, version, average_last, workers, max_minutes,
                              cache_dir, positive_p))
    _finish(_run(run, cfg))


def train_blend(
    fcn: Annotated[Path, typer.Option("--fcn", help="fcn4s package.", exists=True,
                                      file_okay=False)],
    cgan: Annotated[Path, typer.Option("--cgan", help="pix2pix_unet package.", exists=True,
                                       file_okay=False)],
    out: OutOpt,
    threshold: Annotated[float, typer.Option(help="FCN SUV above which FCN wins.")] = 2.5,
    levels: Annotated[int, typer.Option(help="Laplacian pyramid levels.")] = 4,
    dilate: Annotated[int, typer.Option(help="Grow the FCN mask by this many voxels "
                                        "(0 = the paper).")] = 0,
    hot_mask: Annotated[str, typer.Option(help="fcn (the paper: FCN > threshold) or "
                                          "fcn_or_cgan (the FCN also decides cGAN-only hot "
                                          "spots), fcn_veto_cgan (as fcn_or_cgan, and the "
                                          "cGAN is clipped to the FCN there) or fcn_and_cgan "
                                          "(a hot spot needs both networks).")] = "fcn",
    name: Annotated[str, typer.Option(help="Package name.")] = "ct-pet-blend",
    version: VersionOpt = "0.1.0",
    flip_tta: Annotated[str, typer.Option(help="Members (fcn,cgan) whose prediction is the "
                                          "mean over the four in-plane flips; '' = none.")] = "",
) -> None:
    """Combine an FCN and a cGAN package into one blended package (Laplacian pyramid)."""
    from pipeline.errors import ModelError
    from training.blend_package import make_blend_package

    try:
        make_blend_package(fcn, cgan, out, name=name, version=version, threshold=threshold,
                           levels=levels, dilate=dilate, hot_mask=hot_mask,
                           flip_tta=[m for m in flip_tta.split(",") if m])
    except ModelError as exc:
        typer.echo(f"cannot blend: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"blended package written to {out}")


def bench_train(
    network: Annotated[str, typer.Option(help="fcn or pix2pix.")] = "fcn",
    size: Annotated[int, typer.Option(help="Slice size (px).")] = 256,
    batch: Annotated[int, typer.Option(help="Slices per step.")] = 4,
    steps: Annotated[int, typer.Option(min=1, help="Timed steps.")] = 10,
    device: DeviceOpt = "auto",
    fp32: Annotated[bool, typer.Option("--fp32", help="No autocast, no channels_last.")] = False,
    width: Annotated[float, typer.Option(help="FCN width multiplier.")] = 1.0,
    ngf: Annotated[int, typer.Option(help="pix2pix generator width.")] = 64,
) -> None:
    """Training images/s of FCN-4s or pix2pix (paper sizes by default) on random slices."""
    from pipeline.device import resolve_device
    from training.bench_train import bench_train as run

    if network not in ("fcn", "pix2pix"):
        raise typer.BadParameter("--network must be fcn or pix2pix")
    net = {"width": width} if network == "fcn" else {"ngf": ngf}
    run(network, size, batch, steps, resolve_device(device), amp=not fp32,
        channels_last=not fp32, net=net)
