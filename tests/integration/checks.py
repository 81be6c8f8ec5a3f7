"""Assertions on the result objects a destination received, shared by the end-to-end tests."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pydicom

PM = "1.2.840.10008.5.1.4.1.1.30"
SEG = "1.2.840.10008.5.1.4.1.1.66.4"
SC_MF = "1.2.840.10008.5.1.4.1.1.7.4"
SC_GREY = "1.2.840.10008.5.1.4.1.1.7.2"
SR = "1.2.840.10008.5.1.4.1.1.88.34"


def read_all(paths: list[Path]) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in paths]


def by_class(datasets: list[pydicom.Dataset]) -> dict[str, list[pydicom.Dataset]]:
    out: dict[str, list[pydicom.Dataset]] = {}
    for ds in datasets:
        out.setdefault(ds.SOPClassUID, []).append(ds)
    return out


def source_positions(ct_files: list[Path]) -> tuple[str, str, np.ndarray]:
    """Study UID, Frame of Reference UID and sorted slice z positions of the source CT."""
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in ct_files]
    z = np.sort([float(h.ImagePositionPatient[2]) for h in headers])
    return headers[0].StudyInstanceUID, headers[0].FrameOfReferenceUID, z


def frame_positions(ds: pydicom.Dataset) -> np.ndarray:
    return np.sort([float(f.PlanePositionSequence[0].ImagePositionPatient[2])
                    for f in ds.PerFrameFunctionalGroupsSequence])


def check_outputs(datasets: list[pydicom.Dataset], ct_files: list[Path]) -> None:
    """Every kind present once; same study and frame of reference; PM and SCs aligned with the CT."""
    study, frame_of_reference, z = source_positions(ct_files)
    counts = Counter(ds.SOPClassUID for ds in datasets)
    assert counts == {PM: 1, SEG: 1, SC_MF: 1, SC_GREY: 1, SR: 1}, counts
    for ds in datasets:
        assert ds.StudyInstanceUID == study
        assert "synthetic" in ds.SeriesDescription.lower()
    groups = by_class(datasets)
    pm, seg = groups[PM][0], groups[SEG][0]
    assert pm.FrameOfReferenceUID == frame_of_reference
    assert seg.FrameOfReferenceUID == frame_of_reference
    assert int(pm.NumberOfFrames) == len(z)
    np.testing.assert_allclose(frame_positions(pm), z, atol=1e-3)
    assert len(seg.SegmentSequence) >= 1
    for sc in (groups[SC_MF][0], groups[SC_GREY][0]):
        assert sc.BurnedInAnnotation == "YES" and int(sc.NumberOfFrames) == len(z)
        np.testing.assert_allclose(np.sort([float(v) for v in sc.SliceLocationVector]), z,
                                   atol=1e-3)
