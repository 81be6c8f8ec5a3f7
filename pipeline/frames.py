"""One `Frame` per 2-D source image, from single-frame instances or enhanced multi-frame ones.

Why: geometry is checked and sorted per frame, whatever the storage: a classic CT series has
one frame per file with ImagePositionPatient at the top level; an Enhanced CT/MR instance
holds all frames and puts position, orientation, spacing and rescale in the per-frame or
shared functional groups (PS3.3 C.7.6.16). Both end up as the same list of frames.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pydicom

from pipeline.errors import GeometryError, InputError

log = logging.getLogger(__name__)


@dataclass
class Frame:
    """Geometry and rescale of one 2-D image; `number` is 1-based within a multi-frame file."""

    dataset: pydicom.Dataset  # header only (no pixels)
    number: int | None  # None for a single-frame instance
    position: np.ndarray  # ImagePositionPatient (3,)
    orientation: np.ndarray  # ImageOrientationPatient (6,)
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing) mm
    thickness: float | None  # SpacingBetweenSlices or SliceThickness, only for a single slice
    slope: float
    intercept: float
    acquisition: str  # AcquisitionNumber / TemporalPositionIdentifier / index, to split acquisitions

    @property
    def uid(self) -> str:
        uid = str(self.dataset.get("SOPInstanceUID", "<no SOPInstanceUID>"))
        return uid if self.number is None else f"{uid} frame {self.number}"


def uid_of(ds: pydicom.Dataset) -> str:
    return str(ds.get("SOPInstanceUID", "<no SOPInstanceUID>"))


def _missing(ds: pydicom.Dataset, what: str, tag: str, keyword: str, where: str = "") -> GeometryError:
    modality = ds.get("Modality", "image")
    return GeometryError(f"{modality} {where or 'slice'} without {what}: {tag} {keyword} missing in "
                         f"SOP Instance {uid_of(ds)}")


def _value(ds: pydicom.Dataset, keyword: str, what: str, tag: str, where: str = ""):
    if keyword not in ds or ds[keyword].value in (None, "", []):
        raise _missing(ds, what, tag, keyword, where)
    return ds[keyword].value


def _float(value, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def single_frame(ds: pydicom.Dataset) -> Frame:
    """The frame of a classic single-frame image (CT, MR, PT Image Storage)."""
    for kw, tag in (("Rows", "(0028,0010)"), ("Columns", "(0028,0011)")):
        _value(ds, kw, kw.lower(), tag)
    spacing = _value(ds, "PixelSpacing", "pixel spacing", "(0028,0030)")
    position = _value(ds, "ImagePositionPatient", "position", "(0020,0032)")
    orientation = _value(ds, "ImageOrientationPatient", "orientation", "(0020,0037)")
    thickness = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness")
    acquisition = "/".join(str(ds.get(k, "")) for k in ("AcquisitionNumber",
                                                          "TemporalPositionIdentifier"))
    return Frame(ds, None, np.array(position, float), np.array(orientation, float),
                 (float(spacing[0]), float(spacing[1])), _float(thickness, 0.0) or None,
                 _float(ds.get("RescaleSlope"), 1.0), _float(ds.get("RescaleIntercept"), 0.0),
                 acquisition)


def _group(ds: pydicom.Dataset, per_frame: pydicom.Dataset | None, name: str) -> pydicom.Dataset | None:
    """First item of functional group `name`, per-frame first, then shared."""
    for holder in (per_frame, (ds.get("SharedFunctionalGroupsSequence") or [None])[0]):
        if holder is not None and holder.get(name):
            return holder[name][0]
    return None


def enhanced_frames(ds: pydicom.Dataset) -> list[Frame]:
    """All frames of an enhanced multi-frame instance (Enhanced CT/MR/PET)."""
    n = int(ds.get("NumberOfFrames", 1) or 1)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) != n:
        raise InputError(f"SOP Instance {uid_of(ds)}: NumberOfFrames (0028,0008) is {n} but "
                         f"PerFrameFunctionalGroupsSequence (5200,9230) has {len(per_frame)} items")
    frames = []
    where = "multi-frame image"
    for i, item in enumerate(per_frame, start=1):
        plane = _group(ds, item, "PlanePositionSequence")
        orient = _group(ds, item, "PlaneOrientationSequence")
        measures = _group(ds, item, "PixelMeasuresSequence")
        if plane is None or orient is None or measures is None:
            missing = [n for n, g in (("PlanePositionSequence (0020,9113)", plane),
                                      ("PlaneOrientationSequence (0020,9116)", orient),
                                      ("PixelMeasuresSequence (0028,9110)", measures)) if g is None]
            raise GeometryError(f"{where} frame {i} of SOP Instance {uid_of(ds)} lacks "
                                f"{', '.join(missing)}")
        position = _value(plane, "ImagePositionPatient", "position", "(0020,0032)", where)
        orientation = _value(orient, "ImageOrientationPatient", "orientation", "(0020,0037)", where)
        spacing = _value(measures, "PixelSpacing", "pixel spacing", "(0028,0030)", where)
        thickness = measures.get("SpacingBetweenSlices") or measures.get("SliceThickness")
        rescale = _group(ds, item, "PixelValueTransformationSequence") or pydicom.Dataset()
        content = _group(ds, item, "FrameContentSequence") or pydicom.Dataset()
        temporal = content.get("TemporalPositionIndex", content.get("TemporalPositionIdentifier", ""))
        frames.append(Frame(ds, i, np.array(position, float), np.array(orientation, float),
                            (float(spacing[0]), float(spacing[1])), _float(thickness, 0.0) or None,
                            _float(rescale.get("RescaleSlope"), 1.0),
                            _float(rescale.get("RescaleIntercept"), 0.0), str(temporal)))
    return frames


def frames_of(ds: pydicom.Dataset) -> list[Frame]:
    """Frames of one instance, whatever its storage."""
    if "PerFrameFunctionalGroupsSequence" in ds:
        return enhanced_frames(ds)
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise InputError(f"multi-frame image (SOP Class {ds.SOPClassUID}, {ds.NumberOfFrames} "
                         f"frames) in SOP Instance {uid_of(ds)} without functional groups: "
                         "no per-frame geometry")
    return [single_frame(ds)]


def read_pixels(frames: list[Frame]) -> np.ndarray:
    """Rescaled float32 pixels (n, rows, cols) in `frames` order; each file is decoded once."""
    first = frames[0].dataset
    out = np.empty((len(frames), int(first.Rows), int(first.Columns)), np.float32)
    decoded: dict[str, np.ndarray] = {}
    for k, frame in enumerate(frames):
        path = frame.dataset.filename
        try:
            if frame.number is None:
                arr = pydicom.dcmread(path).pixel_array
            else:
                if path not in decoded:
                    decoded = {path: pydicom.dcmread(path).pixel_array}
                arr = decoded[path]
                arr = arr[frame.number - 1] if arr.ndim == 3 else arr
        except Exception as exc:  # pydicom raises many types for missing/unsupported pixel data
            raise InputError(f"{path}: cannot decode pixel data of SOP Instance {frame.uid} "
                             f"({exc})") from exc
        if arr.ndim != 2 or arr.shape != out.shape[1:]:
            raise InputError(f"SOP Instance {frame.uid}: expected one greyscale frame of "
                             f"{out.shape[1:]}, got shape {arr.shape}")
        np.multiply(arr, frame.slope, out=out[k], casting="unsafe")
        out[k] += frame.intercept
    return out
