"""Multi-frame True Color Secondary Capture: fused CT/MR + virtual PET, one frame per slice.

Why: many viewers cannot show Parametric Maps; a colour rendering with the notice burned in
is readable everywhere. highdicom writes single-frame SC only, so this is built with pydicom
(Multi-frame True Color SC Image IOD, PS3.3 A.8.5). Frame positions go into the SC Multi-frame
Vector module (SliceLocationVector); this IOD has no plane position functional groups and no
Frame of Reference module (dciodvfy flags FrameOfReferenceUID as "not in IOD"), so the link to
the source geometry is SourceImageSequence (one item per frame, same order) + PixelSpacing.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from pipeline.encode.common import (
    MANUFACTURER,
    MODEL_NAME,
    PATIENT_STUDY,
    SERIES_EXTRAS,
    SERIES_NUMBERS,
    copy_attributes,
    series_description,
    write,
)
from pipeline.encode.uids import output_uids
from pipeline.render import burn_notice, fuse, window
from pipeline.series import Volume
from pipeline.types import OutputFile

log = logging.getLogger(__name__)

SC_MULTIFRAME_TRUE_COLOR = "1.2.840.10008.5.1.4.1.1.7.4"
SLICE_LOCATION_VECTOR = 0x00182005


def render_frames(volume: Volume, suv: np.ndarray, labels: np.ndarray | None,
                  vmax: float) -> np.ndarray:
    """(frames, rows, cols, 3) uint8 fused frames, each carrying the burned-in notice."""
    base = volume.array()
    win = window(base, volume.modality)
    frames = [burn_notice(fuse(base[k], suv[k], None if labels is None else labels[k],
                               win=win, vmax=vmax)) for k in range(base.shape[0])]
    return np.stack(frames)


def _orientation_letters(direction: np.ndarray) -> str:
    """PatientOrientation letter(s) of one LPS direction, dominant axis first."""
    letters = (("L", "R"), ("P", "A"), ("H", "F"))
    order = np.argsort(-np.abs(direction))
    return "".join(letters[i][0 if direction[i] > 0 else 1] for i in order
                   if abs(direction[i]) > 0.25)[:3]


def _references(volume: Volume) -> tuple[Sequence, Sequence]:
    """SourceImageSequence and ReferencedSeriesSequence items pointing at every source slice."""
    items = []
    for src in volume.datasets:
        item = Dataset()
        item.ReferencedSOPClassUID = src.SOPClassUID
        item.ReferencedSOPInstanceUID = src.SOPInstanceUID
        items.append(item)
    series = Dataset()
    series.SeriesInstanceUID = volume.series_uid
    series.ReferencedInstanceSequence = Sequence([Dataset(i) for i in items])
    return Sequence(items), Sequence([series])


def encode_sc(volume: Volume, suv: np.ndarray, labels: np.ndarray | None, out_dir: Path, *,
              model_version: str, units: str = "SUVbw", vmax: float = 8.0) -> OutputFile:
    """Write `sc.dcm`, frames pixel-aligned with the source slices."""
    series_uid, sop_uid = output_uids(volume.datasets, model_version, "sc")
    src = volume.datasets[0]
    frames = render_frames(volume, suv, labels, vmax)
    now = dt.datetime.now()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SC_MULTIFRAME_TRUE_COLOR
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    copy_attributes(ds, src, PATIENT_STUDY)
    ds.SOPClassUID, ds.SOPInstanceUID = SC_MULTIFRAME_TRUE_COLOR, sop_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    # General Series, SC Equipment, General Equipment
    ds.Modality = "OT"
    ds.SeriesInstanceUID, ds.SeriesNumber = series_uid, SERIES_NUMBERS["sc"]
    ds.SeriesDescription = series_description("sc", units)
    copy_attributes(ds, src, SERIES_EXTRAS)
    ds.ConversionType = "WSD"
    ds.Manufacturer = MANUFACTURER
    ds.SecondaryCaptureDeviceManufacturer = MANUFACTURER
    ds.SecondaryCaptureDeviceManufacturerModelName = MODEL_NAME
    ds.SecondaryCaptureDeviceSoftwareVersions = model_version
    ds.SoftwareVersions = model_version
    # General Image, General Reference
    ds.InstanceNumber = 1
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.ContentDate, ds.ContentTime = ds.InstanceCreationDate, ds.InstanceCreationTime
    direction = np.array(volume.image.GetDirection()).reshape(3, 3)
    ds.PatientOrientation = [_orientation_letters(direction[:, 0]),
                             _orientation_letters(direction[:, 1])]
    ds.BurnedInAnnotation = "YES"
    ds.RecognizableVisualFeatures = "NO"
    ds.LossyImageCompression = "00"
    ds.DerivationDescription = (f"virtual PET ({units}) synthesized by model {model_version}, "
                                "fused on source; synthetic, research only")[:1024]
    ds.SourceImageSequence, ds.ReferencedSeriesSequence = _references(volume)
    # Image Pixel, Multi-frame, SC Multi-frame Image and Vector
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.Rows, ds.Columns = int(frames.shape[1]), int(frames.shape[2])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames = int(frames.shape[0])
    ds.FrameIncrementPointer = SLICE_LOCATION_VECTOR
    normal = direction[:, 2]
    ds.SliceLocationVector = [round(float(np.array(s.ImagePositionPatient, float) @ normal), 4)
                              for s in volume.datasets]
    ds.PixelSpacing = [float(v) for v in src.PixelSpacing]
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    return write(ds, out_dir, "sc")


def read_frames(path: Path) -> np.ndarray:
    """The RGB frames of a written SC (for tests and checks)."""
    return pydicom.dcmread(path).pixel_array
