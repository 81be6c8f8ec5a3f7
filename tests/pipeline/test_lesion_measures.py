"""SUVpeak (1 ml sphere), TLG, the organ mask, and SUVR against a reference region."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.errors import InputError
from pipeline.lesions import detect_lesions, peak_kernel
from pipeline.suvr import label_on_grid, to_suvr
from tests.pipeline.conftest import sphere


def _grid(shape=(30, 40, 40), spacing=(1.0, 1.0, 1.0)) -> sitk.Image:
    img = sitk.Image(shape[2], shape[1], shape[0], sitk.sitkFloat32)
    img.SetSpacing(spacing)
    return img


def test_peak_kernel_is_one_millilitre():
    for spacing in [(1.0, 1.0, 1.0), (0.8, 0.8, 3.0), (4.0, 4.0, 4.0)]:
        kernel = peak_kernel(spacing)
        assert kernel.sum() == pytest.approx(1.0)
        support = (kernel > 0).sum() * np.prod(spacing) / 1000
        assert support >= 0.9  # the sphere fits in the kernel's support


def test_suv_peak_tlg_on_a_uniform_ball_and_a_hot_voxel():
    img = _grid()
    suv = np.zeros((30, 40, 40), np.float32)
    ball = sphere(suv.shape, (15, 20, 20), 9)  # ~3 ml, radius 9 mm > 6.2 mm peak sphere
    suv[ball] = 5.0
    suv[15, 20, 20] = 50.0  # one hot voxel: SUVmax, but hardly the peak
    _, (lesion,) = detect_lesions(suv, img, threshold=2.5, min_volume_ml=0.0)
    assert lesion.suv_max == pytest.approx(50.0)
    assert lesion.suv_peak == pytest.approx(5.0 + 45.0 * peak_kernel((1, 1, 1)).max(), rel=1e-3)
    assert 5.0 < lesion.suv_peak < 5.1
    assert lesion.tlg == pytest.approx(lesion.suv_mean * lesion.volume_ml)
    assert lesion.volume_ml == pytest.approx(ball.sum() / 1000)


def test_suv_peak_of_a_small_lesion_includes_its_surroundings():
    img = _grid()
    suv = np.ones((30, 40, 40), np.float32)
    suv[sphere(suv.shape, (15, 20, 20), 2)] = 10.0  # 33 voxels, far below 1 ml
    _, (lesion,) = detect_lesions(suv, img, threshold=2.5, min_volume_ml=0.0)
    assert 1.0 < lesion.suv_peak < 3.0 < lesion.suv_mean


def test_organ_mask_restricts_detection():
    img = _grid()
    suv = np.ones((30, 40, 40), np.float32)
    suv[sphere(suv.shape, (15, 10, 10), 3)] = 6.0
    suv[sphere(suv.shape, (15, 30, 30), 3)] = 8.0
    organ = np.zeros(suv.shape, bool)
    organ[:, :20, :20] = True
    _, lesions = detect_lesions(suv, img, min_volume_ml=0.0, organ_mask=organ)
    assert len(lesions) == 1 and lesions[0].suv_max == pytest.approx(6.0)


def test_suvr_with_mask_label_and_file(tmp_path):
    suv = np.full((4, 6, 6), 3.0, np.float32)
    suv[0] = 1.5
    labels = np.zeros(suv.shape, np.int16)
    labels[0] = 7
    labels[1] = 2
    np.testing.assert_allclose(to_suvr(suv, labels, 7)[1], 2.0)
    np.testing.assert_allclose(to_suvr(suv, labels == 2)[0], 0.5)
    with pytest.raises(InputError, match="empty"):
        to_suvr(suv, labels, 9)
    with pytest.raises(InputError, match="cannot compute SUVR"):
        to_suvr(np.zeros_like(suv), labels, 7)
    img = sitk.GetImageFromArray(labels.astype(np.int32))
    img.SetOrigin((10.0, -5.0, 2.0))
    path = tmp_path / "ref.nrrd"
    sitk.WriteImage(img, str(path))
    grid = sitk.Image(6, 6, 4, sitk.sitkFloat32)
    grid.SetOrigin((10.0, -5.0, 2.0))
    np.testing.assert_array_equal(label_on_grid(path, grid), labels)
