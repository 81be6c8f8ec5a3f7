"""CT noise correlated in-plane, as a scanner's reconstruction kernel makes it.

Why one module: the phantom generator (`--ct-noise-grain`) and the trainers' augmentation
(`--aug-noise-grain`) must make the same texture, or training against it would miss what the
generality check measures. White noise is blurred in-plane and brought back to unit variance,
so a caller keeps its sigma and only the texture changes.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def correlated(white: np.ndarray, fwhm_px: float) -> np.ndarray:
    """`white` (..., H, W) unit noise blurred in-plane by a Gaussian of `fwhm_px` pixels, at
    unit variance again; returned as is where the blur is narrower than a pixel."""
    sd = fwhm_px / 2.355
    if sd < 0.3:
        return white
    smooth = gaussian_filter(white, sigma=(0.0,) * (white.ndim - 2) + (sd, sd))
    return smooth / max(float(smooth.std()), 1e-6)
