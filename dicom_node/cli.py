"""`vpet` command line: serve, worker, echo, send, run, demo, phantoms, train, config check.

Why: one small typer app; heavy modules (torch, pipeline, training) are imported inside the
commands so `vpet --help` stays fast. This is the only place that configures log handlers.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from dicom_node import cli_admin, cli_bench, cli_ct, cli_mr

app = typer.Typer(help="Virtual PET DICOM node (research use only).", no_args_is_help=True,
                  add_completion=False)
config_app = typer.Typer(help="Configuration helpers.", no_args_is_help=True)
phantoms_app = typer.Typer(help="Synthetic phantom data.", no_args_is_help=True)
train_app = typer.Typer(help="Training.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(phantoms_app, name="phantoms")
app.add_typer(train_app, name="train")
bench_app = typer.Typer(help="Benchmarks that print numbers.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(cli_admin.jobs_app, name="jobs")
app.add_typer(cli_admin.rules_app, name="rules")
app.command("status")(cli_admin.status)
# MR -> PET (seed paper 003): bodies in cli_mr.py
train_app.command("ganbert")(cli_mr.train_ganbert)
train_app.command("pix2pix3d")(cli_mr.train_pix2pix3d)
app.command("evaluate")(cli_mr.evaluate)
app.command("evaluate-table")(cli_mr.evaluate_table)
bench_app.add_typer(cli_mr.bench_train_app, name="train")
bench_app.command("receive")(cli_bench.receive)
# CT -> PET (seed paper 000): bodies in cli_ct.py
train_app.command("fcn")(cli_ct.train_fcn)
train_app.command("pix2pix")(cli_ct.train_pix2pix)
train_app.command("blend")(cli_ct.train_blend)
cli_mr.bench_train_app.command("ct")(cli_ct.bench_train)

logger = logging.getLogger("dicom_node.cli")

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="YAML config file.",
                                         exists=True, dir_okay=False)]


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Rich console logging (or JSON lines); pynetdicom's chatty INFO lines only at DEBUG."""
    import os

    from rich.logging import RichHandler

    from dicom_node.logfmt import ENV, make_formatter

    root = logging.getLogger()
    os.environ[ENV] = fmt  # spawned worker processes log the same way
    if fmt == "json":
        if not any(getattr(h, "_vpet_json", False) for h in root.handlers):
            handler = logging.StreamHandler()
            handler.setFormatter(make_formatter("json"))
            handler._vpet_json = True  # type: ignore[attr-defined]
            root.addHandler(handler)
    elif not any(isinstance(h, RichHandler) for h in root.handlers):
        from rich.console import Console

        # logs on stderr: stdout stays clean for `--json` output
        root.addHandler(RichHandler(console=Console(stderr=True), show_path=False,
                                    rich_tracebacks=False))
    root.setLevel(level)
    logging.getLogger("pynetdicom").setLevel("DEBUG" if level == "DEBUG" else "WARNING")
    logging.getLogger("alembic").setLevel("DEBUG" if level == "DEBUG" else "WARNING")


@app.callback()
def _main(log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
          log_format: Annotated[str, typer.Option(help="text or json (one object per line).")]
          = "text") -> None:
    setup_logging(log_level.upper(), log_format.lower())


def _load(path: Path):
    from dicom_node.config import load_config
    from pipeline.errors import ConfigError

    try:
        config = load_config(path)
    except ConfigError as exc:
        typer.echo(f"config error: {exc}", err=True)
        raise typer.Exit(2) from None
    logging.getLogger().setLevel(config.logging.level)
    return config


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


@app.command()
def serve(config: ConfigOpt) -> None:
    """Run the node: receiver, series tracker and workers, until SIGTERM/SIGINT."""
    from dicom_node.node import Node

    cfg = _load(config)
    node = Node(cfg).start()
    from dicom_node.reload import watch_config

    watch_config(config, node)  # rules/destinations reload on file change or SIGHUP
    typer.echo(f"{cfg.node.ae_title} listening on {cfg.node.host}:{node.port}; Ctrl+C to stop")
    node.serve_forever()


@app.command()
def worker(config: ConfigOpt) -> None:
    """Run one worker alone (claims jobs from the configured database).

    Recipes, destinations and sender settings reload on file change or SIGHUP, as in `serve`:
    the next job uses them (a changed model package is loaded on first use).
    """
    from dicom_node.reload import watch_config
    from dicom_node.worker import Worker

    cfg = _load(config)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker = Worker(cfg, stop=stop)
    watcher = watch_config(config, worker)
    try:
        worker.run()
    finally:
        watcher.stop()


