"""GANBERT / pix2pix-3D training path: tiny runs write a package the generator rebuilds from."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from pipeline.models.unet3d import build_unet3d, predict_mr_to_pet
from training.ganbert.data import phantom_pairs
from training.ganbert.metrics import image_metrics
from training.ganbert.normalization import MrStats, normalize_pet, restore_pet
from training.ganbert.runtime import warmup_linear
from training.ganbert.trainer import TrainConfig, train


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ganbert-data")
    phantom_pairs(root, 2, 0, (16, 16, 16), (16.0, 16.0, 16.0))
    return root


def _cfg(tmp_path, data_dir, **kw) -> TrainConfig:
    return TrainConfig(out=tmp_path / "run", data=data_dir, tiny=True, progress=False, **kw)


def test_tiny_ganbert_writes_loadable_package_and_resumes(tmp_path, data_dir):
    metrics = train(_cfg(tmp_path, data_dir, steps=2))
    assert metrics["steps"] == 2 and np.isfinite(metrics["final_losses"]["l1"])
    assert {"d_nsp", "d_mlm", "g_nsp", "g_mlm", "l1"} <= set(metrics["final_losses"])
    pkg = tmp_path / "run" / "package"
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert manifest["architecture"]["name"] == "unet3d"
    assert manifest["input"]["modality"] == "MR"
    assert manifest["input"]["normalization"]["kind"] == "mr_zscore_paper"
    assert manifest["output"] == {**manifest["output"], "units": "SUVR", "time_steps": 2}
    net = build_unet3d(manifest["architecture"]["params"])
    net.load_state_dict(load_file(str(pkg / "model.safetensors")))
    out = predict_mr_to_pet(net.eval(), np.random.rand(12, 16, 20).astype(np.float32) * 100)
    assert out.shape == (2, 12, 16, 20) and np.isfinite(out).all()
    assert (tmp_path / "run" / "loss_curves.png").stat().st_size > 0
    again = train(_cfg(tmp_path, data_dir, steps=3))
    assert again["steps"] == 3


def test_tiny_pix2pix3d_tanh(tmp_path, data_dir):
    metrics = train(_cfg(tmp_path, data_dir, steps=1, method="pix2pix3d", activation="tanh"))
    assert {"d_cnn", "g_cnn", "l1"} <= set(metrics["final_losses"])


def test_normalization_roundtrip_and_schedule():
    mr = np.random.default_rng(0).uniform(0, 150, (4, 4, 4)).astype(np.float32)
    stats = MrStats.of(mr)
    pet = np.array([0.0, 1.0, 2.5], np.float32)
    assert np.allclose(restore_pet(normalize_pet(pet, stats), stats), pet, atol=1e-5)
    f = warmup_linear(100, 0.05)
    assert f(0) == pytest.approx(0.2) and f(4) == 1.0 and f(99) < 0.02


def test_image_metrics():
    t = np.random.default_rng(1).uniform(0, 3, (2, 8, 8, 8))
    same = image_metrics(t, t)
    assert same["rmse"] == 0 and same["ssim"] == pytest.approx(1.0)
    worse = image_metrics(t + 0.5, t)
    assert worse["rmse"] == pytest.approx(0.5) and np.isfinite(worse["psnr"])


def test_l1_warm_start_and_crops_are_recorded(tmp_path, data_dir):
    metrics = train(_cfg(tmp_path, data_dir, steps=2, l1_warmup_steps=3, crop=8))
    assert metrics["steps"] == 2 and metrics["l1_warmup_steps"] == 3
    assert np.isfinite(metrics["final_losses"]["warm_l1"])
    manifest = json.loads((tmp_path / "run" / "package" / "manifest.json").read_text())
    assert manifest["training"]["l1_warmup_steps"] == 3 and manifest["training"]["crop"] == 8
    assert manifest["architecture"]["params"]["tile"] == 8  # inference on crop-sized windows
    net = build_unet3d(manifest["architecture"]["params"])
    assert net.tile == 8
