"""Loss curves as a PNG drawn with PIL (matplotlib is not a dependency)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75)]


def plot_curves(history: dict[str, list[float]], path: Path, size: tuple[int, int] = (640, 360)
                ) -> Path:
    """One line per series, each scaled to its own min..max (the legend gives the range)."""
    w, h = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    left, top, bottom = 10, 10, h - 20 - 14 * len(history)
    draw.rectangle([left, top, w - 10, bottom], outline=(160, 160, 160))
    for i, (name, ys) in enumerate(sorted(history.items())):
        colour = COLOURS[i % len(COLOURS)]
        if ys:
            lo, hi = min(ys), max(ys)
            span = (hi - lo) or 1.0
            n = max(len(ys) - 1, 1)
            pts = [(left + (w - 20) * k / n, bottom - (bottom - top) * (y - lo) / span)
                   for k, y in enumerate(ys)]
            if len(pts) > 1:
                draw.line(pts, fill=colour, width=2)
            draw.text((left, bottom + 6 + 14 * i), f"{name}: {ys[0]:.4g} -> {ys[-1]:.4g} "
                      f"(range {lo:.4g}..{hi:.4g})", fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
