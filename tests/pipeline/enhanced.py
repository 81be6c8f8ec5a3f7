"""Build an Enhanced CT Image (multi-frame) from a single-frame series, for loader tests.

Shared functional groups hold orientation, pixel measures and rescale; per-frame groups hold
the plane positions. Frames are written in a shuffled order, as scanners are free to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
PATIENT_STUDY = ("SpecificCharacterSet", "PatientName", "PatientID", "PatientBirthDate",
                 "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber",
                 "ReferringPhysicianName", "StudyID", "FrameOfReferenceUID",
                 "PositionReferenceIndicator", "BodyPartExamined", "Manufacturer", "Modality",
                 "SeriesNumber", "PatientPosition")


def _item(**kw) -> Dataset:
    ds = Dataset()
    for key, value in kw.items():
        setattr(ds, key, value)
    return ds


def enhanced_from_series(files: list[Path], out: Path, order: list[int] | None = None) -> Path:
    """One Enhanced CT file holding the frames of `files` in `order` (default: reversed)."""
    slices = [pydicom.dcmread(f) for f in files]
    slices.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    order = order if order is not None else list(range(len(slices)))[::-1]
    first = slices[0]
    ds = Dataset()
    uid = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ENHANCED_CT
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for kw in PATIENT_STUDY:
        if kw in first:
            setattr(ds, kw, first[kw].value)
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_CT, uid
    ds.SeriesInstanceUID = generate_uid()
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.ContentDate, ds.ContentTime = first.StudyDate, first.StudyTime
    ds.AcquisitionDateTime = first.StudyDate + first.StudyTime
    ds.NumberOfFrames = len(order)
    ds.Rows, ds.Columns = first.Rows, first.Columns
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = first.PixelRepresentation
    shared = _item(
        PlaneOrientationSequence=Sequence([_item(
            ImageOrientationPatient=first.ImageOrientationPatient)]),
        PixelMeasuresSequence=Sequence([_item(PixelSpacing=first.PixelSpacing,
                                              SliceThickness=first.SliceThickness)]),
        PixelValueTransformationSequence=Sequence([_item(
            RescaleIntercept=first.RescaleIntercept, RescaleSlope=first.RescaleSlope,
            RescaleType="HU")]))
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for k in order:
        per_frame.append(_item(
            PlanePositionSequence=Sequence([_item(
                ImagePositionPatient=slices[k].ImagePositionPatient)]),
            FrameContentSequence=Sequence([_item(FrameAcquisitionNumber=1,
                                                 DimensionIndexValues=[k + 1])])))
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.stack([slices[k].pixel_array for k in order]).tobytes()
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return out
