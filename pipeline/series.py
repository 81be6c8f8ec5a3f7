"""Load one single-frame DICOM image series (CT, MR, PT) into a SimpleITK volume.

Why: every later stage (resampling, inference, encoding) needs a correct patient-space
geometry. Slices are sorted along the slice normal and spacing comes from the positions,
never from SliceThickness, because scanners overlap or gap slices. Inputs we cannot map
safely (tilt, gaps, mixed orientations, multi-frame) are refused with a reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from pipeline.errors import GeometryError, InputError

log = logging.getLogger(__name__)

ORIENTATION_TOL = 1e-4  # direction cosines are compared to this absolute tolerance
SPACING_TOL = 0.01  # relative spread of slice gaps tolerated before refusing
OFFSET_TOL_MM = 0.05  # in-plane drift of slice positions tolerated (gantry tilt otherwise)


@dataclass
class Volume:
    """A loaded series: float32 image (rescaled values) plus the sorted headers (no pixels)."""

    image: sitk.Image
    datasets: list[pydicom.Dataset]
    modality: str
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str

    def array(self) -> np.ndarray:
        """Pixel values as a (z, y, x) float32 array (a copy)."""
        return sitk.GetArrayFromImage(self.image)


def _uid(ds: pydicom.Dataset) -> str:
    return str(ds.get("SOPInstanceUID", "<no SOPInstanceUID>"))


def _read_header(path: Path) -> pydicom.Dataset:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable DICOM file ({exc})") from exc
    if "SOPClassUID" not in ds:
        raise InputError(f"{path}: not a DICOM image (no (0008,0016) SOPClassUID)")
    ds.filename = str(path)
    return ds


_LABELS = {
    "PixelSpacing": "pixel spacing",
    "ImagePositionPatient": "position",
    "ImageOrientationPatient": "orientation",
    "Rows": "rows",
    "Columns": "columns",
}
_TAGS = {
    "PixelSpacing": "(0028,0030)",
    "ImagePositionPatient": "(0020,0032)",
    "ImageOrientationPatient": "(0020,0037)",
    "Rows": "(0028,0010)",
    "Columns": "(0028,0011)",
}


def _require(ds: pydicom.Dataset, keyword: str, tag: str) -> None:
    if keyword not in ds or ds[keyword].value in (None, "", []):
        modality = ds.get("Modality", "image")
        raise GeometryError(
            f"{modality} slice without {_LABELS[keyword]}: {tag} {keyword} missing in SOP "
            f"Instance {_uid(ds)}"
        )


def _check_headers(headers: list[pydicom.Dataset]) -> None:
    """One series, single-frame, complete geometry, one orientation, one matrix."""
    series = {str(ds.get("SeriesInstanceUID", "")) for ds in headers}
    if len(series) != 1:
        raise InputError(f"files belong to {len(series)} series, expected one: {sorted(series)}")
    for ds in headers:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if frames > 1 or "PerFrameFunctionalGroupsSequence" in ds:
            raise InputError(
                f"multi-frame image (SOP Class {ds.SOPClassUID}, {frames} frames) in SOP Instance "
                f"{_uid(ds)}: enhanced/multi-frame series are not supported yet"
            )
        for keyword, tag in _TAGS.items():
            _require(ds, keyword, tag)
    first = headers[0]
    iop0 = np.array(first.ImageOrientationPatient, float)
    for ds in headers[1:]:
        if not np.allclose(np.array(ds.ImageOrientationPatient, float), iop0, atol=ORIENTATION_TOL):
            raise GeometryError(
                f"mixed orientations in series: SOP Instance {_uid(ds)} has "
                f"ImageOrientationPatient {list(ds.ImageOrientationPatient)}, first slice "
                f"{list(first.ImageOrientationPatient)}"
            )
        same_matrix = (ds.Rows, ds.Columns) == (first.Rows, first.Columns)
        same_spacing = np.allclose(np.array(ds.PixelSpacing, float),
                                   np.array(first.PixelSpacing, float), rtol=1e-4)
        if not (same_matrix and same_spacing):
            raise GeometryError(f"SOP Instance {_uid(ds)}: Rows/Columns/PixelSpacing differ "
                                "from the first slice of the series")


def _axes(ds: pydicom.Dataset) -> np.ndarray:
    """3x3 matrix whose columns are the row, column and slice-normal directions (LPS)."""
    iop = np.array(ds.ImageOrientationPatient, float)
    row, col = iop[:3], iop[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise GeometryError(f"ImageOrientationPatient {list(iop)} of SOP Instance {_uid(ds)} "
                            "is not two orthonormal vectors")
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    normal = np.cross(row, col)
    return np.column_stack([row, col, normal / np.linalg.norm(normal)])


def _sort_and_space(headers: list[pydicom.Dataset], axes: np.ndarray) -> tuple[list, float]:
    """Sort slices along the normal; return them and the uniform slice spacing in mm."""
    normal = axes[:, 2]
    positions = np.array([np.array(ds.ImagePositionPatient, float) for ds in headers])
    order = np.argsort(positions @ normal, kind="stable")
    headers = [headers[i] for i in order]
    positions = positions[order]
    if len(headers) == 1:
        ds = headers[0]
        thickness = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness") or 1.0
        return headers, float(thickness)
    gaps = np.diff(positions @ normal)
    dup = np.flatnonzero(gaps < 1e-3)
    if dup.size:
        k = int(dup[0])
        raise GeometryError(f"duplicate slice position {list(positions[k])} in SOP Instances "
                            f"{_uid(headers[k])} and {_uid(headers[k + 1])}")
    spacing = float(np.median(gaps))
    if gaps.max() - gaps.min() > SPACING_TOL * spacing:
        raise GeometryError(f"non-uniform slice spacing: gaps from {gaps.min():.3f} to "
                            f"{gaps.max():.3f} mm (missing slices or variable spacing)")
    drift = positions - positions[0] - np.outer(positions @ normal - positions[0] @ normal, normal)
    if np.abs(drift).max() > max(OFFSET_TOL_MM, SPACING_TOL * spacing):
        raise GeometryError("slice positions do not lie along the slice normal "
                            f"(gantry tilt or sheared stack; drift {np.abs(drift).max():.3f} mm)")
    return headers, spacing


def _pixels(ds: pydicom.Dataset) -> np.ndarray:
    try:
        full = pydicom.dcmread(ds.filename)
        arr = full.pixel_array.astype(np.float32)
    except Exception as exc:  # pydicom raises many types for missing/unsupported pixel data
        raise InputError(f"{ds.filename}: cannot decode pixel data of SOP Instance {_uid(ds)} "
                         f"({exc})") from exc
    if arr.ndim != 2:
        raise InputError(f"SOP Instance {_uid(ds)}: expected one greyscale frame, got shape {arr.shape}")
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return arr * slope + intercept


def load_series(files: Sequence[Path]) -> Volume:
    """Read, check, sort and stack one series; raise InputError/GeometryError naming the cause."""
    if not files:
        raise InputError("no files given: a series needs at least one slice")
    headers = [_read_header(Path(f)) for f in files]
    _check_headers(headers)
    axes = _axes(headers[0])
    headers, dz = _sort_and_space(headers, axes)
    array = np.stack([_pixels(ds) for ds in headers])
    image = sitk.GetImageFromArray(array)
    dy, dx = (float(v) for v in headers[0].PixelSpacing)  # PixelSpacing = row, column spacing
    image.SetSpacing((dx, dy, dz))
    image.SetOrigin(tuple(float(v) for v in headers[0].ImagePositionPatient))
    image.SetDirection(tuple(float(v) for v in axes.flatten()))
    first = headers[0]
    log.info("loaded series %s: %d slices, size %s, spacing %s", first.SeriesInstanceUID,
             len(headers), image.GetSize(), image.GetSpacing())
    return Volume(
        image=image,
        datasets=headers,
        modality=str(first.get("Modality", "")),
        series_uid=str(first.SeriesInstanceUID),
        study_uid=str(first.get("StudyInstanceUID", "")),
        frame_of_reference_uid=str(first.get("FrameOfReferenceUID", "")),
    )
