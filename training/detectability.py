"""How much evidence a CT holds for each phantom lesion: a matched-filter SNR on the model grid.

Why: the lesion targets count every lesion the real PET shows, but a CT -> PET model can only
find what the CT shows. For a phantom lesion the generator's CT profile is known, so this draws
that profile (relative to the surrounding liver, with partial volume) on the grid the model sees
and measures the filter's response at the lesion against its responses over lesion-free liver of
the same case: SNR = (response - mean) / std. That is the linear observer that knows the signal
and where it is; finding a lesion by search at a few false positives per case needs about 4-5.
The evaluation splits TPR by this number, so a miss reads as "the model" or "no CT evidence".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.signal import fftconvolve

from training.phantoms.abdomen import PhantomLesion, lesion_ct_hu

DETECTABLE_SNR = 5.0  # search detection at <= ~0.25 false positives per case needs about this
SUPERSAMPLE = 3  # template drawn 3x finer per axis and averaged: partial volume at the edge
MIN_BACKGROUND = 50  # lesion-free template placements needed for a meaningful std


def _axes(origin, spacing, shape, sub: int = 1) -> list[np.ndarray]:
    """Voxel-centre coordinates (mm) per axis x, y, z, `sub` samples per voxel."""
    offsets = (np.arange(sub) + 0.5) / sub - 0.5
    return [(origin[i] + spacing[i] * (np.arange(shape[2 - i])[:, None] + offsets)).ravel()
            for i in range(3)]


def _box(lesion: PhantomLesion, origin, spacing, shape, scale: float = 1.0) -> tuple[slice, ...]:
    """(z, y, x) index box around the lesion sphere (radius x `scale`), clipped to the volume."""
    r = lesion.diameter_mm / 2 * scale
    out = []
    for i in (2, 1, 0):
        lo = int(np.floor((lesion.centre_mm[i] - r - origin[i]) / spacing[i]))
        hi = int(np.ceil((lesion.centre_mm[i] + r - origin[i]) / spacing[i])) + 1
        out.append(slice(max(lo, 0), min(hi, shape[2 - i])))
    return tuple(out)


def _normalized_radius(lesion: PhantomLesion, origin, spacing, box, sub: int) -> np.ndarray:
    """r / R at `sub`^3 points per voxel of `box`: shape (nz * sub, ny * sub, nx * sub), the
    samples of one voxel adjacent (so a reshape to (nz, sub, ny, sub, nx, sub) regroups them)."""
    starts = [box[2 - i].start for i in range(3)]
    shape = tuple(box[k].stop - box[k].start for k in range(3))
    o = [origin[i] + starts[i] * spacing[i] for i in range(3)]
    ax = _axes(o, spacing, shape, sub)
    d2 = [((ax[i] - lesion.centre_mm[i]) / (lesion.diameter_mm / 2)) ** 2 for i in range(3)]
    return np.sqrt(d2[2][:, None, None] + d2[1][None, :, None] + d2[0][None, None, :])


def lesion_template(lesion: PhantomLesion, origin, spacing, shape, liver_hu: float
                    ) -> tuple[tuple[slice, ...], np.ndarray]:
    """The noise-free lesion minus liver (HU) on the grid, over the lesion's box."""
    box = _box(lesion, origin, spacing, shape)
    rn = _normalized_radius(lesion, origin, spacing, box, SUPERSAMPLE)
    fine = np.where(rn <= 1.0, np.broadcast_to(lesion_ct_hu(lesion, rn, liver_hu), rn.shape)
                    - liver_hu, 0.0)
    nz, ny, nx = (box[k].stop - box[k].start for k in range(3))
    s = SUPERSAMPLE
    return box, fine.reshape(nz, s, ny, s, nx, s).mean(axis=(1, 3, 5)).astype(np.float32)


def _lesion_mask(lesions: Sequence[PhantomLesion], origin, spacing, shape,
                 scale: float) -> np.ndarray:
    """Voxels within `scale` radii of any lesion (benign ones included)."""
    mask = np.zeros(shape, bool)
    for les in lesions:
        box = _box(les, origin, spacing, shape, scale)
        if all(b.stop > b.start for b in box):
            rn = _normalized_radius(les, origin, spacing, box, 1)
            mask[box] |= rn <= scale
    return mask


def ct_snr(ct: np.ndarray, origin, spacing, liver: np.ndarray, lesion: PhantomLesion,
           lesions: Sequence[PhantomLesion]) -> float | None:
    """Matched-filter SNR of `lesion` in `ct` (HU, (z, y, x)); None where it cannot be measured
    (no liver around it, the lesion outside the volume, too little lesion-free liver)."""
    shape = ct.shape
    box = _box(lesion, origin, spacing, shape)
    if any(b.stop <= b.start for b in box):
        return None
    near = _lesion_mask(lesions, origin, spacing, shape, 1.3)
    wide = _box(lesion, origin, spacing, shape, 3.0)
    rn_wide = _normalized_radius(lesion, origin, spacing, wide, 1)
    ring = (rn_wide > 1.3) & (rn_wide < 3.0) & liver[wide] & ~near[wide]
    if ring.sum() < 10:
        return None
    liver_hu = float(np.median(ct[wide][ring]))
    box, template = lesion_template(lesion, origin, spacing, shape, liver_hu)
    template = template * liver[box]  # the generator paints lesions inside the liver only
    if not np.abs(template).max(initial=0) > 0:
        return None
    support = np.abs(template) > 1e-3
    # Responses for every placement of the template box inside the liver's bounding box.
    zs, ys, xs = np.nonzero(liver)
    crop = tuple(slice(min(int(a.min()), b.start), max(int(a.max()) + 1, b.stop))
                 for a, b in zip((zs, ys, xs), box, strict=True))
    if any((c.stop - c.start) < t for c, t in zip(crop, template.shape, strict=True)):
        return None
    flip = (slice(None, None, -1),) * 3
    response = fftconvolve(ct[crop], template[flip], mode="valid")
    inside = fftconvolve(liver[crop].astype(np.float32), support[flip].astype(np.float32),
                         mode="valid") > support.sum() - 0.5
    others = ndimage.binary_dilation(near, iterations=1)
    touches = fftconvolve(others[crop].astype(np.float32), support[flip].astype(np.float32),
                          mode="valid") > 0.5
    background = response[inside & ~touches]
    start = tuple(b.start - c.start for b, c in zip(box, crop, strict=True))
    if background.size < MIN_BACKGROUND:
        return None
    std = float(background.std())
    if not std > 0:
        return None
    return float((response[start] - background.mean()) / std)
