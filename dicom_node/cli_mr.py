"""`vpet` commands of the MR -> PET method (seed paper 003): train, evaluate, Table 1, bench.

Why a module of its own: cli.py is shared by several people; these bodies live here and cli.py
only registers them. Heavy imports (torch, training) stay inside the commands.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger(__name__)

bench_train_app = typer.Typer(help="Training throughput benchmarks.", no_args_is_help=True)

DataOpt = Annotated[Path | None, typer.Option(
    "--data", help="MR/PET DICOM studies or .npz pairs (default: brain phantoms in OUT/data).",
    exists=True, file_okay=False)]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Run folder (package in OUT/package).")]
TinyOpt = Annotated[bool, typer.Option("--tiny", help="32^3 data, tiny networks: a CPU minute.")]
StepsOpt = Annotated[int, typer.Option("--steps", min=1, help="Optimizer steps.")]
ActOpt = Annotated[str, typer.Option("--activation", help="tanhshrink (paper) or tanh.")]
ResumeOpt = Annotated[bool, typer.Option("--resume/--no-resume", help="Continue OUT/checkpoint.pt.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
CasesOpt = Annotated[int, typer.Option(help="Phantom training cases (no --data).")]
ShapeOpt = Annotated[int, typer.Option(help="Phantom MR size per axis (no --data).")]
GridOpt = Annotated[float, typer.Option(help="Model grid spacing, mm.")]
BaseOpt = Annotated[int, typer.Option(help="U-Net channels at level 0.")]
DepthOpt = Annotated[int, typer.Option(help="U-Net poolings.")]
BatchSizeOpt = Annotated[int, typer.Option(help="Volumes per micro-batch.")]
ValEveryOpt = Annotated[int, typer.Option(help="Validate and checkpoint every N steps.")]


CT_SUMMARY = ("cases", "lesions_found", "lesions_hot_in_pet", "lesion_tpr",
              "lesion_tpr_ct_detectable", "false_positives_per_case", "mae")


def _device(device: str) -> str:
    from dicom_node.worker import resolve_device

    return resolve_device(device)


def _train(method: str, *, data: Path | None, out: Path, tiny: bool, steps: int,
           activation: str, resume: bool, device: str, extra: dict) -> None:
    from training.ganbert.data import cache_pairs
    from training.ganbert.trainer import TrainConfig, train

    if activation not in ("tanh", "tanhshrink"):
        raise typer.BadParameter("--activation must be tanh or tanhshrink")
    cfg = TrainConfig(out=out, method=method, tiny=tiny, steps=steps, activation=activation,
                      resume=resume, device=_device(device), **extra)
    try:
        if data is not None:  # DICOM studies are paired once on the model grid, then cached
            cfg.data = cache_pairs(data, out / "pairs", cfg.spacing_mm)
        metrics = train(cfg)
    except ValueError as exc:  # too little usable data: the reasons, not a traceback
        typer.echo(f"cannot train: {exc}", err=True)
        raise typer.Exit(2) from None
    if not metrics:  # a torchrun rank other than 0: rank 0 writes and reports the package
        return
    typer.echo(json.dumps(metrics, indent=2))
    typer.echo(f"model package written to {out / 'package'}")


def _extra(cases: int, shape: int, spacing: float, base: int, depth: int, lr: float,
           accum: int, seed: int, bert: str | None = None, **more: object) -> dict:
    extra = {"cases": cases, "shape": (shape,) * 3, "spacing_mm": (spacing,) * 3, "base": base,
             "depth": depth, "lr": lr, "accum": accum, "seed": seed, **more}
    if bert is not None:
        extra["bert"] = bert
    return extra


def train_ganbert(
    out: OutOpt, data: DataOpt = None, tiny: TinyOpt = False, steps: StepsOpt = 1000,
    activation: ActOpt = "tanhshrink",
    cnn_d: Annotated[bool, typer.Option("--cnn-d", help="Add the PatchGAN-3D (GANBERT+CNN-D).")]
    = False,
    resume: ResumeOpt = True, device: DeviceOpt = "auto",
    bert: Annotated[str, typer.Option(help="BERT size: base (paper), small or tiny.")] = "base",
    cases: CasesOpt = 8,
    shape: ShapeOpt = 128,
    spacing: GridOpt = 2.0,
    base: BaseOpt = 16,
    depth: DepthOpt = 4,
    lr: Annotated[float, typer.Option(help="Adam learning rate (paper 1e-4).")] = 1e-4,
    accum: Annotated[int, typer.Option(help="Gradient accumulation (paper 2).")] = 2,
    batch_size: BatchSizeOpt = 2,
    val_every: ValEveryOpt = 200,
    checkpointing: Annotated[bool, typer.Option(
        help="Gradient checkpointing (paper; saves memory, costs time).")] = True,
    nsp_weight: Annotated[float, typer.Option(help="Weight of the NSP (adversarial) loss "
                                              "(paper 20; L1 20, MLM 1).")] = 20.0,
    crop: Annotated[int | None, typer.Option(help="Random cubic training crops of this size "
                                             "(a multiple of 2^depth); default whole volumes.")]
    = None,
    l1_warmup: Annotated[int, typer.Option(help="Generator-only L1 steps before the paper's "
                                           "adversarial phase (not in the paper; 0 = off).")] = 0,
    l1_warmup_lr: Annotated[float | None, typer.Option(help="Adam lr of the L1 warm start "
                                                       "(default: --lr).")] = None,
    cases_val: Annotated[int, typer.Option("--val-cases", help="Validation phantoms.")] = 2,
    seed: int = 0,
) -> None:
    """Train GANBERT (3D U-Net + BERT discriminator) MR -> PET and write a model package."""
    from training.ganbert.steps import LossWeights

    _train("ganbert_cnn" if cnn_d else "ganbert", data=data, out=out, tiny=tiny, steps=steps,
           activation=activation, resume=resume, device=device,
           extra=_extra(cases, shape, spacing, base, depth, lr, accum, seed, bert,
                        batch_size=batch_size, val_every=val_every, checkpointing=checkpointing,
                        weights=LossWeights(nsp=nsp_weight), crop=crop,
                        l1_warmup_steps=l1_warmup, l1_warmup_lr=l1_warmup_lr,
                        val_cases=cases_val))


def train_pix2pix3d(
    out: OutOpt, data: DataOpt = None, tiny: TinyOpt = False, steps: StepsOpt = 1000,
    activation: ActOpt = "tanh", resume: ResumeOpt = True, device: DeviceOpt = "auto",
    cases: CasesOpt = 8,
    shape: ShapeOpt = 128,
    spacing: GridOpt = 2.0,
    base: BaseOpt = 16,
    depth: DepthOpt = 4,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 2e-4,
    accum: Annotated[int, typer.Option(help="Gradient accumulation.")] = 2,
    batch_size: BatchSizeOpt = 2,
    val_every: ValEveryOpt = 200,
    seed: int = 0,
) -> None:
    """Train the pix2pix-3D baseline (3D U-Net + PatchGAN-3D) MR -> PET."""
    _train("pix2pix3d", data=data, out=out, tiny=tiny, steps=steps, activation=activation,
           resume=resume, device=device,
           extra=_extra(cases, shape, spacing, base, depth, lr, accum, seed,
                        batch_size=batch_size, val_every=val_every))


def evaluate(
    model: Annotated[Path, typer.Option("--model", help="Model package folder.", exists=True,
                                        file_okay=False)],
    data: Annotated[Path, typer.Option("--data", help="Paired studies to evaluate on.",
                                       exists=True, file_okay=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")],
    device: DeviceOpt = "auto",
) -> None:
    """Evaluate a model package on paired data; the method follows its input modality."""
    try:
        manifest = json.loads((model / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        typer.echo(f"{model}: not a model package ({exc})", err=True)
        raise typer.Exit(2) from None
    modality = manifest.get("input", {}).get("modality")
    try:
        if modality == "MR":
            from training.evaluate_mr import evaluate_mr

            report = evaluate_mr(model, data, out, device=_device(device))
            typer.echo(json.dumps(report["mean"], indent=2))
        elif modality == "CT":
            from training.evaluate_ct import evaluate_ct

            report = evaluate_ct(model, data, out, device=_device(device))
            typer.echo(json.dumps({name: {k: row.get(k) for k in CT_SUMMARY}
                                   for name, row in report["overall"].items()}, indent=2))
        else:
            typer.echo(f"{model}: unknown input modality {modality!r}", err=True)
            raise typer.Exit(2)
    except ValueError as exc:  # nothing usable in --data: the reason, not a traceback
        typer.echo(f"cannot evaluate: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"report written to {out}")


def evaluate_table(
    kind: Annotated[str, typer.Argument(help="mr: the GANBERT paper's Table 1.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")],
    data: Annotated[Path | None, typer.Option(help=".npz pairs (default: phantoms).",
                                              exists=True, file_okay=False)] = None,
    steps: StepsOpt = 60,
    cases: Annotated[int, typer.Option(help="Phantom training cases.")] = 4,
    tiny: Annotated[bool, typer.Option("--tiny/--full", help="Tiny sizes (CPU minutes).")] = True,
    lr: Annotated[float, typer.Option(help="Adam learning rate for all variants.")] = 1e-3,
    device: DeviceOpt = "auto",
) -> None:
    """Train and compare pix2pix-3D (tanh, tanhshrink), GANBERT and GANBERT + CNN-D."""
    if kind != "mr":
        raise typer.BadParameter("only 'mr' (seed paper 003 Table 1) is implemented")
    from training.ganbert.table import TableConfig, run_table

    result = run_table(TableConfig(out=out, data=data, steps=steps, cases=cases, tiny=tiny,
                                   lr=lr, device=_device(device)))
    typer.echo((out / "table.md").read_text())
    log.info("table: %s", result["rows"])


@bench_train_app.command("ganbert")
def bench_ganbert(
    size: Annotated[int, typer.Option(help="Cubic input size (paper: 256).")] = 128,
    steps: StepsOpt = 2,
    device: DeviceOpt = "auto",
    bert: Annotated[str, typer.Option(help="BERT size: base (paper), small or tiny.")] = "base",
    base: int = 16,
    depth: int = 4,
    accum: int = 2,
) -> None:
    """Steps/s and peak memory of one GANBERT training step on a SIZE^3 input."""
    from training.bench_ganbert import bench_train

    result = bench_train(size, steps, device=_device(device), bert=bert, base=base,
                         depth=depth, accum=accum)
    typer.echo("\n".join(result.lines()))
