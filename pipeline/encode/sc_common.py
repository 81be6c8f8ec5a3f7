"""What both multi-frame Secondary Captures share: modules, references, frame locations.

Why: the fused colour SC and the grey virtual-PET SC differ only in their pixels; patient,
study, equipment, references to every source frame (in frame order) and the SC Multi-frame
Vector (SliceLocationVector) must be identical so both stay aligned with the source.
"""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
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
)
from pipeline.encode.uids import output_uids
from pipeline.series import Volume

log = logging.getLogger(__name__)

SLICE_LOCATION_VECTOR = 0x00182005


def _orientation_letters(direction: np.ndarray) -> str:
    """PatientOrientation letter(s) of one LPS direction, dominant axis first."""
    letters = (("L", "R"), ("P", "A"), ("H", "F"))
    order = np.argsort(-np.abs(direction))
    return "".join(letters[i][0 if direction[i] > 0 else 1] for i in order
                   if abs(direction[i]) > 0.25)[:3]


def references(volume: Volume) -> tuple[Sequence, Sequence]:
    """SourceImageSequence (one item per frame, frame order) and ReferencedSeriesSequence."""
    items = []
    for frame in volume.frames:
        item = Dataset()
        item.ReferencedSOPClassUID = frame.dataset.SOPClassUID
        item.ReferencedSOPInstanceUID = frame.dataset.SOPInstanceUID
        if frame.number is not None:
            item.ReferencedFrameNumber = frame.number
        items.append(item)
    series = Dataset()
    series.SeriesInstanceUID = volume.series_uid
    instances = []
    for ds in volume.datasets:
        ref = Dataset()
        ref.ReferencedSOPClassUID = ds.SOPClassUID
        ref.ReferencedSOPInstanceUID = ds.SOPInstanceUID
        instances.append(ref)
    series.ReferencedInstanceSequence = Sequence(instances)
    return Sequence(items), Sequence([series])


def sc_dataset(volume: Volume, sop_class: str, kind: str, *, model_version: str, units: str,
               description: str) -> Dataset:
    """A multi-frame SC without pixel modules: patient/study copied, frames referenced."""
    series_uid, sop_uid = output_uids(volume.datasets, model_version, kind)
    src = volume.datasets[0]
    now = dt.datetime.now()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    copy_attributes(ds, src, PATIENT_STUDY)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.Modality = "OT"
    ds.SeriesInstanceUID, ds.SeriesNumber = series_uid, SERIES_NUMBERS[kind]
    ds.SeriesDescription = series_description(kind, units)
    copy_attributes(ds, src, SERIES_EXTRAS)
    ds.ConversionType = "WSD"
    ds.Manufacturer = MANUFACTURER
    ds.SecondaryCaptureDeviceManufacturer = MANUFACTURER
    ds.SecondaryCaptureDeviceManufacturerModelName = MODEL_NAME
    ds.SecondaryCaptureDeviceSoftwareVersions = model_version
    ds.SoftwareVersions = model_version
    ds.InstanceNumber = 1
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.ContentDate, ds.ContentTime = ds.InstanceCreationDate, ds.InstanceCreationTime
    direction = np.array(volume.image.GetDirection()).reshape(3, 3)
    ds.PatientOrientation = [_orientation_letters(direction[:, 0]),
                             _orientation_letters(direction[:, 1])]
    ds.BurnedInAnnotation = "YES"
    ds.RecognizableVisualFeatures = "NO"
    ds.LossyImageCompression = "00"
    ds.DerivationDescription = description[:1024]
    ds.SourceImageSequence, ds.ReferencedSeriesSequence = references(volume)
    ds.FrameIncrementPointer = SLICE_LOCATION_VECTOR
    normal = direction[:, 2]
    ds.SliceLocationVector = [round(float(f.position @ normal), 4) for f in volume.frames]
    ds.PixelSpacing = [float(v) for v in volume.frames[0].pixel_spacing]
    return ds
