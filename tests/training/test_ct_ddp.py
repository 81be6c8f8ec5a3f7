"""Multi-process training with torchrun (DDP): the same code path as multi-GPU, run on CPU with
the gloo backend; both ranks join and train, rank 0 alone writes a package that loads and says
how to repeat the run. CT (FCN-4s, pix2pix) and MR (GANBERT, caching its DICOM pairs from both
ranks at once)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.models.package import load_package
from training.phantoms.make import make_phantoms


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], cwd) -> tuple[int, list[str], str]:
    """(exit status, each rank's stdout + stderr, torchrun's own output). Each rank writes to
    its own files (--redirects 3): on a shared pipe two ranks' lines can interleave."""
    logs = Path(cwd) / f"torchrun-logs-{len(list(Path(cwd).glob('torchrun-logs-*')))}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node",
           "2", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "--log-dir", str(logs), "--redirects", "3", "-m", "dicom_node.cli", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    ranks = []
    for rank in ("0", "1"):
        files = sorted(p for p in logs.rglob("*.log") if p.parent.name == rank)
        ranks.append("".join(p.read_text(errors="replace") for p in files))
    return done.returncode, ranks, done.stdout + done.stderr


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    make_phantoms(root / "data", 2, seed=41, ct_shape=(8, 48, 48), n_lesions=1,
                  kinds=("hypodense",), diameter_range_mm=(24, 28))
    return root


@pytest.mark.parametrize("net, extra", [
    ("fcn", ["--width", "0.0625", "--fc-channels", "8", "--negative-p", "0.2",
             "--negative-studies", "1", "--positive-p", "0.25"]),
    ("pix2pix", ["--ngf", "4", "--ndf", "4", "--num-downs", "5", "--max-minutes", "5"]),
])
def test_torchrun_two_processes_train_one_package(data, net, extra):
    out = data / f"{net}-ddp"
    status, (rank0, rank1), launcher = _torchrun(
        ["train", net, "--data", str(data / "data"), "--out", str(out), "--context", "3",
         "--epochs", "2", "--batch", "2", "--spacing", "8", "--threads", "1", "--seed", "1",
         *extra], cwd=data)
    assert status == 0, (launcher[-2000:], rank0[-2000:], rank1[-2000:])
    assert "DDP rank 0/2" in rank0 and "DDP rank 1/2" in rank1, (rank0[-2000:], rank1[-2000:])
    assert "epoch 2/2" in rank0 and "epoch 2/2" in rank1  # both ranks trained both epochs
    assert "model package written to" in rank0
    assert "model package written to" not in rank1  # rank 0 only
    pkg = load_package(out)
    training = pkg.manifest["training"]
    assert training["processes"] == 2
    assert training["command"].startswith(
        f"torchrun --nproc_per_node 2 -m dicom_node.cli train {net} --data")
    pred = pkg.predict(np.full((4, 24, 24), 50.0, np.float32))
    assert pred.shape == (4, 24, 24) and np.isfinite(pred).all()


def test_torchrun_two_processes_train_ganbert_from_dicom(tmp_path):
    brains = tmp_path / "brains"
    make_phantoms(brains, 2, seed=5, kind="brain", shape=(16, 16, 16))
    status, (rank0, rank1), launcher = _torchrun(
        ["train", "ganbert", "--data", str(brains), "--out", str(tmp_path / "run"), "--tiny",
         "--steps", "2", "--device", "cpu"], cwd=tmp_path)
    assert status == 0, (launcher[-2000:], rank0[-2000:], rank1[-2000:])
    assert "model package written to" in rank0
    assert "model package written to" not in rank1  # rank 0 only
    assert sorted(p.name for p in (tmp_path / "run" / "pairs").iterdir()) == \
        ["pair_0000.npz", "pair_0001.npz"]  # no half-written temporary left behind
    pkg = load_package(tmp_path / "run" / "package")
    assert pkg.manifest["training"]["processes"] == 2
