"""TID 1500 Measurement Report: per-lesion SUVmax, SUVmean, SUVpeak, volume and TLG, with the SEG.

Why: a structured report makes the numbers queryable and keeps them tied to the segments
(by segment number and tracking UID) and to the source series they were measured on.
With no lesion the report states the procedure, the image library and one group saying
"all algorithms succeeded without findings" (TID 1500 needs at least one group).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from pipeline.encode.common import (
    MANUFACTURER,
    PATIENT_STUDY,
    SERIES_NUMBERS,
    copy_attributes,
    series_description,
    write,
)
from pipeline.encode.seg import ALGORITHM_NAME, tracking_uid
from pipeline.encode.uids import derive_uid, output_uids, source_key
from pipeline.series import Volume
from pipeline.types import Lesion, OutputFile

log = logging.getLogger(__name__)

MILLILITER = Code("ml", "UCUM", "milliliter")
GRAM = Code("g", "UCUM", "gram")
PROCEDURES = {"CT": Code("77477000", "SCT", "Computed Tomography"),
              "MR": Code("113091000", "SCT", "Magnetic Resonance Imaging")}


def _uptake(units: str) -> tuple[Code, Code]:
    """Concept name and unit of the uptake measurements."""
    if units == "SUVR":
        return codes.DCM.StandardizedUptakeValue, codes.UCUM.Ratio
    return codes.DCM.Suvbw, codes.UCUM.StandardizedUptakeValueBodyWeight


def _lesion_group(volume: Volume, seg: pydicom.Dataset, lesion: Lesion, model_version: str,
                  units: str) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    algo = hd.sr.AlgorithmIdentification(name=ALGORITHM_NAME, version=model_version)
    name, unit = _uptake(units)
    measurements = [
        hd.sr.Measurement(name=name, value=lesion.suv_max, unit=unit,
                          derivation=codes.SCT.Maximum, algorithm_id=algo),
        hd.sr.Measurement(name=name, value=lesion.suv_mean, unit=unit,
                          derivation=codes.SCT.Mean, algorithm_id=algo),
        hd.sr.Measurement(name=codes.SCT.Volume, value=lesion.volume_ml, unit=MILLILITER,
                          algorithm_id=algo),
    ]
    if math.isfinite(lesion.suv_peak):  # 1 ml sphere mean: derivation DCM 126031 (CID 7464)
        measurements.append(hd.sr.Measurement(
            name=name, value=lesion.suv_peak, unit=unit, derivation=codes.DCM.PeakValueWithinROI,
            algorithm_id=algo))
    if units != "SUVR" and math.isfinite(lesion.tlg):  # SUVmean x ml = g; no meaning for SUVR
        measurements.append(hd.sr.Measurement(
            name=codes.DCM.TotalLesionGlycolysis, value=lesion.tlg, unit=GRAM, algorithm_id=algo))
    # The constructor, not from_segmentation: that fails on single-segment SEGs (REFERENCE.md).
    segment = hd.sr.ReferencedSegment(
        sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
        segment_number=lesion.index,
        source_series=hd.sr.SourceSeriesForSegmentation(volume.series_uid))
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=tracking_uid(volume, model_version, lesion), identifier=f"lesion-{lesion.index}"),
        referenced_segment=segment, finding_type=codes.SCT.Lesion, algorithm_id=algo,
        measurements=measurements)


def _no_findings(volume: Volume, model_version: str) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """TID 1500 needs one measurement group: state that the algorithm ran and found nothing."""
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derive_uid(source_key(volume.datasets), model_version, "no-findings"),
            identifier="no lesions"),
        algorithm_id=hd.sr.AlgorithmIdentification(name=ALGORITHM_NAME, version=model_version),
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(
            name=codes.DCM.CADProcessingAndFindingsSummary,
            value=codes.DCM.AllAlgorithmsSucceededWithoutFindings)])


_EVIDENCE_KEYWORDS = PATIENT_STUDY + (
    "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "Modality", "FrameOfReferenceUID",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns",
    "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime", "ContentDate",
    "ContentTime", "NumberOfFrames", "SharedFunctionalGroupsSequence", "SliceThickness",
    "ImageType", "StudyDescription", "SeriesDescription", "SeriesNumber", "InstanceNumber",
    "FrameOfReferenceUID", "PatientOrientation", "ImageLaterality", "Laterality",
)


def _slim(ds: pydicom.Dataset) -> pydicom.Dataset:
    """Only what the image library and evidence need: highdicom deep-copies every source
    header, which costs seconds on a 300-slice CT."""
    slim = pydicom.Dataset()
    copy_attributes(slim, ds, _EVIDENCE_KEYWORDS)
    return slim


def _key_slices(volume: Volume, lesions: list[Lesion]) -> list[int]:
    """Index of the source slice through each lesion's centroid, in slice order.

    The image library lists these key images rather than every slice: highdicom deep-copies
    each entry, which took about 10 s for a 300-slice CT.
    """
    if not lesions:
        return []
    normal = np.array(volume.image.GetDirection(), float).reshape(3, 3)[:, 2]
    along = volume.positions() @ normal
    return sorted({int(np.argmin(np.abs(along - np.array(les.centroid_mm) @ normal)))
                   for les in lesions})


def encode_sr(volume: Volume, lesions: list[Lesion], seg: pydicom.Dataset | None, out_dir: Path,
              *, model_version: str, units: str = "SUVbw") -> OutputFile:
    """Write `sr.dcm` (Comprehensive 3D SR); `seg` is the SEG dataset, required with lesions."""
    if lesions and seg is None:
        raise ValueError("lesion measurements need the SEG they reference")
    series_uid, sop_uid = output_uids(volume.datasets, model_version, "sr")
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=derive_uid(source_key(volume.datasets), model_version, "device"),
        name=ALGORITHM_NAME, manufacturer_name=MANUFACTURER, model_name=model_version)
    context = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device))
    groups = [_lesion_group(volume, seg, les, model_version, units) for les in lesions]
    sources = [_slim(ds) for ds in volume.datasets]
    key_images = None if volume.multiframe else [sources[i] for i in _key_slices(volume, lesions)]
    if not groups:
        groups = [_no_findings(volume, model_version)]
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=PROCEDURES.get(volume.modality, PROCEDURES["CT"]),
        imaging_measurements=groups,
        # highdicom's image library reads top-level PixelSpacing: single-frame sources only
        referenced_images=key_images or None)
    evidence = sources + ([seg] if seg is not None else [])
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence, content=report, series_instance_uid=series_uid,
        series_number=SERIES_NUMBERS["sr"], sop_instance_uid=sop_uid, instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True)
    sr.SeriesDescription = series_description("sr", units)
    copy_attributes(sr, volume.datasets[0], ("SpecificCharacterSet",), overwrite=True)
    if not lesions:
        log.info("SR written without measurements: no lesion above threshold")
    return write(sr, out_dir, "sr")
