"""SUVR: uptake divided by the mean uptake in a reference region (mask or label value).

Why: MR-based amyloid/FDG brain PET is read as a ratio to a reference region (e.g. cerebellar
grey matter), which removes dose, weight and timing from the numbers. The region comes as a
boolean mask or as a label value in a label volume on the same grid; an empty or non-positive
reference is refused, never divided by.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from pipeline.errors import InputError

log = logging.getLogger(__name__)


def reference_mask(labels: np.ndarray, label: int | None = None) -> np.ndarray:
    """Boolean reference mask: `labels == label`, or nonzero when `label` is None."""
    return labels != 0 if label is None else labels == label


def to_suvr(suv: np.ndarray, reference: np.ndarray, label: int | None = None) -> np.ndarray:
    """SUV (any uptake unit) / mean in the reference region; float32, same shape.

    `reference` is a boolean mask or a label volume (then `label` selects the region).
    """
    if reference.shape != suv.shape:
        raise InputError(f"reference region {reference.shape} does not match the image {suv.shape}")
    mask = reference.astype(bool) if reference.dtype == bool else reference_mask(reference, label)
    count = int(mask.sum())
    if count == 0:
        raise InputError(f"reference region (label {label}) is empty: cannot compute SUVR")
    mean = float(suv[mask].astype(np.float64).mean())
    if not mean > 0:
        raise InputError(f"mean uptake in the reference region is {mean:.4g}: cannot compute SUVR")
    log.info("SUVR reference: %d voxels, mean %.4g", count, mean)
    return (suv / np.float32(mean)).astype(np.float32, copy=False)


def label_on_grid(path: Path, reference: sitk.Image) -> np.ndarray:
    """A label image file (patient coordinates) resampled onto `reference` (nearest), (z, y, x)."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"cannot read label image {path}: {exc}") from exc
    on_grid = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                            sitk.sitkInt32)
    return sitk.GetArrayFromImage(on_grid)
