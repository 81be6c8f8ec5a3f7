"""Load one DICOM image series (CT, MR, PT; single-frame or enhanced) into a SimpleITK volume.

Why: every later stage needs a correct patient-space geometry from the headers alone. Frames
are sorted along the slice normal and spacing comes from the positions, never from
SliceThickness. Choices:
- non-uniform spacing (variable pitch, stitched ranges): the working image is built on a
  uniform grid (the finest gap) by linear interpolation along the normal; results go back
  onto every source frame position (`Volume.to_source`), so outputs stay frame-aligned;
- an isolated gap > 1.5x the finest gap is a missing slice: refused, naming the positions
  (interpolating across missing anatomy would invent it);
- gantry tilt (positions not along the normal): refused, ITK images cannot shear;
- duplicate positions: refused; when they come from several acquisitions (AcquisitionNumber /
  TemporalPositionIdentifier differ) the reason names those tags, because choosing one
  acquisition silently could drop the one the reader wanted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from pipeline.errors import GeometryError, InputError
from pipeline.frames import Frame, frames_of, read_pixels, uid_of
from pipeline.resample import stack_to_uniform, uniform_to_stack

log = logging.getLogger(__name__)

ORIENTATION_TOL = 1e-4  # direction cosines are compared to this absolute tolerance
SPACING_TOL = 0.01  # relative spread of slice gaps tolerated as "uniform"
OFFSET_TOL_MM = 0.05  # in-plane drift of slice positions tolerated (gantry tilt otherwise)
DUPLICATE_MM = 1e-3  # two frames closer than this along the normal share a position
MISSING_FACTOR = 1.5  # an isolated gap above this times the finest gap is a missing slice
MAX_UPSAMPLING = 4.0  # the uniform grid has at most this many times the source frames


@dataclass
class Volume:
    """A loaded series: float32 image (rescaled values) on a uniform grid plus its headers.

    `datasets` are the source instances (sorted along the normal for single-frame series),
    `frames` the source frames sorted along the normal. When the source spacing was not
    uniform, `source_offsets` holds each frame's distance (mm) from the image origin along the
    normal and `source_pixels` the original frames; otherwise image slices == frames.
    """

    image: sitk.Image
    datasets: list[pydicom.Dataset]
    modality: str
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    frames: list[Frame] = field(default_factory=list)
    source_offsets: np.ndarray | None = None
    source_pixels: np.ndarray | None = None

    def array(self) -> np.ndarray:
        """Pixel values as a (z, y, x) float32 array on the working grid (a copy)."""
        return sitk.GetArrayFromImage(self.image)

    @property
    def resampled(self) -> bool:
        return self.source_offsets is not None

    @property
    def multiframe(self) -> bool:
        return bool(self.frames) and self.frames[0].number is not None

    def to_source(self, values: np.ndarray, *, nearest: bool = False) -> np.ndarray:
        """(z, y, x) values on the working grid -> (frames, y, x) on the source frame positions."""
        if self.source_offsets is None:
            return values
        return uniform_to_stack(values, self.source_offsets, self.image.GetSpacing()[2],
                                nearest=nearest)

    def source_array(self) -> np.ndarray:
        """Rescaled pixels of the source frames (frames, y, x), sorted along the normal."""
        return self.source_pixels if self.source_pixels is not None else self.array()

    def positions(self) -> np.ndarray:
        """ImagePositionPatient of each source frame, sorted along the normal (n, 3)."""
        return np.array([f.position for f in self.frames])


def _read_header(path: Path) -> pydicom.Dataset:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable DICOM file ({exc})") from exc
    if "SOPClassUID" not in ds:
        raise InputError(f"{path}: not a DICOM image (no (0008,0016) SOPClassUID)")
    ds.filename = str(path)
    return ds


def _check_frames(frames: list[Frame]) -> None:
    """One orientation, one matrix, one pixel spacing."""
    first = frames[0]
    for f in frames[1:]:
        if not np.allclose(f.orientation, first.orientation, atol=ORIENTATION_TOL):
            raise GeometryError(
                f"mixed orientations in series: SOP Instance {f.uid} has ImageOrientationPatient "
                f"{list(f.orientation)}, first slice {list(first.orientation)}")
        same_matrix = (f.dataset.Rows, f.dataset.Columns) == (first.dataset.Rows, first.dataset.Columns)
        if not (same_matrix and np.allclose(f.pixel_spacing, first.pixel_spacing, rtol=1e-4)):
            raise GeometryError(f"SOP Instance {f.uid}: Rows/Columns/PixelSpacing differ "
                                "from the first slice of the series")


def _axes(frame: Frame) -> np.ndarray:
    """3x3 matrix whose columns are the row, column and slice-normal directions (LPS)."""
    row, col = frame.orientation[:3], frame.orientation[3:]
    if (abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3
            or abs(row @ col) > 1e-3):
        raise GeometryError(f"ImageOrientationPatient {list(frame.orientation)} of SOP Instance "
                            f"{frame.uid} is not two orthonormal vectors")
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    normal = np.cross(row, col)
    return np.column_stack([row, col, normal / np.linalg.norm(normal)])


def _pos(position: np.ndarray) -> str:
    return "(" + ", ".join(f"{float(v):g}" for v in position) + ")"


def _refuse_duplicates(frames: list[Frame], along: np.ndarray) -> None:
    dup = np.flatnonzero(np.diff(along) < DUPLICATE_MM)
    if not dup.size:
        return
    a, b = frames[int(dup[0])], frames[int(dup[0]) + 1]
    acquisitions = sorted({f.acquisition for f in frames})
    if len(acquisitions) > 1:
        raise GeometryError(
            f"several acquisitions in one series ({len(acquisitions)} values of AcquisitionNumber "
            f"(0020,0012) / TemporalPositionIdentifier (0020,0100): {acquisitions}) share slice "
            f"position {_pos(a.position)}: send each acquisition as its own series")
    raise GeometryError(f"duplicate slice position {_pos(a.position)} in SOP Instances "
                        f"{a.uid} and {b.uid}")


def _refuse_missing(frames: list[Frame], along: np.ndarray, gaps: np.ndarray) -> None:
    """An isolated large gap (neighbours normal) is a missing slice, not a change of pitch."""
    finest = float(gaps.min())
    big = gaps > MISSING_FACTOR * finest
    for k in np.flatnonzero(big):
        neighbours = [j for j in (k - 1, k + 1) if 0 <= j < gaps.size]
        if neighbours and not any(big[j] for j in neighbours):
            raise GeometryError(
                f"missing slice(s): gap of {gaps[k]:.3f} mm (finest gap {finest:.3f} mm) between "
                f"positions {_pos(frames[k].position)} and {_pos(frames[k + 1].position)} "
                f"(SOP Instances {frames[k].uid} and {frames[k + 1].uid})")


def _refuse_tilt(frames: list[Frame], along: np.ndarray, normal: np.ndarray, dz: float) -> None:
    positions = np.array([f.position for f in frames])
    drift = positions - positions[0] - np.outer(along - along[0], normal)
    worst = float(np.abs(drift).max())
    if worst > max(OFFSET_TOL_MM, SPACING_TOL * dz):
        tilt = frames[0].dataset.get("GantryDetectorTilt")
        raise GeometryError(
            "slice positions do not lie along the slice normal of ImageOrientationPatient "
            f"(0020,0037): gantry tilt or sheared stack (drift {worst:.3f} mm"
            f"{f', GantryDetectorTilt (0018,1120) {tilt}' if tilt is not None else ''}); "
            "tilted series are refused: reconstruct without tilt")


def sort_frames(frames: list[Frame], axes: np.ndarray) -> tuple[list[Frame], np.ndarray]:
    """Frames sorted along the normal and their offsets (mm) from the first one."""
    normal = axes[:, 2]
    along = np.array([f.position @ normal for f in frames])
    order = np.argsort(along, kind="stable")
    frames = [frames[i] for i in order]
    along = along[order]
    if len(frames) > 1:
        _refuse_duplicates(frames, along)
        gaps = np.diff(along)
        _refuse_missing(frames, along, gaps)
        _refuse_tilt(frames, along, normal, float(np.median(gaps)))
    return frames, along - along[0]


def uniform_spacing(offsets: np.ndarray) -> float | None:
    """The uniform slice spacing, or None when the gaps vary more than SPACING_TOL."""
    gaps = np.diff(offsets)
    spacing = float(np.median(gaps))
    return spacing if gaps.max() - gaps.min() <= SPACING_TOL * spacing else None


def _working_grid(offsets: np.ndarray) -> float:
    """Slice spacing of the uniform grid for non-uniform offsets: about the finest gap."""
    extent = float(offsets[-1])
    finest = max(float(np.diff(offsets).min()), extent / (MAX_UPSAMPLING * len(offsets)))
    return extent / max(1, int(np.ceil(extent / finest - 1e-6)))


def load_series(files: Sequence[Path]) -> Volume:
    """Read, check, sort and stack one series; raise InputError/GeometryError naming the cause."""
    if not files:
        raise InputError("no files given: a series needs at least one slice")
    headers = [_read_header(Path(f)) for f in files]
    series = {str(ds.get("SeriesInstanceUID", "")) for ds in headers}
    if len(series) != 1:
        raise InputError(f"files belong to {len(series)} series, expected one: {sorted(series)}")
    frames = [fr for ds in headers for fr in frames_of(ds)]
    _check_frames(frames)
    axes = _axes(frames[0])
    frames, offsets = sort_frames(frames, axes)
    pixels = read_pixels(frames)
    source_offsets = source_pixels = None
    if len(frames) == 1:
        dz = frames[0].thickness or 1.0
    elif (dz := uniform_spacing(offsets)) is None:
        dz = _working_grid(offsets)
        log.info("non-uniform slice spacing (gaps %.3f..%.3f mm): resampled to %.3f mm",
                 np.diff(offsets).min(), np.diff(offsets).max(), dz)
        source_offsets, source_pixels = offsets, pixels
        pixels = stack_to_uniform(pixels, offsets, dz)
    image = sitk.GetImageFromArray(pixels)
    dy, dx = frames[0].pixel_spacing  # PixelSpacing = row (y) spacing, column (x) spacing
    image.SetSpacing((dx, dy, dz))
    image.SetOrigin(tuple(float(v) for v in frames[0].position))
    image.SetDirection(tuple(float(v) for v in axes.flatten()))
    datasets = list({id(f.dataset): f.dataset for f in frames}.values())  # unique, sorted order
    first = datasets[0]
    log.info("loaded series %s: %d frames, size %s, spacing %s", first.SeriesInstanceUID,
             len(frames), image.GetSize(), image.GetSpacing())
    return Volume(image=image, datasets=datasets, modality=str(first.get("Modality", "")),
                  series_uid=str(first.SeriesInstanceUID),
                  study_uid=str(first.get("StudyInstanceUID", "")),
                  frame_of_reference_uid=str(first.get("FrameOfReferenceUID", "")),
                  frames=frames, source_offsets=source_offsets, source_pixels=source_pixels)


__all__ = ["Volume", "load_series", "sort_frames", "uid_of"]
