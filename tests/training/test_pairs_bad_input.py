"""A study that cannot be paired is left out with its reason; the rest still train and evaluate,
a folder with nothing usable says why, and a study edited after caching is paired again."""

from __future__ import annotations

import json

import pydicom
import pytest
from typer.testing import CliRunner

from dicom_node.cli import app
from training.pairs import Skipped, load_pairs
from training.phantoms.make import make_phantoms

SPACING = (8.0, 8.0, 8.0)


def _strip_suv_tags(study_dir) -> None:
    """PET without (0054,0016): no injected dose or time, so no SUV can be computed."""
    for path in (study_dir / "PT").iterdir():
        ds = pydicom.dcmread(path)
        del ds.RadiopharmaceuticalInformationSequence
        ds.save_as(path)


@pytest.fixture()
def studies(tmp_path):
    make_phantoms(tmp_path / "data", 2, seed=41, ct_shape=(8, 48, 48), n_lesions=1,
                  kinds=("hypodense",), diameter_range_mm=(24, 28))
    _strip_suv_tags(tmp_path / "data" / "case_001")
    return tmp_path


def test_bad_study_skipped_with_reason_rest_loaded(studies):
    skipped: list[Skipped] = []
    pairs = load_pairs(studies / "data", SPACING, skipped=skipped)
    assert len(pairs) == 1 and len(skipped) == 1
    assert skipped[0].source.startswith("study ")
    assert "RadiopharmaceuticalInformationSequence (0054,0016) missing" in skipped[0].reason


def test_truncated_ct_file_skips_its_study_in_worker_processes_too(studies):
    ct = sorted((studies / "data" / "case_000" / "CT").iterdir())[3]
    ct.write_bytes(ct.read_bytes()[:2000])  # header readable, pixel data cut
    skipped: list[Skipped] = []
    assert load_pairs(studies / "data", SPACING, workers=2, skipped=skipped) == []
    assert len(skipped) == 2 and all(s.reason for s in skipped)


def test_evaluate_reports_left_out_study_and_training_names_the_cause(studies):
    runner = CliRunner()
    fcn = runner.invoke(app, ["train", "fcn", "--data", str(studies / "data"), "--out",
                              str(studies / "fcn"), "--width", "0.0625", "--fc-channels", "8",
                              "--epochs", "1", "--batch", "2", "--spacing", "8", "--threads",
                              "1"])
    assert fcn.exit_code == 0, fcn.output  # the good study trains
    ev = runner.invoke(app, ["evaluate", "--model", str(studies / "fcn"), "--data",
                             str(studies / "data"), "--out", str(studies / "report")])
    assert ev.exit_code == 0, ev.output
    report = json.loads((studies / "report" / "report.json").read_text())
    assert report["overall"]["fcn4s"]["cases"] == 1 and len(report["skipped"]) == 1
    assert "Left out (1)" in (studies / "report" / "report.md").read_text()
    _strip_suv_tags(studies / "data" / "case_000")
    again = runner.invoke(app, ["train", "fcn", "--data", str(studies / "data"), "--out",
                                str(studies / "fcn2"), "--epochs", "1", "--spacing", "8"])
    assert again.exit_code == 2 and "skipped 2" in again.output
    assert "(0054,0016) missing" in again.output
    nothing = runner.invoke(app, ["evaluate", "--model", str(studies / "fcn"), "--data",
                                  str(studies / "data"), "--out", str(studies / "r2")])
    assert nothing.exit_code == 2 and "cannot evaluate: no paired PET/CT" in nothing.output
    assert "skipped 2" in nothing.output
    not_pkg = runner.invoke(app, ["evaluate", "--model", str(studies / "data"), "--data",
                                  str(studies / "data"), "--out", str(studies / "r3")])
    assert not_pkg.exit_code == 2 and "not a model package" in not_pkg.output


def test_brain_study_that_cannot_be_paired_is_left_out(tmp_path):
    brains = tmp_path / "brains"
    make_phantoms(brains, 3, seed=5, kind="brain", shape=(16, 16, 16))
    mr = sorted((brains / "case_001" / "MR").iterdir())[5]
    mr.write_bytes(mr.read_bytes()[:1500])  # pixel data cut
    runner = CliRunner()
    run = runner.invoke(app, ["train", "ganbert", "--data", str(brains), "--out",
                              str(tmp_path / "run"), "--tiny", "--steps", "1", "--device", "cpu"])
    assert run.exit_code == 0, run.output  # trained on the study that pairs
    assert len(list((tmp_path / "run" / "pairs").glob("pair_*.npz"))) == 2  # of 3 studies
    ev = runner.invoke(app, ["evaluate", "--model", str(tmp_path / "run" / "package"),
                             "--data", str(brains), "--out", str(tmp_path / "report")])
    assert ev.exit_code == 0, ev.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert len(report["cases"]) == 2 and len(report["skipped"]) == 1
    assert "cannot decode pixel data" in report["skipped"][0]["reason"]
    assert "Left out (1)" in (tmp_path / "report" / "report.md").read_text()
    for case in ("case_000", "case_002"):
        other = sorted((brains / case / "MR").iterdir())[5]
        other.write_bytes(other.read_bytes()[:1500])
    again = runner.invoke(app, ["train", "ganbert", "--data", str(brains), "--out",
                                str(tmp_path / "run2"), "--tiny", "--steps", "1"])
    assert again.exit_code == 2 and "no MR/PET study could be paired (skipped 3" in again.output
