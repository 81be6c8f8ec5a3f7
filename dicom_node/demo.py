"""`vpet demo`: the whole product on one machine, with real DICOM associations.

A synthetic CT study (or, with kind "mr", a T1 brain MR) is sent (C-STORE) to a node started
on 127.0.0.1 with embedded defaults (SQLite, local folders, the shipped demo models); the
node's results go to a local Storage SCP standing in for the PACS. What came back is read from
the files that SCP stored.
"""

from __future__ import annotations

import logging
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from sqlalchemy import select

from dicom_node.config import Config
from dicom_node.db import Job
from dicom_node.local_pacs import LocalPACS
from dicom_node.node import Node
from dicom_node.scu import send_files

log = logging.getLogger(__name__)

SOP_NAMES = {
    "1.2.840.10008.5.1.4.1.1.30": "Parametric Map",
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color SC",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte SC",
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR",
}


@dataclass
class ReceivedSeries:
    description: str
    sop_class: str
    instances: int
    frames: int


@dataclass
class DemoReport:
    """What the demo measured and what came back to the stand-in PACS."""

    series: list[ReceivedSeries] = field(default_factory=list)
    lesions: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    job_state: str = ""
    job_reason: str | None = None
    preview: Path | None = None
    received_dir: Path | None = None
    units: str = "SUV"  # SUV for ct-to-pet, SUVR for mr-to-pet
    modality: str = "CT"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_config(base: Path, node_port: int, pacs_port: int, device: str) -> Config:
    """Embedded defaults plus two rules: CT through ct-to-pet, MR through mr-to-pet, both to
    the local PACS."""
    return Config.embedded_defaults(
        base,
        node={"ae_title": "VPET", "port": node_port},
        allowed_peers=[{"ae_title": "DEMO-MODALITY", "host": "127.0.0.1"}],
        destinations={"pacs": {"ae_title": "LOCALPACS", "host": "127.0.0.1", "port": pacs_port}},
        rules=[{"name": "ct-abdomen", "match": {"modality": "CT"}, "recipe": "ct-to-pet",
                "destinations": ["pacs"]},
               {"name": "mr-brain", "match": {"modality": "MR"}, "recipe": "mr-to-pet",
                "destinations": ["pacs"]}],
        series={"timeout_s": 1.0},
        workers={"count": 1, "device": device},
        logging={"level": "WARNING"},
    )


def _derivation(item: pydicom.Dataset) -> str:
    """The 'Derivation' concept modifier of a NUM item (e.g. Maximum, Mean), or ''."""
    for child in item.get("ContentSequence", []):
        if child.ConceptNameCodeSequence[0].CodeMeaning == "Derivation":
            return child.ConceptCodeSequence[0].CodeMeaning
    return ""


def _lesions_from_sr(path: Path) -> list[dict]:
    """Per-lesion numeric measurements (name -> value unit) from a TID 1500 SR."""
    ds = pydicom.dcmread(path)
    lesions: list[dict] = []

    def walk(items, current: dict | None) -> None:
        for item in items:
            name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
            if name == "Measurement Group":
                group: dict = {}
                lesions.append(group)
                walk(item.get("ContentSequence", []), group)
                continue
            if current is not None and item.ValueType == "TEXT" and name == "Tracking Identifier":
                current["tracking_id"] = item.TextValue
            if current is not None and item.ValueType == "NUM":
                mv = item.MeasuredValueSequence[0]
                unit = mv.MeasurementUnitsCodeSequence[0].CodeValue
                current[f"{name} {_derivation(item)}".strip()] = (float(mv.NumericValue), unit)
                continue
            walk(item.get("ContentSequence", []), current)

    walk(ds.get("ContentSequence", []), None)
    return [g for g in lesions if set(g) - {"tracking_id"}]  # groups with measurements


def _summarize(folder: Path) -> tuple[list[ReceivedSeries], list[dict]]:
    groups: dict[str, list[pydicom.Dataset]] = {}
    sr_path = None
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        groups.setdefault(ds.SeriesInstanceUID, []).append(ds)
        if ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34":
            sr_path = path
    series = [
        ReceivedSeries(items[0].get("SeriesDescription", ""),
                       SOP_NAMES.get(items[0].SOPClassUID, items[0].SOPClassUID), len(items),
                       sum(int(d.get("NumberOfFrames", 1) or 1) for d in items))
        for items in groups.values()
    ]
    return series, (_lesions_from_sr(sr_path) if sr_path else [])


DEFAULT_SHAPES = {"ct": (80, 256, 256), "mr": (128, 128, 128)}  # MR: 2 mm over 256 mm


