"""Binary Segmentation of the detected lesions, one segment per lesion.

Why: SEG is how a PACS viewer shows the lesion outlines over the source images, and the
TID 1500 report references its segments. BINARY is the most widely supported type. With no
lesion there is nothing to segment (a SEG needs at least one segment), so no SEG is written.
"""

from __future__ import annotations

import logging
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes

from pipeline.encode.common import (
    DEVICE_SERIAL,
    MANUFACTURER,
    MODEL_NAME,
    SERIES_EXTRAS,
    SERIES_NUMBERS,
    copy_attributes,
    in_source_order,
    series_description,
    write,
)
from pipeline.encode.uids import derive_uid, output_uids, source_key
from pipeline.series import Volume
from pipeline.types import Lesion, OutputFile

log = logging.getLogger(__name__)

ALGORITHM_NAME = "virtual-pet"


def algorithm(model_version: str) -> hd.AlgorithmIdentificationSequence:
    """Who made the segments: the product name and model package version."""
    return hd.AlgorithmIdentificationSequence(
        name=ALGORITHM_NAME, family=codes.DCM.ArtificialIntelligence, version=model_version)


def tracking_uid(volume: Volume, model_version: str, lesion: Lesion) -> str:
    """Stable per-lesion tracking UID, shared by the SEG segment and the SR measurements."""
    return derive_uid(source_key(volume.datasets), model_version, "lesion", str(lesion.index))


def encode_seg(volume: Volume, labels: np.ndarray, lesions: list[Lesion], out_dir: Path, *,
               model_version: str) -> OutputFile | None:
    """Write `seg.dcm` from a label array (z, y, x; values 1..N); None when there is no lesion."""
    if not lesions:
        log.info("no lesions: SEG not written (a SEG needs at least one segment)")
        return None
    series_uid, sop_uid = output_uids(volume.datasets, model_version, "seg")
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=les.index, segment_label=f"lesion {les.index}",
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Lesion,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm(model_version),
            tracking_id=f"lesion-{les.index}",
            tracking_uid=tracking_uid(volume, model_version, les))
        for les in lesions
    ]
    seg = hd.seg.Segmentation(
        source_images=volume.datasets,
        pixel_array=in_source_order(volume, labels.astype(np.uint16)),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=series_uid,
        series_number=SERIES_NUMBERS["seg"], sop_instance_uid=sop_uid, instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name=MODEL_NAME,
        software_versions=model_version, device_serial_number=DEVICE_SERIAL,
        content_label="LESIONS", content_description="synthetic PET hot lesions, research only",
        omit_empty_frames=False,  # some viewers misplace segments when frames are omitted
    )
    seg.SeriesDescription = series_description("seg", "")
    copy_attributes(seg, volume.datasets[0], SERIES_EXTRAS)
    copy_attributes(seg, volume.datasets[0], ("SpecificCharacterSet",), overwrite=True)
    return write(seg, out_dir, "seg")
