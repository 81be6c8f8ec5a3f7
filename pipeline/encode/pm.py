"""Parametric Map of the synthetic PET, float32, one frame per source slice.

Why: a Parametric Map keeps the quantitative values (SUVbw or SUVR) with a Real World Value
Mapping and the source Frame of Reference, so viewers can overlay it on the CT/MR.
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
from pipeline.encode.uids import output_uids
from pipeline.series import Volume
from pipeline.types import OutputFile

log = logging.getLogger(__name__)


def real_world_mapping(units: str, value_max: float) -> hd.pm.RealWorldValueMapping:
    """Identity mapping (stored float = value) labelled with the unit and quantity."""
    if units == "SUVR":
        unit, quantity, label = codes.UCUM.Ratio, None, "SUVR"
    else:
        unit, quantity = codes.UCUM.StandardizedUptakeValueBodyWeight, codes.DCM.StandardizedUptakeValue
        label = "SUVbw"
    return hd.pm.RealWorldValueMapping(
        lut_label=label, lut_explanation=f"synthetic {label} (virtual PET)", unit=unit,
        value_range=(0.0, max(float(value_max), 1e-3)), slope=1.0, intercept=0.0,
        quantity_definition=quantity)


def encode_pm(volume: Volume, suv: np.ndarray, out_dir: Path, *, model_version: str,
              units: str = "SUVbw") -> OutputFile:
    """Write `pm.dcm`: `suv` (z, y, x) on the source grid, frames aligned with source slices."""
    series_uid, sop_uid = output_uids(volume.datasets, model_version, "pm")
    pixels = in_source_order(volume, np.ascontiguousarray(np.clip(suv, 0.0, None), dtype=np.float32))
    width = max(float(np.percentile(pixels, 99.9)), 1.0)
    pm = hd.pm.ParametricMap(
        source_images=volume.datasets, pixel_array=pixels, series_instance_uid=series_uid,
        series_number=SERIES_NUMBERS["pm"], sop_instance_uid=sop_uid, instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name=MODEL_NAME,
        software_versions=model_version, device_serial_number=DEVICE_SERIAL,
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[real_world_mapping(units, float(pixels.max()))],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=width / 2,
                                                         window_width=width)],
        content_label="VIRTUALPET", content_description=f"synthetic {units}, not for diagnosis",
        content_qualification=hd.ContentQualificationValues.RESEARCH,
    )
    pm.SeriesDescription = series_description("pm", units)
    copy_attributes(pm, volume.datasets[0], SERIES_EXTRAS)
    copy_attributes(pm, volume.datasets[0], ("SpecificCharacterSet",), overwrite=True)
    return write(pm, out_dir, "pm")
