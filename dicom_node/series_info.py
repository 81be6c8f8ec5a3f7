"""Series facts read from stored headers: what rules match on and the count hints.

Why: the C-STORE handler keeps its header parse minimal (speed); the few extra attributes
rules and completion need are read once per series from a stored file, off the hot path.
The same functions serve `vpet rules test` on a plain folder.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from dicom_node.rules import SeriesFacts

logger = logging.getLogger(__name__)

FACT_TAGS = [
    "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "Modality", "SeriesDescription",
    "BodyPartExamined", "Manufacturer", "ImageType", "SliceThickness", "NumberOfFrames",
    "ImagesInAcquisition", "NumberOfTemporalPositions", "NumberOfSlices",
    "SharedFunctionalGroupsSequence",
]


def read_header(path: Path | str, quiet: bool = False) -> Dataset | None:
    """The fact/hint attributes of one file; None (logged) when it cannot be read."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=FACT_TAGS)
    except Exception as exc:  # noqa: BLE001 - any unreadable file just gives no facts
        logger.log(logging.DEBUG if quiet else logging.WARNING,
                   "cannot read header of %s: %s", path, exc)
        return None


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = int(ds.get(keyword) or 0)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def frames_in(ds: Dataset | None) -> int:
    """Frames of one instance (1 for single-frame objects)."""
    return (_int(ds, "NumberOfFrames") or 1) if ds is not None else 1


def is_multiframe(ds: Dataset | None) -> bool:
    return ds is not None and "NumberOfFrames" in ds


def expected_frames(ds: Dataset | None) -> tuple[int | None, str]:
    """How many frames the series should have, per its headers, and which tag said so."""
    if ds is None:
        return None, ""
    slices, temporal = _int(ds, "NumberOfSlices"), _int(ds, "NumberOfTemporalPositions")
    if slices and temporal:
        return slices * temporal, "NumberOfSlices x NumberOfTemporalPositions"
    for keyword in ("ImagesInAcquisition", "NumberOfSlices"):
        value = _int(ds, keyword)
        if value:
            return value, keyword
    if is_multiframe(ds):
        return frames_in(ds), "NumberOfFrames"
    return None, ""


def slice_thickness(ds: Dataset | None) -> float | None:
    """(0018,0050), or from the shared Pixel Measures of an enhanced object."""
    if ds is None:
        return None
    value = ds.get("SliceThickness")
    if value in (None, ""):
        try:
            value = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SliceThickness
        except (AttributeError, IndexError, KeyError):
            return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def facts_from_header(ds: Dataset | None, *, slice_count: int, calling_ae: str = "",
                      called_ae: str = "", source_address: str = "", modality: str = "",
                      description: str = "", body_part: str = "") -> SeriesFacts:
    """SeriesFacts from one representative header; explicit values win over the header's."""
    def get(keyword: str) -> str:
        return str(ds.get(keyword, "") or "") if ds is not None else ""

    image_type = ds.get("ImageType", []) if ds is not None else []
    if isinstance(image_type, str):
        image_type = [image_type]
    return SeriesFacts(
        modality=modality or get("Modality"),
        series_description=description or get("SeriesDescription"),
        calling_ae=calling_ae, called_ae=called_ae,
        body_part=body_part or get("BodyPartExamined"),
        source_address=source_address,
        manufacturer=get("Manufacturer"),
        image_type=tuple(str(v) for v in image_type),
        slice_count=slice_count,
        slice_thickness=slice_thickness(ds),
    )


def count_frames(paths: Sequence[str | Path], first: Dataset | None) -> int:
    """Frames received: the file count, or the sum of NumberOfFrames for multi-frame series."""
    if not is_multiframe(first):
        return len(paths)
    return sum(frames_in(read_header(p)) for p in paths)
