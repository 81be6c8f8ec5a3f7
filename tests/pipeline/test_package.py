"""Model packages of every architecture family load from safetensors + manifest and predict."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.errors import ModelError
from pipeline.models import load_package, save_package
from pipeline.models.package import BLEND, build_network

CT_INPUT = {"modality": "CT", "normalization": {"kind": "ct_window", "low": -160, "high": 240},
            "spacing_mm": [4.0, 4.0, 4.0]}
FCN = {"name": "fcn4s", "params": {"in_channels": 1, "width": 0.125, "fc_channels": 16},
       "scale": 20.0}
CGAN = {"name": "pix2pix_unet", "params": {"in_channels": 1, "out_channels": 1, "num_downs": 5,
                                           "ngf": 4}, "scale": 20.0}


def _manifest(architecture: dict, inputs: dict = CT_INPUT, units: str = "SUVbw") -> dict:
    return {"name": "t", "version": "0.0.1", "architecture": architecture, "input": inputs,
            "output": {"units": units, "scale": 20.0}}


def test_blended_fcn_cgan_package_round_trip(tmp_path):
    manifest = _manifest({"name": BLEND, "members": {"fcn": FCN, "cgan": CGAN},
                          "threshold": 2.5, "levels": 3})
    torch.manual_seed(0)
    network = build_network(manifest["architecture"])
    save_package(tmp_path / "pkg", network, manifest)
    package = load_package(tmp_path / "pkg")
    volume = np.random.default_rng(0).normal(40, 30, (3, 40, 36)).astype(np.float32)
    out = package.predict(volume)
    assert out.shape == volume.shape and np.isfinite(out).all()
    again = load_package(tmp_path / "pkg").predict(volume)
    np.testing.assert_allclose(out, again, rtol=1e-5, atol=1e-5)  # weights restored exactly


def test_loaded_2d_networks_run_channels_last_with_the_same_answer(tmp_path):
    manifest = _manifest({"name": BLEND, "members": {"fcn": FCN, "cgan": CGAN},
                          "threshold": 2.5, "levels": 3})
    torch.manual_seed(1)
    save_package(tmp_path / "pkg", build_network(manifest["architecture"]), manifest)
    package = load_package(tmp_path / "pkg")
    convs = [m.weight for m in package.network.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert any(not w.is_contiguous() for w in convs)  # (1x1 or 1-channel kernels are both)
    volume = np.random.default_rng(1).normal(40, 30, (3, 40, 36)).astype(np.float32)
    fast = package.predict(volume)
    package.network.to(memory_format=torch.contiguous_format)
    np.testing.assert_allclose(fast, package.predict(volume), rtol=1e-4, atol=1e-4)


def test_blend_needs_both_members():
    with pytest.raises(ModelError, match="members"):
        build_network({"name": BLEND, "members": {"fcn": FCN}})


def test_unet3d_package_reports_one_time_step(tmp_path):
    arch = {"name": "unet3d", "params": {"in_channels": 1, "out_channels": 2, "base": 4,
                                         "depth": 2}}
    inputs = {"modality": "MR", "normalization": {"kind": "mr_zscore_paper"},
              "spacing_mm": [2.0, 2.0, 2.0]}
    manifest = _manifest(arch, inputs, "SUVR")
    save_package(tmp_path / "mr", build_network(arch), manifest)
    out = load_package(tmp_path / "mr").predict(np.random.rand(10, 12, 12).astype(np.float32))
    assert out.shape == (10, 12, 12)


def test_unknown_architecture_is_a_model_error():
    with pytest.raises(ModelError, match="unknown architecture"):
        build_network({"name": "resnet9000"})
