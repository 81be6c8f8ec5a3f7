"""Laplacian-pyramid blending of FCN and cGAN outputs (paper 000, section 2.5)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.blend import blend, collapse, fcn_mask, laplacian_pyramid, pyramid_blend, unconfirmed


def _img(seed: int, shape=(48, 40)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 5, shape).astype(np.float32)


def test_pyramid_reconstructs_exactly():
    img = _img(0)
    assert np.allclose(collapse(laplacian_pyramid(img, 5)), img, atol=1e-6)


def test_identical_inputs_give_identical_output():
    img = _img(1)
    assert np.allclose(blend(img, img.copy()), img, atol=1e-5)


def test_mask_all_ones_is_fcn_all_zeros_is_cgan():
    a, b = _img(2), _img(3)
    assert np.allclose(pyramid_blend(a, b, np.ones_like(a)), a, atol=1e-5)
    assert np.allclose(pyramid_blend(a, b, np.zeros_like(a)), b, atol=1e-5)
    fcn_cold = np.clip(a, 0, 2.0)  # nothing above 2.5: the cGAN everywhere
    assert np.allclose(blend(fcn_cold, b), b, atol=1e-5)
    fcn_hot = a + 3.0  # everything above 2.5: the FCN everywhere
    assert np.allclose(blend(fcn_hot, b), fcn_hot, atol=1e-4)


def test_seam_is_smooth_and_far_sides_keep_their_source():
    a, b = np.full((64, 64), 10.0), np.zeros((64, 64))
    mask = np.zeros((64, 64))
    mask[:, 32:] = 1
    out = pyramid_blend(a, b, mask, levels=4)
    step = np.abs(np.diff(out, axis=1)).max()
    assert step < 5.0  # a hard cut would jump by 10 in one pixel
    assert np.abs(out[:, :8]).max() < 0.5 and np.abs(out[:, -8:] - 10).max() < 0.5


def test_volume_is_blended_slice_by_slice():
    fcn = np.stack([_img(4), _img(5) + 3.0, _img(6)])
    cgan = np.stack([_img(7), _img(8), _img(9)])
    out = blend(fcn, cgan)
    assert out.shape == fcn.shape and out.dtype == np.float32
    assert np.allclose(out[1], blend(fcn[1], cgan[1]))
    with pytest.raises(ValueError):
        blend(fcn, cgan[:2])


def _small_peak(value: float) -> tuple[np.ndarray, np.ndarray]:
    """A 5-voxel FCN lesion over liver-like background, and a cGAN that shows no lesion."""
    yy, xx = np.mgrid[:48, :48]
    fcn = np.where((yy - 24) ** 2 + (xx - 24) ** 2 <= 1, value, 1.9).astype(np.float32)
    return fcn, np.full((48, 48), 1.8, np.float32)


def test_paper_mask_pulls_a_small_peak_under_threshold_and_dilation_keeps_it():
    fcn, cgan = _small_peak(3.2)
    assert blend(fcn, cgan).max() < 2.5  # the paper's exact mask loses the lesion
    kept = blend(fcn, cgan, dilate=3)
    assert kept.max() > 2.5 and abs(kept.max() - 3.2) < 0.5
    assert np.allclose(kept[:, :8], cgan[:, :8], atol=1e-3)  # far away: still the cGAN


def test_fcn_mask_dilation_is_in_plane_only():
    fcn = np.zeros((3, 21, 21), np.float32)
    fcn[1, 10, 10] = 5.0
    mask = fcn_mask(fcn, 2.5, dilate=2)
    assert not mask[0].any() and not mask[2].any()  # slice-wise, like the networks
    assert mask[1].sum() == 13  # disk of radius 2: 13 voxels
    assert mask[1, 10, 12] and not mask[1, 12, 12]
    assert (fcn_mask(fcn, 2.5) == (fcn > 2.5)).all()


def test_fcn_or_cgan_mask_lets_the_fcn_veto_cgan_hot_spots():
    fcn = np.full((48, 48), 1.9, np.float32)
    cgan = np.full((48, 48), 1.8, np.float32)
    cgan[20:28, 20:28] = 4.5  # a cGAN hot spot the FCN does not confirm
    assert blend(fcn, cgan).max() > 4.0  # the paper's mask keeps it
    vetoed = blend(fcn, cgan, hot_mask="fcn_or_cgan")
    assert vetoed.max() < 2.5  # the FCN says cold: no hot spot left
    fcn[10:14, 10:14] = 5.0  # an FCN hot spot stays hot either way
    assert blend(fcn, cgan, hot_mask="fcn_or_cgan")[12, 12] > 3.5
    with pytest.raises(ValueError, match="hot_mask"):
        blend(fcn, cgan, hot_mask="cgan")


def test_fcn_veto_cgan_leaves_no_leak_of_a_vetoed_cgan_peak():
    fcn = np.full((48, 48), 1.9, np.float32)
    fcn[22:26, 22:26] = 2.3  # the FCN sees something, but not a hot lesion
    cgan = np.full((48, 48), 1.8, np.float32)
    cgan[22:26, 22:26] = 8.5  # a small, very hot cGAN spot (as on a benign cyst)
    assert blend(fcn, cgan, hot_mask="fcn_or_cgan").max() > 2.5  # leaks through coarse levels
    vetoed = blend(fcn, cgan, hot_mask="fcn_veto_cgan")
    assert vetoed.max() < 2.5
    assert abs(vetoed[5, 5] - 1.8) < 0.01  # the cold picture far away is still the cGAN's
    fcn[10:14, 10:14] = 5.0  # an FCN hot spot stays hot
    assert blend(fcn, cgan, hot_mask="fcn_veto_cgan")[12, 12] > 3.5
    vol_f, vol_c = np.stack([fcn] * 3), np.stack([cgan] * 3)  # slice by slice in 3-D too
    assert (blend(vol_f, vol_c, hot_mask="fcn_veto_cgan")[1] ==
            blend(fcn, cgan, hot_mask="fcn_veto_cgan")).all()


def test_fcn_and_cgan_needs_both_networks_for_a_hot_spot():
    fcn = np.full((3, 48, 48), 1.9, np.float32)
    cgan = np.full((3, 48, 48), 1.8, np.float32)
    fcn[:, 8:12, 30:34] = 4.0  # FCN only (a vessel the cGAN knows is cold)
    fcn[:, 22:26, 22:26], cgan[:, 23:26, 24:27] = 5.0, 3.0  # both: a lesion
    cgan[:, 36:40, 8:12] = 8.5  # cGAN only (a cyst the FCN knows is cold)
    assert unconfirmed(fcn, cgan, 2.5)[1, 10, 32] and not unconfirmed(fcn, cgan, 2.5)[1, 24, 24]
    either = blend(fcn, cgan, hot_mask="fcn_veto_cgan")
    assert either[1, 10, 32] > 3.0  # the FCN alone still decides there
    both = blend(fcn, cgan, hot_mask="fcn_and_cgan")
    assert both[1, 10, 32] < 2.5 and both[1, 38, 10] < 2.5
    assert both[1, 24, 24] > 4.0  # the FCN's value where both agree
    np.testing.assert_allclose(both[1, 24, 24], either[1, 24, 24], atol=0.01)
    assert abs(both[1, 2, 2] - 1.8) < 0.01  # the cold picture is the cGAN's
    near = cgan.copy()
    near[:, 23:26, 24:27] = 1.8
    assert blend(fcn, near, hot_mask="fcn_and_cgan")[1, 24, 24] < 2.5  # unconfirmed now
    near[:, 27, 24] = 3.0  # the cGAN hot 2 voxels beside the FCN region still confirms it
    assert blend(fcn, near, hot_mask="fcn_and_cgan")[1, 24, 24] > 3.5
