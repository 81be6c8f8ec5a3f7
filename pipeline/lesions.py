"""Detect hot lesions in a synthetic SUV volume: connected regions above a threshold.

Why: the CT seed paper reports lesions as connected regions with SUVmax > 2.5; the same rule,
measured on the source grid, feeds the SEG segments and the TID 1500 measurements.
"""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from pipeline.types import Lesion

log = logging.getLogger(__name__)

_STRUCTURE_26 = np.ones((3, 3, 3), bool)
PEAK_VOLUME_ML = 1.0  # SUVpeak sphere (PERCIST / QIBA)


def detect_lesions(suv: np.ndarray, image: sitk.Image, threshold: float = 2.5,
                   min_volume_ml: float = 0.1, max_lesions: int = 50,
                   max_volume_ml: float = float("inf"), organ_mask: np.ndarray | None = None,
                   ) -> tuple[np.ndarray, list[Lesion]]:
    """Label voxels > threshold (26-connected); return labels 1..N sorted by SUVmax and lesions.

    Regions outside [min_volume_ml, max_volume_ml] are dropped (noise specks; hot organs).
    `organ_mask` (nonzero = search here) restricts detection to an organ.

    `suv` is (z, y, x) on `image`'s grid; `image` only supplies geometry.
    """
    if suv.shape != image.GetSize()[::-1]:
        raise ValueError(f"SUV array {suv.shape} does not match image size {image.GetSize()[::-1]}")
    hot = suv > threshold
    if organ_mask is not None:
        if organ_mask.shape != suv.shape:
            raise ValueError(f"organ mask {organ_mask.shape} does not match SUV {suv.shape}")
        hot &= organ_mask.astype(bool)
    components, n = ndimage.label(hot, structure=_STRUCTURE_26)
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    if n == 0:
        return np.zeros(suv.shape, np.int32), []
    stats = _component_stats(components, suv, n)
    counts, maxima, means, centroids = stats
    keep = [i for i in range(n) if min_volume_ml <= counts[i] * voxel_ml <= max_volume_ml]
    keep.sort(key=lambda i: -float(maxima[i]))
    if len(keep) > max_lesions:
        log.warning("%d lesions found, keeping the %d hottest", len(keep), max_lesions)
        keep = keep[:max_lesions]
    relabel = np.zeros(n + 1, np.int32)
    relabel[np.asarray(keep, int) + 1] = np.arange(1, len(keep) + 1, dtype=np.int32)
    labels = relabel[components]
    lesions = []
    kernel = peak_kernel(image.GetSpacing())
    boxes = ndimage.find_objects(labels)
    for new, i in enumerate(keep, start=1):
        z, y, x = centroids[i]
        point = image.TransformContinuousIndexToPhysicalPoint((float(x), float(y), float(z)))
        volume_ml = float(counts[i] * voxel_ml)
        lesions.append(Lesion(index=new, suv_max=float(maxima[i]), suv_mean=float(means[i]),
                              volume_ml=volume_ml, voxel_count=int(counts[i]),
                              centroid_mm=tuple(float(v) for v in point),
                              suv_peak=suv_peak(suv, labels, new, boxes[new - 1], kernel),
                              tlg=float(means[i]) * volume_ml))
    log.info("%d components above %.2f, %d lesions kept", n, threshold, len(lesions))
    return labels, lesions


def peak_kernel(spacing_xyz: tuple[float, ...], volume_ml: float = PEAK_VOLUME_ML) -> np.ndarray:
    """Normalized (z, y, x) weights of a sphere of `volume_ml` on this voxel grid.

    Voxels are weighted by the fraction of their extent inside the sphere (4x supersampling
    per axis), so the kernel volume stays close to 1 ml on coarse grids.
    """
    radius = (3 * volume_ml * 1000 / (4 * np.pi)) ** (1 / 3)  # mm; 6.2 mm for 1 ml
    sx, sy, sz = (float(v) for v in spacing_xyz)
    half = [int(np.ceil(radius / s - 0.5)) for s in (sz, sy, sx)]
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    axes = [(np.arange(-h, h + 1)[:, None] + sub[None, :]).ravel() * s
            for h, s in zip(half, (sz, sy, sx), strict=True)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    inside = (z**2 + y**2 + x**2 <= radius**2).astype(np.float32)
    shape = [2 * h + 1 for h in half]
    kernel = inside.reshape(shape[0], 4, shape[1], 4, shape[2], 4).mean(axis=(1, 3, 5))
    return kernel / kernel.sum()


def suv_peak(suv: np.ndarray, labels: np.ndarray, index: int, box: tuple[slice, ...] | None,
             kernel: np.ndarray) -> float:
    """SUVpeak: highest mean in the 1 ml sphere whose centre lies in the lesion.

    The spherical mean is a convolution, computed only on the lesion's bounding box grown by
    the kernel radius (values outside the box still count; outside the volume: nearest).
    """
    if box is None:
        return float("nan")
    half = [k // 2 for k in kernel.shape]
    grown = tuple(slice(max(0, b.start - h), min(n, b.stop + h))
                  for b, h, n in zip(box, half, suv.shape, strict=True))
    means = ndimage.correlate(suv[grown].astype(np.float32), kernel, mode="nearest")
    inner = tuple(slice(b.start - g.start, b.stop - g.start) for b, g in zip(box, grown, strict=True))
    inside = labels[box] == index
    return float(means[inner][inside].max())


def _component_stats(components: np.ndarray, suv: np.ndarray, n: int):
    """Voxel count, maximum, mean and centroid (z, y, x index) of components 1..n.

    Works on the foreground voxels only: scipy's per-label functions scan (and argsort) the
    whole volume, which costs seconds on a 512 x 512 x 300 CT.
    """
    coords = np.nonzero(components)
    label = components[coords] - 1
    values = suv[coords].astype(np.float64)
    counts = np.bincount(label, minlength=n)
    means = np.bincount(label, weights=values, minlength=n) / counts
    maxima = np.full(n, -np.inf)
    np.maximum.at(maxima, label, values)
    centroids = np.stack([np.bincount(label, weights=c, minlength=n) / counts for c in coords],
                         axis=1)
    return counts, maxima, means, centroids
