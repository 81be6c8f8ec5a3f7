"""training/gpu_lease/run_ct.sh, the prepared GPU-lease run, on CPU at toy size.

Why: a lease is 15 minutes in all, so the script must work the first time it meets a GPU. The
same script with tiny sizes here checks every step (phantoms, both trainers from the shipped
package inflated to 7 slices and the liver window, the plain-loss tail, what comes back in $OUT)
and that a broken step ends non-zero, naming its log.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import typer.main
from typer.testing import CliRunner

from dicom_node.cli import app
from pipeline.models.package import load_package
from pipeline.models.predictors import normalize, predict_slices

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "training" / "gpu_lease" / "run_ct.sh"
TOY = {"DEVICE": "cpu", "WORKERS": "1", "TOTAL_MINUTES": "1.5", "SAMPLES": "8",
       "PLAIN_SAMPLES": "8", "BATCH": "4", "CROP": "32", "TRAIN_SETS": "2:0:8,48,48",
       "VAL_SET": "1:50000:8,48,48", "PYTHON": sys.executable}


def _run(tmp_path: Path, **extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "out"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # the script sets log width
    env.update(TOY, OUT=str(out), WORK=str(tmp_path / "work"), **extra)
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True,
                          check=False, timeout=420)
    return done, out


def test_the_lease_script_trains_both_networks_and_returns_their_packages(tmp_path):
    done, out = _run(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["cgan", "cgan.log", "fcn.log", "fcnp",
                                                     "fcnp.log"]
    ct = np.random.default_rng(0).normal(40, 10, (9, 64, 64)).astype(np.float32)
    for name, arch in (("fcnp", "fcn4s"), ("cgan", "pix2pix_unet")):
        manifest = json.loads((out / name / "manifest.json").read_text())
        assert manifest["architecture"]["name"] == arch
        params = manifest["architecture"]["params"]
        assert params["in_channels"] == 7 and params["extra_windows"] == [[-5.0, 145.0]]
        augment = manifest["training"]["config"]["augment"]  # correlated noise, 5 mm / 2 mm
        assert augment == {"noise_hu": 10.0, "noise_grain_px": 2.5}
        assert manifest["training"]["history"], "no epoch was recorded"
        pkg = load_package(out / name)
        x = normalize(ct, pkg.manifest["input"]["normalization"])
        pred = predict_slices(pkg.network, x, context=7, scale=1.0, device="cpu")
        assert pred.shape == ct.shape and np.isfinite(pred).all()
    training = json.loads((out / "fcnp" / "manifest.json").read_text())["training"]
    assert training["config"]["init"] == str(tmp_path / "work" / "fcn")  # the plain tail
    # the recorded command repeats the run: the window (a value starting with '-') re-parses
    words = shlex.split(training["command"])
    assert words[:3] == ["vpet", "train", "fcn"] and "--extra-window=-5,145" in words
    fcn_command = typer.main.get_command(app).commands["train"].commands["fcn"]
    replay = fcn_command.make_context("fcn", words[3:])  # parses only, runs nothing
    assert replay.params["extra_window"] == ["-5,145"]
    assert replay.params["init"] == tmp_path / "work" / "fcn" and replay.params["epochs"] == 2
    # after the lease, here: the two packages blend as 0.4.2's do, and the blend runs
    blend = CliRunner().invoke(app, ["train", "blend", "--fcn", str(out / "fcnp"), "--cgan",
                                     str(out / "cgan"), "--hot-mask", "fcn_and_cgan",
                                     "--flip-tta", "fcn", "--out", str(tmp_path / "blend")])
    assert blend.exit_code == 0, blend.output
    pred = load_package(tmp_path / "blend").predict(ct)
    assert pred.shape == ct.shape and np.isfinite(pred).all()


def test_a_broken_step_fails_the_script_and_names_its_log(tmp_path):
    done, out = _run(tmp_path, INIT=str(tmp_path / "no-such-package"))
    assert done.returncode != 0
    assert "FCN failed" in done.stdout and "cGAN failed" in done.stdout
    log = (out / "fcn.log").read_text()
    assert "Invalid value for '--init'" in log and "no-such-package' does not exist" in log
    assert not (out / "fcnp").exists() and not (out / "cgan").exists()
