"""Fixtures for pipeline tests: a tiny CT series loaded once per test, synthetic hot spheres."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from pipeline.models.package import save_package
from pipeline.models.unet2d import UNet2D
from pipeline.series import Volume, load_series
from tests.conftest import make_tiny_ct


def sphere(shape: tuple[int, int, int], center: tuple[float, float, float], radius: float) -> np.ndarray:
    """Boolean (z, y, x) ball in voxel units."""
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (z - center[0]) ** 2 + (y - center[1]) ** 2 + (x - center[2]) ** 2 <= radius**2


@pytest.fixture
def ct_volume(tmp_path) -> Volume:
    return load_series(make_tiny_ct(tmp_path / "ct"))


@pytest.fixture
def hot_suv(ct_volume) -> np.ndarray:
    """Background 1.0 SUV with two hot balls (SUVmax 8 and 4) on the CT grid."""
    shape = ct_volume.image.GetSize()[::-1]
    suv = np.ones(shape, np.float32)
    suv[sphere(shape, (6, 16, 16), 2.5)] = 6.0
    suv[6, 16, 16] = 8.0
    suv[sphere(shape, (5, 34, 32), 2.0)] = 4.0
    return suv


def make_package(out: Path, version: str = "test-0.1") -> Path:
    """A real (untrained) tiny UNet package written with save_package."""
    torch.manual_seed(0)
    net = UNet2D(in_channels=3, base=4, depth=2)
    manifest = {
        "name": "tiny-test", "version": version,
        "architecture": {"name": "unet2d", "params": {"in_channels": 3, "base": 4, "depth": 2}},
        "input": {"modality": "CT", "spacing_mm": [4.0, 4.0, 3.0],
                  "normalization": {"kind": "ct_window", "low": -160, "high": 240}},
        "output": {"units": "SUVbw", "scale": 1.0},
    }
    return save_package(out, net, manifest)


def reoriented(src: sitk.Image, flip: tuple[bool, bool, bool], order: tuple[int, int, int]
                ) -> sitk.Image:
    """The same patient content stored with axes flipped and permuted (index order x, y, z):
    a feet-first or prone CT, a sagittal MR, a NIfTI volume kept RAS."""
    arr = sitk.GetArrayFromImage(src)  # (z, y, x)
    arr = arr[tuple(slice(None, None, -1) if f else slice(None) for f in flip[::-1])]
    arr = np.transpose(arr, [2 - a for a in order[::-1]])
    out = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    old_dir = np.array(src.GetDirection()).reshape(3, 3)
    cols = [old_dir[:, a] * (-1 if flip[a] else 1) for a in order]
    out.SetDirection(tuple(np.stack(cols, axis=1).flatten()))
    out.SetSpacing(tuple(src.GetSpacing()[a] for a in order))
    corner = [src.GetSize()[a] - 1 if flip[a] else 0 for a in range(3)]
    out.SetOrigin(src.TransformIndexToPhysicalPoint(corner))
    return out
