"""`vpet phantoms make --kind brain`, `vpet train ganbert --tiny`, `vpet evaluate` (MR) and
`vpet bench train ganbert` through typer's CliRunner, on tiny data."""

from __future__ import annotations

import json
import math

import pydicom
import pytest
from typer.testing import CliRunner

from dicom_node.cli import app
from pipeline.models.package import load_package
from tests.conftest import dciodvfy_errors

runner = CliRunner()


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


@pytest.fixture(scope="module")
def brains(tmp_path_factory):
    out = tmp_path_factory.mktemp("brains")
    _ok(["phantoms", "make", "--kind", "brain", "--cases", "2", "--seed", "5", "--shape",
         "16,16,16", "--out", str(out)])
    return out


def test_phantoms_make_brain_writes_valid_dicom(brains):
    cases = json.loads((brains / "cases.json").read_text())
    assert len(cases) == 2 and cases[0]["tracer"] == "amyloid"
    mr = sorted((brains / "case_000" / "MR").iterdir())
    pet = sorted((brains / "case_000" / "PT1").iterdir())
    assert pydicom.dcmread(mr[0]).Modality == "MR" and pydicom.dcmread(pet[0]).Modality == "PT"
    assert dciodvfy_errors(mr[0]) == [] and dciodvfy_errors(pet[0]) == []


def test_unknown_phantom_kind_is_refused(tmp_path):
    result = runner.invoke(app, ["phantoms", "make", "--kind", "knee", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "knee" in result.output


@pytest.fixture(scope="module")
def package(brains, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    _ok(["train", "ganbert", "--data", str(brains), "--out", str(run), "--tiny", "--steps", "2",
         "--device", "cpu"])
    return run / "package"


def test_train_ganbert_tiny_writes_loadable_package(package):
    pkg = load_package(package)
    assert pkg.modality == "MR" and pkg.units == "SUVR"
    assert pkg.manifest["training"]["steps"] == 2


def test_train_pix2pix3d_tiny_tanh(brains, tmp_path):
    _ok(["train", "pix2pix3d", "--data", str(brains), "--out", str(tmp_path), "--tiny",
         "--steps", "1", "--activation", "tanh", "--device", "cpu"])
    assert load_package(tmp_path / "package").manifest["architecture"]["params"][
        "activation"] == "tanh"


def test_evaluate_mr_writes_report(package, brains, tmp_path):
    _ok(["evaluate", "--model", str(package), "--data", str(brains), "--out", str(tmp_path),
         "--device", "cpu"])
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["cases"]) == 2
    assert all(math.isfinite(v) for v in report["mean"].values())
    assert "PSNR" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "histogram.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "montage.png").read_bytes()[:4] == b"\x89PNG"
    # phantoms carry cases.json: regional SUVR (true / predicted) per case, by study UID
    assert len(report["regional_suvr"]) == 2
    assert {r["seed"] for r in report["regional_suvr"]} == {5, 6}
    assert all(math.isfinite(v) for v in report["regional_mean"].values())


def test_bench_train_ganbert_prints_numbers():
    out = _ok(["bench", "train", "ganbert", "--size", "32", "--steps", "1", "--bert", "tiny",
               "--base", "4", "--depth", "2", "--accum", "1", "--device", "cpu"])
    assert "steps/s" in out and "ru_maxrss" in out
