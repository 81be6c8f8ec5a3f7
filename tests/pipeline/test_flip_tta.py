"""Flip test-time augmentation of the 2.5-D CT networks (`predict_slices(flip_tta=True)`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.models.fcn import build_fcn4s
from pipeline.models.predictors import predict_members, predict_slices


def _lopsided_net() -> nn.Module:
    """A net whose answer depends on orientation: a one-sided 3x3 kernel (not flip-equivariant)."""
    net = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        net.weight.zero_()
        net.weight[0, 0, 0, 0], net.weight[0, 0, 1, 2] = 1.0, 0.5
    return net.eval()


def _run(net, x, tta):
    return predict_slices(net, x, context=1, scale=1.0, device="cpu", flip_tta=tta)


def test_flip_tta_makes_the_prediction_flip_equivariant():
    x = np.random.default_rng(0).normal(size=(3, 20, 26)).astype(np.float32)
    net = _lopsided_net()
    for dims in ((2,), (1,), (1, 2)):
        flipped = np.ascontiguousarray(np.flip(x, dims))
        plain = np.flip(_run(net, flipped, False), dims)
        assert not np.allclose(plain, _run(net, x, False), atol=1e-3)  # the net is lopsided
        averaged = np.flip(_run(net, flipped, True), dims)
        np.testing.assert_allclose(averaged, _run(net, x, True), atol=1e-5)


def test_flip_tta_is_the_mean_of_the_four_flipped_predictions():
    x = np.random.default_rng(1).normal(size=(2, 16, 16)).astype(np.float32)
    net = _lopsided_net()
    by_hand = np.mean([np.flip(_run(net, np.ascontiguousarray(np.flip(x, d)), False), d)
                       for d in ((), (2,), (1,), (1, 2))], axis=0)
    np.testing.assert_allclose(_run(net, x, True), by_hand, atol=1e-5)


def test_blend_member_flag_switches_tta_per_member():
    torch.manual_seed(0)
    fcn = build_fcn4s({"width": 1 / 16, "fc_channels": 8}).eval()
    with torch.no_grad():
        for p in fcn.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # score layers start at zero: make it answer
    nets = nn.ModuleDict({"fcn": fcn, "cgan": _lopsided_net()})
    member = {"params": {"in_channels": 1}, "scale": 20.0}
    manifest = {"input": {"normalization": {"kind": "ct_window", "low": -160, "high": 240}},
                "architecture": {"members": {"fcn": dict(member), "cgan": dict(member)}}}
    ct = np.random.default_rng(2).normal(40, 30, (2, 40, 44)).astype(np.float32)
    plain = predict_members(nets, ct, manifest, "cpu")
    manifest["architecture"]["members"]["fcn"]["flip_tta"] = True
    tta = predict_members(nets, ct, manifest, "cpu")
    np.testing.assert_array_equal(tta["cgan"], plain["cgan"])
    assert not np.allclose(tta["fcn"], plain["fcn"])
