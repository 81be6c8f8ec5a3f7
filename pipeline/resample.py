"""Resample volumes between the source grid and the model grid.

Why: networks are trained at one voxel spacing; the outputs must land back exactly on the
source pixels so that PM, SEG and SC frames are pixel-aligned with the CT/MR slices.
Origin and direction are kept, so a patient point has the same coordinates on both grids.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import SimpleITK as sitk

log = logging.getLogger(__name__)

CT_DEFAULT = -1000.0  # air outside the field of view
SUV_DEFAULT = 0.0


def resample_to_spacing(image: sitk.Image, spacing_xyz: Sequence[float],
                        default_value: float = CT_DEFAULT) -> sitk.Image:
    """Same origin and direction, new spacing; the size covers the original extent."""
    old_size, old_spacing = image.GetSize(), image.GetSpacing()
    new_spacing = tuple(float(s) for s in spacing_xyz)
    new_size = [max(1, math.ceil((n - 1) * so / sn - 1e-6) + 1)
                for n, so, sn in zip(old_size, old_spacing, new_spacing, strict=True)]
    log.debug("resample %s @ %s -> %s @ %s", old_size, old_spacing, new_size, new_spacing)
    return sitk.Resample(image, new_size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
                         new_spacing, image.GetDirection(), float(default_value),
                         sitk.sitkFloat32)


def resample_onto(image: sitk.Image, reference: sitk.Image,
                  default_value: float = SUV_DEFAULT) -> sitk.Image:
    """Resample `image` onto `reference`'s grid (size, origin, spacing, direction)."""
    return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear,
                         float(default_value), sitk.sitkFloat32)
