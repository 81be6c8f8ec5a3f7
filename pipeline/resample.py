"""Resample volumes between the source grid and the model grid.

Why: networks are trained at one voxel spacing; the outputs must land back exactly on the
source pixels so that PM, SEG and SC frames are pixel-aligned with the CT/MR slices.
A patient point has the same coordinates on both grids.

The model grid is always axis-aligned in LPS (identity direction, rows to the patient's left,
columns to posterior, slices to superior), whatever the source's orientation. Why: the networks
learned anatomy in one orientation; a feet-first or prone CT, a sagittal MR or a NIfTI volume
stored RAS would otherwise reach them mirrored or turned. Axis flips and permutations are exact
(`sitk.DICOMOrient`); an oblique remainder (gantry tilt, oblique MR) is resampled onto the
axis-aligned box that holds the source. The outputs go back onto the source grid by patient
coordinates (`resample_onto`), so the source's own orientation is kept for every DICOM output.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

log = logging.getLogger(__name__)

CT_DEFAULT = -1000.0  # air outside the field of view
SUV_DEFAULT = 0.0

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
DIRECTION_TOL = 1e-4
FWHM_PER_SIGMA = 2.3548
MIN_SIGMA_VOXELS = 0.25  # below this a Gaussian changes nothing a linear resample would see


def antialias_sigmas_mm(old_spacing: Sequence[float], new_spacing: Sequence[float]
                        ) -> tuple[float, ...]:
    """Gaussian sigma (mm) per axis that brings a grid's resolution down to a coarser one's.

    A sample of the old grid stands for a detail about one old spacing wide (FWHM); the new
    grid can only hold details one new spacing wide, so the missing blur has
    FWHM^2 = new^2 - old^2. Axes that get finer need none (0)."""
    return tuple(math.sqrt(max(float(n) ** 2 - float(o) ** 2, 0.0)) / FWHM_PER_SIGMA
                 for o, n in zip(old_spacing, new_spacing, strict=True))


def antialias(image: sitk.Image, new_spacing: Sequence[float]) -> sitk.Image:
    """`image` low-pass filtered for resampling to the coarser `new_spacing` (float32).

    Why: linear interpolation onto a coarser grid samples the fine grid without averaging it, so
    a 0.8 mm CT on a 3 mm model grid keeps almost all of its per-voxel noise and aliases edges,
    while a 2 mm CT of the same patient comes out much smoother: the network would see a
    different picture of the same anatomy for every scanner matrix. Filtering to the model
    grid's resolution first makes the model-grid CT nearly independent of the source grid."""
    sigmas = antialias_sigmas_mm(image.GetSpacing(), new_spacing)
    if all(s < MIN_SIGMA_VOXELS * sp for s, sp in zip(sigmas, image.GetSpacing(), strict=True)):
        return image
    # Variance per axis in mm^2 (image spacing is used); sigma 0 leaves that axis untouched.
    return sitk.DiscreteGaussian(sitk.Cast(image, sitk.sitkFloat32), [s * s for s in sigmas],
                                 32, 0.01, True)


def is_axis_aligned(image: sitk.Image) -> bool:
    """True when the image's axes are the patient's L, P, S axes (identity direction)."""
    return bool(np.allclose(image.GetDirection(), IDENTITY, atol=DIRECTION_TOL))


def _box(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest patient coordinates (x, y, z mm) of the image's voxel centres."""
    size = image.GetSize()
    corners = [image.TransformContinuousIndexToPhysicalPoint([c * (n - 1) for c, n in
                                                              zip(corner, size, strict=True)])
               for corner in np.ndindex(2, 2, 2)]
    return np.min(corners, axis=0), np.max(corners, axis=0)


def resample_to_spacing(image: sitk.Image, spacing_xyz: Sequence[float],
                        default_value: float = CT_DEFAULT, *,
                        antialiased: bool = False) -> sitk.Image:
    """The axis-aligned model grid at `spacing_xyz` covering the image (see module docstring);
    for an axis-aligned source the origin is kept.

    `antialiased`: low-pass to the new grid's resolution first (see `antialias`); packages
    trained on antialiased inputs say so in their manifest (`input.antialias`)."""
    if not is_axis_aligned(image):
        log.info("source direction %s: model grid put axis-aligned in LPS",
                 [round(v, 4) for v in image.GetDirection()])
        image = sitk.DICOMOrient(image, "LPS")  # exact: axis flips and permutations only
    old_size, old_spacing = image.GetSize(), image.GetSpacing()
    new_spacing = tuple(float(s) for s in spacing_xyz)
    low, high = _box(image)
    new_size = [max(1, math.ceil(extent / sn - 1e-6) + 1)
                for extent, sn in zip(high - low, new_spacing, strict=True)]
    log.debug("resample %s @ %s -> %s @ %s%s", old_size, old_spacing, new_size, new_spacing,
              " (antialiased)" if antialiased else "")
    if antialiased:
        image = antialias(image, new_spacing)
    origin = image.GetOrigin() if is_axis_aligned(image) else tuple(float(v) for v in low)
    return sitk.Resample(image, new_size, sitk.Transform(), sitk.sitkLinear, origin,
                         new_spacing, IDENTITY, float(default_value), sitk.sitkFloat32)


def resample_onto(image: sitk.Image, reference: sitk.Image,
                  default_value: float = SUV_DEFAULT) -> sitk.Image:
    """Resample `image` onto `reference`'s grid (size, origin, spacing, direction)."""
    return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear,
                         float(default_value), sitk.sitkFloat32)


def _bracket(offsets: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower neighbour index in `offsets` (ascending) and linear weight of the upper one."""
    lower = np.clip(np.searchsorted(offsets, at, side="right") - 1, 0, max(len(offsets) - 2, 0))
    if len(offsets) < 2:
        return lower, np.zeros_like(at, dtype=np.float32)
    width = offsets[lower + 1] - offsets[lower]
    return lower, np.clip((at - offsets[lower]) / width, 0.0, 1.0).astype(np.float32)


def stack_to_uniform(stack: np.ndarray, offsets: np.ndarray, spacing: float) -> np.ndarray:
    """Slices at ascending `offsets` (mm along the normal) -> uniform slices 0, spacing, ...

    Linear along the normal, slice by slice (no 3-D temporaries): in-plane pixels are untouched.
    """
    n = round(float(offsets[-1]) / spacing) + 1
    lower, weight = _bracket(np.asarray(offsets, float), np.arange(n) * spacing)
    out = np.empty((n, *stack.shape[1:]), np.float32)
    for j in range(n):
        k, w = int(lower[j]), float(weight[j])
        out[j] = stack[k] if w == 0.0 else (1 - w) * stack[k] + w * stack[k + 1]
    return out


def uniform_to_stack(volume: np.ndarray, offsets: np.ndarray, spacing: float, *,
                     nearest: bool = False) -> np.ndarray:
    """Inverse of `stack_to_uniform`: values of the uniform slices at each source offset."""
    grid = np.arange(volume.shape[0]) * spacing
    lower, weight = _bracket(grid, np.asarray(offsets, float))
    out = np.empty((len(offsets), *volume.shape[1:]), volume.dtype)
    for j in range(len(offsets)):
        k, w = int(lower[j]), float(weight[j])
        if nearest or w == 0.0:
            out[j] = volume[k + int(w >= 0.5)] if nearest else volume[k]
        else:
            out[j] = (1 - w) * volume[k] + w * volume[k + 1]
    return out
