"""What every encoder shares: identity of the product, copied source attributes, file writing.

Why: all four outputs must carry the same study, patient and frame of reference as the source,
say they are synthetic research objects, and be written the same way (uncompressed).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian

from pipeline.types import OutputFile

log = logging.getLogger(__name__)

MANUFACTURER = "virtual-pet"
MODEL_NAME = "virtual-pet synthesis"
DEVICE_SERIAL = "0"
SERIES_NUMBERS = {"pm": 9101, "sc": 9102, "seg": 9103, "sr": 9104, "sc_grey": 9105}

# Attributes highdicom does not copy (or that dciodvfy needs) taken from the first source image.
PATIENT_STUDY = (
    "SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
    "PatientSex", "OtherPatientIDsSequence", "PatientAge", "PatientWeight", "PatientSize",
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
    "AccessionNumber", "StudyDescription",
)
SERIES_EXTRAS = ("BodyPartExamined", "Laterality", "PatientPosition")


def copy_attributes(target: pydicom.Dataset, source: pydicom.Dataset,
                    keywords: tuple[str, ...], overwrite: bool = False) -> None:
    """Copy the listed attributes present in `source` (deep enough: elements are re-created)."""
    for kw in keywords:
        if kw in source and (overwrite or kw not in target):
            target[kw] = pydicom.DataElement(source[kw].tag, source[kw].VR, source[kw].value)


def series_description(kind: str, units: str) -> str:
    """Every output says it is synthetic; SeriesDescription is LO (64 chars max)."""
    text = {"pm": f"Virtual PET {units} (synthetic)", "sc": "Virtual PET fused (synthetic)",
            "seg": "Virtual PET lesions (synthetic)", "sr": "Virtual PET report (synthetic)",
            "sc_grey": f"Virtual PET {units} grey (synthetic)"}
    return text[kind][:64]


def in_source_order(volume, values):
    """Frames sorted along the normal -> the order of the source frames in their instance.

    Single-frame sources: unchanged (datasets are sorted the same way). An enhanced
    multi-frame source: highdicom pairs output frame i with source frame i, so reorder.
    """
    if not volume.multiframe:
        return values
    out = np.empty_like(values)
    out[[f.number - 1 for f in volume.frames]] = values
    return out


def write(ds: pydicom.Dataset, out_dir: Path, kind: str, n: int | None = None) -> OutputFile:
    """Write uncompressed (Explicit VR Little Endian) as `<kind>.dcm` or `<kind>_<n>.dcm`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / (f"{kind}.dcm" if n is None else f"{kind}_{n}.dcm")
    if ds.file_meta.TransferSyntaxUID != ExplicitVRLittleEndian:
        raise ValueError(f"{kind}: expected Explicit VR Little Endian, got {ds.file_meta.TransferSyntaxUID}")
    ds.save_as(path, enforce_file_format=True)
    log.info("wrote %s %s (%s)", kind, path, ds.SOPInstanceUID)
    return OutputFile(path=path, kind=kind, sop_class_uid=str(ds.SOPClassUID),
                      sop_instance_uid=str(ds.SOPInstanceUID),
                      series_instance_uid=str(ds.SeriesInstanceUID))
