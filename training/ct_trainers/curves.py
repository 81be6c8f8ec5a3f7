"""Loss curves as a PNG drawn with PIL (matplotlib is not a dependency).

Why: a glance at the curves tells whether a run diverged or overfits; one panel per series,
each on its own y-range, epochs on x.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

log = logging.getLogger(__name__)

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def plot_curves(history: Sequence[dict], keys: Sequence[str], path: Path,
                width: int = 640, panel: int = 160) -> Path:
    """One panel per key of `history` (list of per-epoch dicts with 'epoch'); writes `path`."""
    keys = [k for k in keys if any(h.get(k) is not None for h in history)]
    img = Image.new("RGB", (width, max(1, len(keys)) * panel), "white")
    draw = ImageDraw.Draw(img)
    left, right, pad = 60, 10, 16
    for row, key in enumerate(keys):
        top = row * panel
        pts = [(h["epoch"], float(h[key])) for h in history if h.get(key) is not None]
        lo, hi = min(v for _, v in pts), max(v for _, v in pts)
        hi = hi if hi > lo else lo + 1.0
        e0, e1 = pts[0][0], max(pts[-1][0], pts[0][0] + 1)
        box = (left, top + pad, width - right, top + panel - pad)
        draw.rectangle(box, outline="#888888")
        xy = [(left + (e - e0) / (e1 - e0) * (box[2] - left),
               box[3] - (v - lo) / (hi - lo) * (box[3] - box[1])) for e, v in pts]
        colour = COLOURS[row % len(COLOURS)]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=2)
        for x, y in xy:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
        draw.text((left + 4, top + 2), f"{key} (epochs {e0}-{pts[-1][0]})", fill="black")
        draw.text((2, box[1]), f"{hi:.3g}", fill="black")
        draw.text((2, box[3] - 10), f"{lo:.3g}", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