@app.command()
def echo(
    host: str, port: int,
    aet: Annotated[str, typer.Option("--aet", help="Called AE title.")] = "ANY-SCP",
    calling_aet: Annotated[str, typer.Option("--calling-aet", help="Our AE title.")] = "VPET",
    timeout: float = 10.0,
) -> None:
    """C-ECHO a remote AE."""
    from dicom_node import scu
    from pipeline.errors import DeliveryError

    try:
        status = scu.echo(aet, host, port, calling_ae=calling_aet, timeout=timeout)
    except DeliveryError as exc:
        raise _fail(f"C-ECHO failed: {exc}") from None
    typer.echo(f"C-ECHO {aet}@{host}:{port}: status 0x{status:04X}")
    if status != 0:
        raise typer.Exit(1)


def _expand(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file()))
        else:
            files.append(p)
    return files


@app.command()
def send(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (searched recursively).",
                                                exists=True)],
    host: Annotated[str, typer.Option(help="Destination host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Destination port.")] = 104,
    aet: Annotated[str, typer.Option("--aet", help="Called AE title.")] = "ANY-SCP",
    calling_aet: Annotated[str, typer.Option("--calling-aet", help="Our AE title.")] = "VPET",
    timeout: float = 30.0,
) -> None:
    """C-STORE DICOM files to a remote AE (one association, exact SOP classes proposed)."""
    from dicom_node import scu
    from pipeline.errors import DeliveryError

    files = _expand(paths)
    try:
        results = scu.send_files(files, aet, host, port, calling_ae=calling_aet, timeout=timeout)
    except DeliveryError as exc:
        raise _fail(f"send failed: {exc}") from None
    failed = [r for r in results if not r.ok]
    for r in failed:
        typer.echo(f"FAILED {r.path}: {r.error}", err=True)
    typer.echo(f"sent {len(results) - len(failed)}/{len(results)} file(s) to {aet}@{host}:{port}")
    if failed:
        raise typer.Exit(1)


def _modality_of(files: list[Path]) -> str:
    import pydicom

    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["Modality"])
        except Exception as exc:  # noqa: BLE001 - skip non-DICOM files in the folder
            logger.debug("skipping %s: %s", f, exc)
            continue
        if getattr(ds, "Modality", ""):
            return str(ds.Modality).upper()
    return ""


