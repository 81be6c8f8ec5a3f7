"""Lesion detection on synthetic spheres: counts, SUVmax, volumes, centroids, limits."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.lesions import detect_lesions
from tests.pipeline.conftest import sphere


def _grid(shape, spacing=(2.0, 2.0, 2.0), origin=(-10.0, 20.0, 5.0)) -> sitk.Image:
    img = sitk.Image(shape[2], shape[1], shape[0], sitk.sitkFloat32)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def test_spheres_are_found_sorted_and_measured():
    shape = (30, 40, 40)
    suv = np.full(shape, 1.0, np.float32)
    big, small = sphere(shape, (15, 12, 12), 5), sphere(shape, (10, 28, 28), 3)
    suv[big], suv[small] = 4.0, 9.0
    suv[0, 39, 39] = 5.0  # one voxel: 0.008 ml, below the minimum volume
    labels, lesions = detect_lesions(suv, _grid(shape), threshold=2.5, min_volume_ml=0.1)
    assert len(lesions) == 2
    first, second = lesions
    assert (first.index, first.suv_max) == (1, pytest.approx(9.0))  # hottest first
    assert second.suv_max == pytest.approx(4.0) and second.suv_mean == pytest.approx(4.0)
    assert first.voxel_count == int(small.sum()) and second.voxel_count == int(big.sum())
    # volumes close to the ball's (4/3 pi r^3 of 2 mm voxels), within voxelization error
    assert second.volume_ml == pytest.approx(4 / 3 * np.pi * (5 * 2) ** 3 / 1000, rel=0.15)
    assert first.volume_ml == pytest.approx(small.sum() * 8 / 1000)
    assert first.centroid_mm == pytest.approx((-10 + 28 * 2, 20 + 28 * 2, 5 + 10 * 2))
    assert set(np.unique(labels)) == {0, 1, 2}
    assert (labels == 1).sum() == small.sum()


def test_diagonal_neighbours_are_one_lesion_and_limits():
    shape = (10, 10, 10)
    suv = np.zeros(shape, np.float32)
    for k in range(5):
        suv[k, k, k] = 3.0  # touching only by corners: one 26-connected component
    _, lesions = detect_lesions(suv, _grid(shape, spacing=(5.0, 5.0, 5.0)), min_volume_ml=0.1)
    assert len(lesions) == 1 and lesions[0].voxel_count == 5
    empty_labels, none = detect_lesions(np.zeros(shape, np.float32), _grid(shape))
    assert none == [] and empty_labels.max() == 0
    suv2 = np.zeros(shape, np.float32)
    suv2[::3, ::3, ::3] = np.arange(1, 65, dtype=np.float32).reshape(4, 4, 4) + 3
    labels2, top = detect_lesions(suv2, _grid(shape, spacing=(5.0, 5.0, 5.0)), max_lesions=3)
    assert [round(les.suv_max) for les in top] == [67, 66, 65] and labels2.max() == 3


def test_regions_above_the_maximum_volume_are_organs_not_lesions():
    shape = (30, 40, 40)
    suv = np.full(shape, 1.0, np.float32)
    organ, lesion = sphere(shape, (15, 12, 12), 8), sphere(shape, (15, 30, 30), 3)
    suv[organ], suv[lesion] = 6.0, 5.0
    organ_ml = organ.sum() * 8 / 1000  # about 17 ml of 2 mm voxels
    _, kept = detect_lesions(suv, _grid(shape), max_volume_ml=organ_ml - 1)
    assert [round(x.suv_max) for x in kept] == [5]
    _, both = detect_lesions(suv, _grid(shape), max_volume_ml=organ_ml + 1)
    assert len(both) == 2
