"""Colour renderings shared by the Secondary Capture and the PNG preview.

Why: both show the same picture (grey CT/MR, hot-coloured virtual PET, lesion outlines), so
one function draws it and both outputs agree.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

NOTICE = "SYNTHETIC - NOT FOR DIAGNOSIS"
CT_WINDOW = (-160.0, 240.0)  # soft tissue, as the CT seed paper normalizes
OUTLINE_RGB = (0, 255, 0)


def window(volume: np.ndarray, modality: str) -> tuple[float, float]:
    """Grey window: soft tissue for CT, 1st..99th percentile otherwise (MR has no fixed scale)."""
    if modality == "CT":
        return CT_WINDOW
    low, high = np.percentile(volume, [1, 99])
    return float(low), float(max(high, low + 1e-3))


def grey(slice_: np.ndarray, win: tuple[float, float]) -> np.ndarray:
    """(h, w) values -> (h, w, 3) uint8 grey."""
    t = np.clip((slice_ - win[0]) / (win[1] - win[0]), 0, 1)
    return np.repeat((t * 255).astype(np.uint8)[..., None], 3, axis=2)


def hot(suv: np.ndarray, vmax: float) -> np.ndarray:
    """(h, w) SUV -> (h, w, 3) float 0..1 'hot' colormap (black-red-yellow-white)."""
    t = np.clip(suv / max(vmax, 1e-6), 0, 1)[..., None]
    return np.clip(np.concatenate([3 * t, 3 * t - 1, 3 * t - 2], axis=2), 0, 1)


def outline(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of the inner boundary of every labelled region."""
    mask = labels > 0
    return mask & ~ndimage.binary_erosion(mask)


def fuse(base: np.ndarray, suv: np.ndarray, labels: np.ndarray | None, *,
         win: tuple[float, float], vmax: float, alpha: float = 0.6) -> np.ndarray:
    """Grey base with the hot PET blended in (more opaque where hotter) and lesion outlines."""
    g = grey(base, win).astype(np.float32) / 255
    a = alpha * np.clip(suv / max(vmax, 1e-6) * 2, 0, 1)[..., None]
    rgb = (1 - a) * g + a * hot(suv, vmax)
    out = (rgb * 255).astype(np.uint8)
    if labels is not None:
        out[outline(labels)] = OUTLINE_RGB
    return out


def burn_notice(rgb: np.ndarray, text: str = NOTICE) -> np.ndarray:
    """Draw `text` in the top-left corner, white on a black box (clipped on tiny images)."""
    img = Image.fromarray(rgb)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    box = draw.textbbox((2, 2), text, font=font)
    draw.rectangle((0, 0, box[2] + 2, box[3] + 2), fill=(0, 0, 0))
    draw.text((2, 2), text, fill=(255, 255, 255), font=font)
    return np.asarray(img)
