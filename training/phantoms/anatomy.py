"""Abdomen anatomy in millimetres, rasterized onto any voxel grid.

Why: CT and PET of one phantom must show the same body on different grids (fine CT, coarse
PET with an offset origin), so the anatomy is a list of analytic shapes in patient space
(LPS, mm) painted in order onto whichever grid is asked for. Painting only touches each
shape's bounding box, which keeps a 512x512x300 CT to a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Tissue labels (index into per-case HU and SUV lookup tables).
AIR, FAT, MUSCLE, VFAT, BOWEL, LIVER, SPLEEN, KIDNEY = range(8)
CANCELLOUS, CORTICAL, CSF, BLOOD, LUNG, DISC = range(8, 14)
N_LABELS = 14


@dataclass(frozen=True)
class Grid:
    """A voxel grid: origin and spacing (x, y, z) in mm, shape (z, y, x); identity direction."""

    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]

    def axis(self, i: int) -> np.ndarray:
        """Coordinates (mm) of voxel centres along x (0), y (1) or z (2)."""
        n = self.shape[2 - i]
        return (self.origin[i] + self.spacing[i] * np.arange(n)).astype(np.float32)

    def index_range(self, i: int, low: float, high: float) -> slice:
        n = self.shape[2 - i]
        low, high = max(low, -1e6), min(high, 1e6)
        a = int(np.floor((low - self.origin[i]) / self.spacing[i]))
        b = int(np.ceil((high - self.origin[i]) / self.spacing[i])) + 1
        return slice(min(max(a, 0), n), min(max(b, 0), n))


@dataclass(frozen=True)
class Shape:
    """Ellipsoid (or elliptic cylinder when semi z is inf, limited to `zlim`) painting `label`.

    `within`: labels the shape may overwrite (None = any).
    """

    label: int
    centre: tuple[float, float, float]
    semi: tuple[float, float, float]
    within: tuple[int, ...] | None = None
    zlim: tuple[float, float] = (-np.inf, np.inf)


def shape_mask(shape: Shape, grid: Grid) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """Boolean mask of `shape` over its bounding box on `grid` (box slices in z, y, x order)."""
    (cx, cy, cz), (a, b, c) = shape.centre, shape.semi
    zlo, zhi = max(cz - c, shape.zlim[0]), min(cz + c, shape.zlim[1])
    box = (grid.index_range(2, zlo, zhi), grid.index_range(1, cy - b, cy + b),
           grid.index_range(0, cx - a, cx + a))
    x = ((grid.axis(0)[box[2]] - cx) / a) ** 2
    y = ((grid.axis(1)[box[1]] - cy) / b) ** 2
    zc = grid.axis(2)[box[0]]
    inplane = (y[:, None] + x[None, :])
    if np.isinf(c):
        zin = (zc >= shape.zlim[0]) & (zc <= shape.zlim[1])
        mask = zin[:, None, None] & (inplane <= 1.0)[None]
    else:
        z = ((zc - cz) / c) ** 2
        mask = (z[:, None, None] + inplane[None]) <= 1.0
    return box, mask


def paint(shapes: list[Shape], grid: Grid) -> np.ndarray:
    """Label volume (z, y, x, uint8) with `shapes` painted in order onto `grid`."""
    labels = np.zeros(grid.shape, np.uint8)
    for shape in shapes:
        box, mask = shape_mask(shape, grid)
        if mask.size == 0:
            continue
        sub = labels[box]
        if shape.within is not None:
            allowed = np.zeros(256, bool)
            allowed[list(shape.within)] = True
            mask = mask & allowed[sub]
        sub[mask] = shape.label
    return labels


def abdomen_shapes(rng: np.random.Generator) -> tuple[list[Shape], dict]:
    """Random abdomen anatomy; returns the shapes and a few landmarks (liver ellipsoid)."""
    inf = np.inf
    a, b = rng.uniform(125, 190), rng.uniform(95, 145)  # slim to obese
    cy = rng.uniform(-10, 10)
    fat = rng.uniform(5, min(40, b - 60))
    wall = rng.uniform(8, 15)
    zs = rng.uniform(-20, 20)  # cranio-caudal shift of all organs
    shapes = [
        Shape(FAT, (0, cy, 0), (a, b, inf)),
        Shape(MUSCLE, (0, cy, 0), (a - fat, b - fat, inf)),
        Shape(VFAT, (0, cy, 0), (a - fat - wall, b - fat - wall, inf)),
    ]
    ia, ib = a - fat - wall, b - fat - wall
    inside = (VFAT,)
    for _ in range(int(rng.integers(4, 9))):  # bowel loops
        centre = (rng.uniform(-0.5, 0.6) * ia, cy + rng.uniform(-0.7, 0.1) * ib,
                  zs + rng.uniform(-130, 40))
        semi = (rng.uniform(15, 40), rng.uniform(12, 30), rng.uniform(20, 60))
        shapes.append(Shape(BOWEL, centre, semi, inside))
    spine_y = cy + ib - rng.uniform(25, 35)
    lung_base = zs + rng.uniform(50, 80)
    for side in (-1, 1):  # lung bases: lower parts of big ellipsoids above the diaphragm
        shapes.append(Shape(LUNG, (side * 0.5 * ia, cy + 0.15 * ib, lung_base + 160),
                            (0.42 * ia, 0.75 * ib, 160), (VFAT, BOWEL)))
    liver = Shape(LIVER, (-0.42 * ia + rng.uniform(-10, 10), cy - 0.05 * ib + rng.uniform(-8, 8),
                          zs + rng.uniform(20, 40)),
                  (0.52 * ia * rng.uniform(0.9, 1.1), 0.75 * ib * rng.uniform(0.9, 1.05),
                   rng.uniform(70, 95)), (VFAT, BOWEL, LUNG))
    shapes.append(liver)
    if rng.random() < 0.7:  # left lobe reaching across the midline: varied liver shapes
        lc, ls = liver.centre, liver.semi
        shapes.append(Shape(LIVER, (lc[0] + ls[0] * rng.uniform(0.6, 0.9),
                                    lc[1] - ls[1] * rng.uniform(0.2, 0.45), lc[2] + rng.uniform(0, 25)),
                            (ls[0] * rng.uniform(0.35, 0.6), ls[1] * rng.uniform(0.3, 0.5),
                             ls[2] * rng.uniform(0.4, 0.7)), (VFAT, BOWEL, LUNG)))
    sp = rng.uniform(0.75, 1.35)  # spleen size
    shapes.append(Shape(SPLEEN, (0.6 * ia, cy + 0.35 * ib, zs + rng.uniform(30, 50)),
                        (0.2 * ia * sp, 0.3 * ib * sp, rng.uniform(40, 60) * sp),
                        (VFAT, BOWEL, LUNG)))
    kz = zs - rng.uniform(30, 60)
    for side in (-1, 1):
        shapes.append(Shape(KIDNEY, (side * rng.uniform(60, 80), spine_y - 5, kz + side * 8),
                            (rng.uniform(25, 32), rng.uniform(20, 26), rng.uniform(45, 60)),
                            (VFAT, BOWEL, LIVER, SPLEEN)))
    r_aorta = rng.uniform(10, 14)
    shapes.append(Shape(BLOOD, (rng.uniform(10, 25), spine_y - 30 - r_aorta, 0),
                        (r_aorta, r_aorta, inf), (VFAT, BOWEL, LUNG)))
    shapes.append(Shape(BLOOD, (rng.uniform(-30, -20), spine_y - 30, 0), (12, 10, inf),
                        (VFAT, BOWEL, LIVER, LUNG)))
    rv = rng.uniform(17, 22)
    soft = (FAT, MUSCLE, VFAT, BOWEL)  # posterior structures stay inside the skin
    shapes += [
        Shape(MUSCLE, (-35, spine_y + 25, 0), (22, 25, inf), soft),  # paraspinal muscles
        Shape(MUSCLE, (35, spine_y + 25, 0), (22, 25, inf), soft),
        Shape(CORTICAL, (0, spine_y, 0), (rv, rv * 0.85, inf)),
        Shape(CANCELLOUS, (0, spine_y, 0), (rv - 2.5, rv * 0.85 - 2.5, inf)),
        Shape(CORTICAL, (0, spine_y + rv + 14, 0), (9, 11, inf)),  # neural arch ring
        Shape(CSF, (0, spine_y + rv + 14, 0), (6, 7, inf)),
        Shape(CORTICAL, (0, spine_y + rv + 35, 0), (4, 14, inf), soft),  # spinous process
    ]
    pitch = rng.uniform(30, 36)  # intervertebral discs
    for k in range(-12, 13):
        zc = zs + k * pitch
        shapes.append(Shape(DISC, (0, spine_y, zc), (rv, rv * 0.85, 3.5),
                            (CORTICAL, CANCELLOUS)))
    return shapes, {"liver": liver}
