"""Runners and helpers for crash, concurrency and delivery tests.

Runners live in an importable module so spawned worker processes can unpickle them; their
parameters travel with `functools.partial`. Output UIDs are derived from the input UIDs, like
the real pipeline's, so a re-run produces the same objects (no duplicates at the PACS).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from dicom_node.db import Database, Instance, Series, utcnow
from pipeline.types import OutputFile, PipelineResult, Recipe

SC = "1.2.840.10008.5.1.4.1.1.7"


def derived_uid(*parts: str) -> str:
    """A UID from a hash of `parts` (2.25 form), like the pipeline's deterministic UIDs."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:15], 'big')}"


def _write_sc(path: Path, ref: Dataset, sop_uid: str, series_uid: str) -> OutputFile:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = SC, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = ref.StudyInstanceUID, series_uid
    ds.Modality, ds.PatientID = "OT", ref.get("PatientID", "X")
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SC
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return OutputFile(path, "sc", SC, sop_uid, series_uid)


def note(out_dir: Path, name: str) -> None:
    """Append one line to `<storage>/runs.log` (O_APPEND: atomic between processes)."""
    log = out_dir.parent.parent / "runs.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{name} {out_dir.name} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def runs(storage: Path) -> list[tuple[str, str, int]]:
    log = storage / "runs.log"
    if not log.exists():
        return []
    return [(a, b, int(c)) for a, b, c in (ln.split() for ln in log.read_text().splitlines())]


def counting_runner(files: list[Path], out_dir: Path, *, recipe: Recipe, model: Any,
                    device: str, sleep_s: float = 0.05) -> PipelineResult:
    """Records that it ran (job id, pid) and produces nothing."""
    note(out_dir, "run")
    time.sleep(sleep_s)
    return PipelineResult(outputs=[], lesions=[], timings={"fake": sleep_s})


def deterministic_runner(files: list[Path], out_dir: Path, *, recipe: Recipe, model: Any,
                         device: str, outputs: int = 4, sleep_s: float = 0.0) -> PipelineResult:
    """`outputs` SC objects whose UIDs derive from the input UIDs; notes start and end."""
    note(out_dir, "start")
    time.sleep(sleep_s)
    refs = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    key = ",".join(sorted(str(r.SOPInstanceUID) for r in refs))
    series_uid = derived_uid(key, "series")
    made = [_write_sc(out_dir / f"sc{i}.dcm", refs[0], derived_uid(key, str(i)), series_uid)
            for i in range(outputs)]
    note(out_dir, "end")
    return PipelineResult(outputs=made, lesions=[], timings={"fake": sleep_s})


def add_series(db: Database, series_uid: str, n: int = 1) -> None:
    """Index `n` dummy instances of a series (for runners that do not read files)."""
    with db.session() as s:
        s.add(Series(series_uid=series_uid, study_uid="1.2", modality="CT", description="",
                     calling_ae="X", called_ae="VPET", body_part="", instance_count=n,
                     last_received_at=utcnow(), assoc_key="", association_released=True,
                     state="queued", version=1))
        for i in range(n):
            s.add(Instance(sop_instance_uid=f"{series_uid}.{i + 1}", series_uid=series_uid,
                           study_uid="1.2", sop_class=SC, path="/nonexistent", calling_ae="X",
                           series_version=1, received_at=utcnow()))