def _make_input(out_dir: Path, kind: str, seed: int, shape: tuple[int, int, int]) -> list[Path]:
    """Write the synthetic study the demo sends; demo data only, not a runtime need."""
    if kind == "mr":
        from training.phantoms.brain import make_brain_case

        return make_brain_case(out_dir, seed, shape=shape).mr_paths
    from training.phantoms.abdomen import make_ct_only

    return make_ct_only(out_dir, seed, ct_shape=shape, n_lesions=3).ct_paths


def run_demo(out_dir: Path, *, seed: int = 7, shape: tuple[int, int, int] | None = None,
             device: str = "auto", timeout_s: float = 900.0, kind: str = "ct") -> DemoReport:
    """Run the end-to-end demo under `out_dir`; returns what was measured and received."""
    if kind not in DEFAULT_SHAPES:
        raise ValueError(f"kind must be one of {sorted(DEFAULT_SHAPES)}, got {kind!r}")
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    report = DemoReport(received_dir=out_dir / "pacs", units="SUVR" if kind == "mr" else "SUV",
                        modality=kind.upper())
    t = time.perf_counter()
    paths = _make_input(out_dir / "input", kind, seed, shape or DEFAULT_SHAPES[kind])
    report.seconds[f"make synthetic {report.modality}"] = time.perf_counter() - t

    config = demo_config(out_dir / "node", _free_port(), _free_port(), device)
    pacs = LocalPACS(out_dir / "pacs", config.destinations["pacs"].port).start()
    node = Node(config).start()
    try:
        t = time.perf_counter()
        results = send_files(paths, "VPET", "127.0.0.1", node.port, calling_ae="DEMO-MODALITY")
        failed = [r for r in results if not r.ok]
        if failed:
            raise RuntimeError(f"{len(failed)} instance(s) refused by the node: {failed[0].error}")
        report.seconds["C-STORE study to node"] = time.perf_counter() - t
        t = time.perf_counter()
        if not node.wait_idle(timeout=timeout_s):
            raise TimeoutError(f"node did not finish within {timeout_s:.0f} s")
        report.seconds["node: complete + process + deliver"] = time.perf_counter() - t
        with node.db.session() as s:
            job = s.scalars(select(Job).order_by(Job.id.desc())).first()
            if job is None:
                raise RuntimeError("no job was created for the demo series")
            report.job_state, report.job_reason = job.state, job.reason
            for stage, seconds in (job.timings or {}).items():
                if not stage.endswith("_at"):  # *_at are timestamps, not durations
                    report.seconds[f"  pipeline {stage}"] = float(seconds)
            job_id = job.id
    finally:
        node.stop()
        pacs.stop()
    preview = config.outbox_dir / str(job_id) / "preview.png"
    if preview.is_file():
        report.preview = out_dir / "preview.png"
        shutil.copyfile(preview, report.preview)
    report.series, report.lesions = _summarize(out_dir / "pacs")
    return report


def _measure(lesion: dict, word: str) -> str:
    """The first measurement whose concept name contains `word`, formatted, or '-'."""
    for key, value in lesion.items():
        if key != "tracking_id" and word in key.lower():
            return f"{value[0]:.2f}"
    return "-"


def print_report(report: DemoReport, console=None) -> None:
    """Human-readable summary: what came back, the lesions, and seconds per stage."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    console.print(f"[bold]Job state:[/bold] {report.job_state}"
                  + (f" ({report.job_reason})" if report.job_reason else ""))
    table = Table(title=f"Received by the stand-in PACS ({report.received_dir})")
    for col in ("Series description", "Object", "Instances", "Frames"):
        table.add_column(col)
    for s in report.series:
        table.add_row(s.description, s.sop_class, str(s.instances), str(s.frames))
    console.print(table)
    lesions = Table(title="Lesions (from the TID 1500 SR)" if report.units == "SUV"
                    else "Regions above the SUVR threshold (from the TID 1500 SR)")
    for col in ("Lesion", f"{report.units}max", f"{report.units}mean", "Volume (ml)"):
        lesions.add_column(col)
    for i, lesion in enumerate(report.lesions, 1):
        lesions.add_row(lesion.get("tracking_id", str(i)), _measure(lesion, "max"),
                        _measure(lesion, "mean"), _measure(lesion, "volume"))
    console.print(lesions if report.lesions else "No region above the threshold was reported.")
    timing = Table(title="Seconds per stage")
    timing.add_column("Stage")
    timing.add_column("Seconds", justify="right")
    for stage, seconds in report.seconds.items():
        timing.add_row(stage, f"{seconds:.2f}")
    console.print(timing)
    if report.preview:
        console.print(f"Preview ({report.modality} | virtual PET | fused with lesion outlines): "
                      f"{report.preview}")
