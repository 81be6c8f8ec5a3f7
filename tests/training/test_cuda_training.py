"""GPU-only: the CT trainers under bf16 autocast on CUDA, and the training benchmark.

Skipped without a CUDA device (CI has none); run on a GPU machine with
`python -m pytest tests/training/test_cuda_training.py`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pipeline.models.package import load_package
from tests.training.test_ct_trainers import data  # noqa: F401 - the same two tiny studies
from training.bench_train import bench_train
from training.ct_trainers import TrainConfig, train_fcn, train_pix2pix
from training.pairs import load_pairs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
SPACING = (8.0, 8.0, 8.0)


@pytest.mark.parametrize(("trainer", "net"), [
    (train_fcn, {"width": 1 / 16, "fc_channels": 8, "batch_norm": True}),
    (train_pix2pix, {"num_downs": 5, "ngf": 4, "ndf": 4}),
])
def test_bf16_training_on_cuda_writes_fp32_package(data, tmp_path, trainer, net):  # noqa: F811
    cfg = TrainConfig(data=data, out=tmp_path / "pkg", work_dir=tmp_path / "work", epochs=2,
                      spacing_mm=SPACING, batch_size=4, crop=32, samples_per_epoch=16,
                      progress=False, device="cuda", amp=True, net=net, workers=2)
    trainer(cfg)
    weights = load_file(str(tmp_path / "pkg" / "model.safetensors"))
    assert all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())
    history = json.loads((tmp_path / "pkg" / "manifest.json").read_text())["training"]["history"]
    assert len(history) == 2 and all(np.isfinite(h["val_mae"]) for h in history)
    package = load_package(tmp_path / "pkg", device="cuda")
    pair = load_pairs(data, SPACING, tmp_path / "work" / "pairs-cache")[0]
    out = package.predict(pair.ct)
    assert out.shape == pair.ct.shape and np.isfinite(out).all()


@pytest.mark.parametrize("network", ["fcn", "pix2pix"])
def test_bench_train_bf16_and_fp32_on_cuda(network):
    net = {"width": 0.25} if network == "fcn" else {"ngf": 16, "num_downs": 5}
    for amp in (True, False):
        rate = bench_train(network, 64, 4, 3, "cuda", amp=amp, channels_last=amp, net=net)
        assert rate > 0
