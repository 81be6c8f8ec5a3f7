"""Resampling to the model grid and back keeps patient coordinates."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.resample import IDENTITY, antialias_sigmas_mm, resample_onto, resample_to_spacing
from tests.pipeline.conftest import reoriented, sphere


def _image(direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> sitk.Image:
    arr = np.zeros((20, 40, 40), np.float32)
    arr[sphere(arr.shape, (10, 22, 17), 4)] = 100.0
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.0, 1.0, 2.5))
    img.SetOrigin((-20.0, 5.0, 30.0))
    img.SetDirection(direction)
    return img


def _centroid_mm(img: sitk.Image) -> np.ndarray:
    arr = sitk.GetArrayFromImage(img)
    z, y, x = np.argwhere(arr > 50).mean(axis=0)
    return np.array(img.TransformContinuousIndexToPhysicalPoint((float(x), float(y), float(z))))


@pytest.mark.parametrize("oblique", [False, True])
def test_point_survives_round_trip(oblique):
    c, s = np.cos(0.4), np.sin(0.4)
    direction = (c, -s, 0, s, c, 0, 0, 0, 1) if oblique else (1, 0, 0, 0, 1, 0, 0, 0, 1)
    src = _image(direction)
    model = resample_to_spacing(src, (2.0, 2.0, 2.0), default_value=0.0)
    assert model.GetDirection() == IDENTITY  # the model grid is axis-aligned in LPS
    assert model.GetSpacing() == (2.0, 2.0, 2.0)
    if oblique:  # the axis-aligned box of the rotated source: larger in x and y
        assert model.GetSize()[0] > 21 and model.GetSize()[1] > 21
    else:
        assert model.GetOrigin() == src.GetOrigin()
        assert model.GetSize() == (21, 21, 25)  # covers (n-1)*spacing of the source
    back = resample_onto(model, src, default_value=0.0)
    assert back.GetSize() == src.GetSize() and back.GetOrigin() == src.GetOrigin()
    expected = _centroid_mm(src)
    np.testing.assert_allclose(_centroid_mm(model), expected, atol=0.5)
    np.testing.assert_allclose(_centroid_mm(back), expected, atol=0.5)


def test_default_value_outside():
    src = _image()
    shifted = sitk.Image(src)
    shifted.SetOrigin((100.0, 100.0, 100.0))  # no overlap at all
    out = resample_onto(shifted, src, default_value=-1000.0)
    assert float(sitk.GetArrayViewFromImage(out).max()) == -1000.0


def _noise_image(spacing, shape=(40, 96, 96), seed=0) -> sitk.Image:
    rng = np.random.default_rng(seed)
    img = sitk.GetImageFromArray(rng.normal(0.0, 15.0, shape).astype(np.float32))
    img.SetSpacing(spacing)
    return img


def test_antialiasing_removes_the_fine_grids_extra_noise():
    """Linear resampling keeps a fine grid's per-voxel noise; the low-pass brings it down to
    what one coarse voxel averages, so a finer source gives a quieter model-grid CT."""
    fine, coarse = _noise_image((0.8, 0.8, 1.0)), _noise_image((2.0, 2.0, 3.0), (20, 40, 40))
    plain = sitk.GetArrayFromImage(resample_to_spacing(fine, (3.0, 3.0, 3.0), 0.0))
    smooth = sitk.GetArrayFromImage(resample_to_spacing(fine, (3.0, 3.0, 3.0), 0.0,
                                                        antialiased=True))
    assert plain.std() > 9.0  # sampling without averaging
    assert smooth.std() < 0.35 * plain.std()
    coarse_smooth = resample_to_spacing(coarse, (3.0, 3.0, 3.0), 0.0, antialiased=True)
    assert sitk.GetArrayViewFromImage(coarse_smooth).std() > smooth.std()


def test_antialiasing_keeps_geometry_and_skips_upsampling():
    src = _image()
    smooth = resample_to_spacing(src, (2.0, 2.0, 2.0), 0.0, antialiased=True)
    assert smooth.GetSize() == (21, 21, 25) and smooth.GetOrigin() == src.GetOrigin()
    np.testing.assert_allclose(_centroid_mm(smooth), _centroid_mm(src), atol=0.5)
    assert antialias_sigmas_mm((1.0, 1.0, 2.5), (2.0, 2.0, 2.0))[2] == 0.0  # z gets finer
    finer = resample_to_spacing(src, (0.5, 0.5, 1.0), 0.0, antialiased=True)
    plain = resample_to_spacing(src, (0.5, 0.5, 1.0), 0.0)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(finer),
                                  sitk.GetArrayViewFromImage(plain))


@pytest.mark.parametrize(("flip", "order"), [((True, False, False), (0, 1, 2)),  # feet first
                                             ((True, True, False), (0, 1, 2)),  # prone
                                             ((False, True, True), (1, 2, 0)),  # sagittal
                                             ((True, False, True), (2, 0, 1))])
def test_any_axis_order_gives_the_same_model_grid(flip, order):
    src = _image()
    moved = reoriented(src, flip, order)
    np.testing.assert_allclose(_centroid_mm(moved), _centroid_mm(src), atol=1e-3)  # same patient
    for antialiased in (False, True):
        want = resample_to_spacing(src, (2.0, 2.0, 2.0), 0.0, antialiased=antialiased)
        got = resample_to_spacing(moved, (2.0, 2.0, 2.0), 0.0, antialiased=antialiased)
        assert got.GetDirection() == IDENTITY and got.GetSize() == want.GetSize()
        np.testing.assert_allclose(got.GetOrigin(), want.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(sitk.GetArrayViewFromImage(got),
                                   sitk.GetArrayViewFromImage(want), atol=1e-3)
    back = resample_onto(resample_to_spacing(moved, (2.0, 2.0, 2.0), 0.0), moved, 0.0)
    assert back.GetDirection() == moved.GetDirection()  # outputs land on the source's own grid
    np.testing.assert_allclose(_centroid_mm(back), _centroid_mm(src), atol=0.5)
