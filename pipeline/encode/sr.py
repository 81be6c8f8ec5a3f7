"""TID 1500 Measurement Report: per-lesion SUVmax, SUVmean and volume, referencing the SEG.

Why: a structured report makes the numbers queryable and keeps them tied to the segments
(by segment number and tracking UID) and to the source series they were measured on.
With no lesion the report states the procedure, the image library and one group saying
"all algorithms succeeded without findings" (TID 1500 needs at least one group).
"""

from __future__ import annotations

import logging
from pathlib import Path

import highdicom as hd
import pydicom
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from pipeline.encode.common import MANUFACTURER, SERIES_NUMBERS, series_description, write
from pipeline.encode.seg import ALGORITHM_NAME, tracking_uid
from pipeline.encode.uids import derive_uid, output_uids, source_key
from pipeline.series import Volume
from pipeline.types import Lesion, OutputFile

log = logging.getLogger(__name__)

MILLILITER = Code("ml", "UCUM", "milliliter")
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
    if not groups:
        groups = [_no_findings(volume, model_version)]
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=PROCEDURES.get(volume.modality, PROCEDURES["CT"]),
        imaging_measurements=groups, referenced_images=volume.datasets)
    evidence = list(volume.datasets) + ([seg] if seg is not None else [])
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence, content=report, series_instance_uid=series_uid,
        series_number=SERIES_NUMBERS["sr"], sop_instance_uid=sop_uid, instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True)
    sr.SeriesDescription = series_description("sr", units)
    if not lesions:
        log.info("SR written without measurements: no lesion above threshold")
    return write(sr, out_dir, "sr")
