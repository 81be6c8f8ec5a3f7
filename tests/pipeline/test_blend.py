"""Laplacian-pyramid blending of FCN and cGAN outputs (paper 000, section 2.5)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.blend import blend, collapse, laplacian_pyramid, pyramid_blend


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
