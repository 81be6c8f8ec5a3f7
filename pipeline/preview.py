"""PNG preview: rows of (CT/MR, virtual PET, fused with lesion outlines) for a few slices.

Why: operators and the test report need a quick look at a result without a DICOM viewer.
Drawn with PIL (no matplotlib in the runtime image).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.render import burn_notice, fuse, grey, hot, window

log = logging.getLogger(__name__)

MIN_PANEL = 256  # small volumes are enlarged (nearest neighbour) to at least this many pixels


def pick_slices(suv: np.ndarray, labels: np.ndarray) -> list[int]:
    """Widest slice of the hottest lesion (else the hottest voxel's) and the middle slice."""
    if labels.max() > 0:
        z_hot = int(np.argmax((labels == 1).sum(axis=(1, 2))))
    else:
        z_hot = int(np.unravel_index(int(np.argmax(suv)), suv.shape)[0])
    return sorted({z_hot, suv.shape[0] // 2})


def _panel(rgb: np.ndarray, scale: int) -> Image.Image:
    img = Image.fromarray(rgb)
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


def write_preview(base: np.ndarray, suv: np.ndarray, labels: np.ndarray, out_path: Path, *,
                  modality: str = "CT", vmax: float = 8.0) -> Path:
    """Write the PNG and return its path; `base`, `suv`, `labels` are (z, y, x) on one grid."""
    win = window(base, modality)
    slices = pick_slices(suv, labels)
    h, w = base.shape[1:]
    scale = max(1, -(-MIN_PANEL // max(h, w)))
    rows = []
    for k in slices:
        panels = [grey(base[k], win), (hot(suv[k], vmax) * 255).astype(np.uint8),
                  fuse(base[k], suv[k], labels[k], win=win, vmax=vmax)]
        row = np.concatenate([np.asarray(_panel(p, scale)) for p in panels], axis=1)
        rows.append(row)
    sheet = burn_notice(np.ascontiguousarray(np.concatenate(rows, axis=0)))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(out_path)
    log.info("preview %s: slices %s", out_path, slices)
    return out_path
