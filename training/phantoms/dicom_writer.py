"""Write numpy volumes as real single-frame DICOM series (CT, MR or PET).

Why: the product is tested and trained on data that goes through the same DICOM path as a
hospital's, so phantoms are written as ordinary Image Storage instances with full geometry.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SOP_CLASS = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
}


@dataclass
class StudyInfo:
    """Patient and study level attributes shared by every series of one synthetic study."""

    patient_name: str = "PHANTOM^VPET"
    patient_id: str = "PHANTOM-0001"
    patient_sex: str = "F"
    patient_weight_kg: float = 70.0
    patient_size_m: float = 1.70
    study_instance_uid: str = field(default_factory=generate_uid)
    study_date: str = "20260101"
    study_time: str = "140100"
    accession_number: str = "ACC0001"
    study_id: str = "1"
    frame_of_reference_uid: str = field(default_factory=generate_uid)
    body_part: str = "ABDOMEN"


def _uid_from(seed: str) -> str:
    return generate_uid(entropy_srcs=[seed])


def write_series(
    volume: np.ndarray,
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float],
    out_dir: Path,
    *,
    modality: str,
    study: StudyInfo,
    series_number: int = 1,
    series_description: str = "",
    rescale: tuple[float, float] | list[tuple[float, float]] = (1.0, 0.0),
    extra: dict | None = None,
    direction: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    series_instance_uid: str | None = None,
    extra_per_slice: list[dict] | None = None,
) -> list[Path]:
    """Write `volume` (z, y, x) of stored integer values as one series; returns the file paths.

    `spacing` is (x, y, z) in mm, `origin` the patient position (LPS) of voxel (0, 0, 0),
    `rescale` one (slope, intercept) for all slices or one per slice, `extra` keyword -> value
    pairs set on every instance (e.g. PET radiopharmaceutical attributes), `extra_per_slice`
    one such dict per slice (e.g. PET ImageIndex).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    volume = np.asarray(volume)
    if volume.dtype not in (np.int16, np.uint16):
        raise ValueError("volume must hold stored values as int16 or uint16")
    series_uid = series_instance_uid or _uid_from(f"{study.study_instance_uid}/{modality}/{series_number}")
    row = np.array(direction[:3], float)
    col = np.array(direction[3:], float)
    normal = np.cross(row, col)
    per_slice = rescale if isinstance(rescale, list) else [rescale] * volume.shape[0]
    now = dt.datetime(2026, 1, 1, 14, 1, 0)
    paths = []
    for k in range(volume.shape[0]):
        ds = Dataset()
        sop_uid = _uid_from(f"{series_uid}/{k}")
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SOP_CLASS[modality]
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = SOP_CLASS[modality]
        ds.SOPInstanceUID = sop_uid
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.Modality = modality
        ds.PatientName = study.patient_name
        ds.PatientID = study.patient_id
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = study.patient_sex
        ds.PatientWeight = f"{study.patient_weight_kg:.1f}"
        ds.PatientSize = f"{study.patient_size_m:.2f}"
        ds.StudyInstanceUID = study.study_instance_uid
        ds.StudyDate = study.study_date
        ds.StudyTime = study.study_time
        ds.SeriesDate = study.study_date
        ds.SeriesTime = study.study_time
        ds.AcquisitionDate = study.study_date
        ds.AcquisitionTime = study.study_time
        ds.ContentDate = study.study_date
        ds.ContentTime = now.strftime("%H%M%S")
        ds.AccessionNumber = study.accession_number
        ds.ReferringPhysicianName = ""
        ds.StudyID = study.study_id
        ds.Manufacturer = "VPET-PHANTOM"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = series_description or f"Phantom {modality}"
        ds.BodyPartExamined = study.body_part
        ds.PatientPosition = "FFS" if modality != "MR" else "HFS"
        ds.FrameOfReferenceUID = study.frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.InstanceNumber = k + 1
        ds.AcquisitionNumber = 1
        position = np.array(origin, float) + normal * spacing[2] * k
        ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row, *col)]
        ds.SliceLocation = f"{float(position @ normal):.4f}"
        ds.PixelSpacing = [f"{spacing[1]:.6g}", f"{spacing[0]:.6g}"]
        ds.SliceThickness = f"{spacing[2]:.6g}"
        ds.SpacingBetweenSlices = f"{spacing[2]:.6g}"
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if volume.dtype == np.int16 else 0
        slope, intercept = per_slice[k]
        ds.RescaleSlope = f"{slope:.8g}"
        ds.RescaleIntercept = f"{intercept:.8g}"
        if modality == "CT":
            ds.RescaleType = "HU"
            ds.KVP = "120"
            ds.WindowCenter = "40"
            ds.WindowWidth = "400"
        if modality == "MR":
            ds.ScanningSequence = "GR"
            ds.SequenceVariant = "SP"
            ds.ScanOptions = ""
            ds.MRAcquisitionType = "3D"
            ds.EchoTime = "3.0"
            ds.RepetitionTime = "2300"
            ds.EchoTrainLength = "1"
            ds.MagneticFieldStrength = "3"
        for key, value in (extra or {}).items():
            if value is None:  # None removes an attribute the writer sets by default
                if key in ds:
                    delattr(ds, key)
                continue
            setattr(ds, key, value)
        for key, value in (extra_per_slice[k] if extra_per_slice else {}).items():
            setattr(ds, key, value)
        ds.PixelData = np.ascontiguousarray(volume[k]).tobytes()
        path = out_dir / f"{modality}_{series_number:03d}_{k + 1:04d}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths
