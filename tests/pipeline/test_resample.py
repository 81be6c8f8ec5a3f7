"""Resampling to the model grid and back keeps patient coordinates."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.resample import resample_onto, resample_to_spacing
from tests.pipeline.conftest import sphere


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
    assert model.GetOrigin() == src.GetOrigin() and model.GetDirection() == src.GetDirection()
    assert model.GetSpacing() == (2.0, 2.0, 2.0)
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
