"""PSNR, SSIM and RMSE as the paper reports them: on SUVR clipped to -10..1000.

Why: the paper measures "on PET generated in -10 to 1000 range floating-point values", so the
data range is 1010; that makes PSNR large and SSIM small compared with photographs.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

VALUE_RANGE = (-10.0, 1000.0)


def image_metrics(pred: np.ndarray, target: np.ndarray,
                  value_range: tuple[float, float] = VALUE_RANGE) -> dict[str, float]:
    """(T, z, y, x) prediction and target in SUVR -> psnr, ssim (mean over time-steps), rmse."""
    lo, hi = value_range
    p = np.clip(pred.astype(np.float64), lo, hi)
    t = np.clip(target.astype(np.float64), lo, hi)
    rng = hi - lo
    mse = float(((p - t) ** 2).mean())
    psnr = float("inf") if mse == 0 else 10 * np.log10(rng**2 / mse)
    win = min(7, *(s if s % 2 else s - 1 for s in t.shape[-3:]))
    ssim = [structural_similarity(t[k], p[k], data_range=rng, win_size=max(win, 3))
            for k in range(t.shape[0])]
    return {"psnr": round(psnr, 3), "ssim": round(float(np.mean(ssim)), 4),
            "rmse": round(float(np.sqrt(mse)), 4)}
