"""training.ct_noise: correlated CT noise keeps unit variance and is white below a pixel."""

from __future__ import annotations

import numpy as np

from training.ct_noise import correlated


def _lag1(noise: np.ndarray) -> float:
    return float(np.corrcoef(noise[..., :-1].ravel(), noise[..., 1:].ravel())[0, 1])


def test_correlated_noise_keeps_unit_variance_and_correlates_in_plane_only():
    white = np.random.default_rng(0).standard_normal((6, 96, 96)).astype(np.float32)
    grain = correlated(white, 4.0)
    assert grain.dtype == np.float32 and grain.shape == white.shape
    assert abs(float(grain.std()) - 1.0) < 1e-3
    assert _lag1(grain) > 0.8 and abs(_lag1(white)) < 0.05
    across = np.corrcoef(grain[:-1].ravel(), grain[1:].ravel())[0, 1]
    assert abs(across) < 0.05  # slices stay independent: the blur is in-plane
    assert correlated(white, 0.5) is white  # narrower than a pixel: left white