@app.command("run")
def run_cmd(
    input_dir: Annotated[Path, typer.Argument(exists=True, file_okay=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    model: Annotated[Path | None, typer.Option(help="Model package folder.")] = None,
    recipe: Annotated[str | None, typer.Option(help="Recipe name (default: by modality).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    config: Annotated[Path | None, typer.Option(help="Config file with recipes.")] = None,
) -> None:
    """Run the pipeline offline on one series folder and print outputs and lesions."""
    from rich.console import Console
    from rich.table import Table

    import pipeline
    from dicom_node.config import Config
    from pipeline.device import resolve_device
    from pipeline.errors import VpetError

    cfg = _load(config) if config else Config()
    files = _expand([input_dir])
    if not files:
        raise _fail(f"no files in {input_dir}")
    if recipe is None:
        modality = _modality_of(files)
        matching = [n for n, r in cfg.recipes.items() if r.modality == modality]
        if not matching:
            raise _fail(f"no recipe for modality {modality or '(unknown)'}; use --recipe")
        recipe = matching[0]
    if recipe not in cfg.recipes:
        raise _fail(f"unknown recipe {recipe!r}; known: {', '.join(sorted(cfg.recipes))}")
    rec = cfg.recipe(recipe)
    if model is not None:
        rec = dataclasses.replace(rec, model=model)
    out.mkdir(parents=True, exist_ok=True)
    try:
        result = pipeline.run(files, out, recipe=rec, device=resolve_device(device))
    except VpetError as exc:
        raise _fail(f"pipeline failed: {exc}") from None
    console = Console()
    outputs = Table(title=f"Outputs ({result.units}, model {result.model_version})")
    for col in ("kind", "SOP class", "file"):
        outputs.add_column(col)
    for o in result.outputs:
        from pydicom.uid import UID

        outputs.add_row(o.kind, UID(o.sop_class_uid).name, str(o.path))
    console.print(outputs)
    lesions = Table(title=f"Lesions ({len(result.lesions)})")
    for col in ("#", "max", "mean", "volume ml", "centroid mm"):
        lesions.add_column(col)
    for les in result.lesions:
        lesions.add_row(str(les.index), f"{les.suv_max:.2f}", f"{les.suv_mean:.2f}",
                        f"{les.volume_ml:.2f}", ", ".join(f"{c:.1f}" for c in les.centroid_mm))
    console.print(lesions)
    if result.timings:
        console.print("timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items()))


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Demo folder.")] = Path("demo-output"),
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    shape: Annotated[str | None, typer.Option(
        help="Study size as SLICES,ROWS,COLUMNS (default 80,256,256 CT; 128,128,128 MR).")]
    = None,
    seed: Annotated[int, typer.Option(help="Phantom seed.")] = 7,
    kind: Annotated[str, typer.Option(help="ct (abdomen CT -> SUV) or mr (brain T1 -> SUVR).")]
    = "ct",
) -> None:
    """End-to-end demo: phantom CT (or MR) -> node -> virtual PET -> local PACS."""
    from dicom_node.demo import print_report, run_demo

    if kind not in ("ct", "mr"):
        raise typer.BadParameter(f"--kind wants ct or mr, got {kind!r}")
    logging.getLogger().setLevel(logging.WARNING)  # the report below says what happened
    typer.echo(f"Running the end-to-end demo (synthetic {kind.upper()} -> node -> local "
               "PACS)...")
    report = run_demo(out, device=device, shape=_parse_shape(shape) if shape else None,
                      seed=seed, kind=kind)
    print_report(report)
    if report.job_state != "done":
        raise typer.Exit(1)


def _parse_range(text: str, option: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{option} wants LOW,HIGH, got {text!r}") from None
    if not 0 <= low <= high:
        raise typer.BadParameter(f"{option} wants 0 <= LOW <= HIGH, got {text!r}")
    return low, high


def _parse_shape(text: str) -> tuple[int, int, int]:
    try:
        z, y, x = (int(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"--shape wants SLICES,ROWS,COLUMNS, got {text!r}") from None
    return z, y, x


@phantoms_app.command("make")
def phantoms_make(
    out: Annotated[Path, typer.Option("--out", "-o")],
    cases: Annotated[int, typer.Option(min=1)] = 4,
    seed: int = 0,
    kind: Annotated[str, typer.Option(help="abdomen (CT/PET) or brain (MR/PET).")] = "abdomen",
    shape: Annotated[str | None, typer.Option(help="CT or MR size as Z,Y,X.")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Processes writing abdomen cases.")] = 1,
    lesion_rims: Annotated[bool, typer.Option(
        help="Abdomen: malignant lesions with their CT rim; --no-lesion-rims draws flat "
             "spheres (a generality check: same seeds, same anatomy).")] = True,
    ct_noise: Annotated[str | None, typer.Option(
        help="Abdomen: CT noise sigma range LOW,HIGH in HU (default 5,18).")] = None,
    ct_noise_grain: Annotated[float, typer.Option(
        min=0.0, help="Abdomen: CT noise correlated in-plane over this FWHM in mm, as a "
                      "scanner's kernel makes it (default 0: white).")] = 0.0,
) -> None:
    """Write paired synthetic CT/PET (abdomen) or MR/PET (brain) phantom cases."""
    from training.phantoms.make import make_phantoms

    kwargs = {} if shape is None else {
        "ct_shape" if kind == "abdomen" else "shape": _parse_shape(shape)}
    if kind == "abdomen":
        kwargs["workers"] = workers
        kwargs["lesion_rims"] = lesion_rims
        if ct_noise is not None:
            kwargs["ct_noise_hu"] = _parse_range(ct_noise, "--ct-noise")
        if ct_noise_grain:
            kwargs["ct_noise_grain_mm"] = ct_noise_grain
    elif not lesion_rims or ct_noise is not None or ct_noise_grain:
        raise _fail("--no-lesion-rims, --ct-noise and --ct-noise-grain apply to abdomen "
                    "phantoms only", 2)
    try:
        make_phantoms(out, cases, seed, kind, **kwargs)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    typer.echo(f"{cases} phantom case(s) written to {out}")


@train_app.command("demo")
def train_demo_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Model package folder to write.")],
    cases: Annotated[int, typer.Option(min=1)] = 8,
    epochs: Annotated[int, typer.Option(min=1)] = 5,
    seed: int = 0,
    work_dir: Annotated[Path | None, typer.Option(help="Scratch folder for phantoms.")] = None,
) -> None:
    """Train the small demonstration model on synthetic phantoms."""
    from training.train_demo import train_demo

    train_demo(out=out, cases=cases, epochs=epochs, seed=seed, work_dir=work_dir)
    typer.echo(f"model package written to {out}")


@config_app.command("check")
def config_check(path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Validate a config file; prints the offending key on error."""
    cfg = _load(path)
    typer.echo(f"{path}: OK ({len(cfg.rules)} rule(s), {len(cfg.destinations)} destination(s), "
               f"recipes: {', '.join(sorted(cfg.recipes))})")


@bench_app.command("pipeline")
def bench_pipeline_cmd(
    shape: Annotated[str, typer.Option(help="CT size as Z,Y,X.")] = "300,512,512",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    model: Annotated[Path | None, typer.Option(help="Model package (default: shipped).")] = None,
) -> None:
    """Seconds per pipeline stage and peak memory on a phantom CT."""
    from dicom_node.bench_pipeline import bench_pipeline
    from pipeline.device import resolve_device

    result = bench_pipeline(_parse_shape(shape), resolve_device(device), model=model)
    typer.echo("\n".join(result.lines()))


def main() -> None:  # pragma: no cover - `python -m dicom_node.cli`
    app()
    sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()
