"""Test helpers: polling with deadlines, a recording Storage SCP, a fake pipeline runner.

The fake runner lives in an importable module so spawned worker processes can unpickle it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicom_node.local_pacs import LocalPACS
from pipeline.types import OutputFile, PipelineResult, Recipe

SC = "1.2.840.10008.5.1.4.1.1.7"
SEG = "1.2.840.10008.5.1.4.1.1.66.4"
UNCOMPRESSED = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, poll: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; fail with a clear message at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(poll)


def write_object(path: Path, sop_class: str, ref: Dataset, series_uid: str) -> OutputFile:
    """A minimal result object of `sop_class` for the given source (no pixels needed here)."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = ref.StudyInstanceUID
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "OT"
    ds.PatientID = ref.get("PatientID", "X")
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    kind = "seg" if sop_class == SEG else "sc"
    return OutputFile(path, kind, sop_class, ds.SOPInstanceUID, series_uid)


def fake_runner(files: list[Path], out_dir: Path, *, recipe: Recipe, model: Any,
                device: str) -> PipelineResult:
    """Stands in for pipeline.run: one SC and one SEG object referencing the input study."""
    ref = pydicom.dcmread(files[0], stop_before_pixels=True)
    series_uid = generate_uid()
    outputs = [write_object(out_dir / "sc.dcm", SC, ref, series_uid),
               write_object(out_dir / "seg.dcm", SEG, ref, series_uid)]
    return PipelineResult(outputs=outputs, lesions=[], timings={"fake": 0.001})


def failing_runner(files: list[Path], out_dir: Path, *, recipe: Recipe, model: Any,
                   device: str) -> PipelineResult:
    raise RuntimeError("synthetic pipeline failure")


def stand_in_pacs(port: int, ae_title: str = "DEST", sop_classes: list[str] | None = None,
                  delay_s: float = 0.0) -> LocalPACS:
    """A record-only LocalPACS: which (SOP Class, SOP Instance) a destination received."""
    return LocalPACS(None, port, ae_title, sop_classes=sop_classes, delay_s=delay_s)
