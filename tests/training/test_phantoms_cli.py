"""`vpet phantoms make` generality variants (flat lesions, other CT noise) from the command line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from dicom_node.cli import app
from training.evaluate_ct import _phantom_cases

runner = CliRunner()


def test_abdomen_variants_from_the_command_line(tmp_path):
    ok = runner.invoke(app, ["phantoms", "make", "--cases", "1", "--seed", "3", "--shape",
                             "8,48,48", "--no-lesion-rims", "--ct-noise", "1,2", "--out",
                             str(tmp_path / "flat")])
    assert ok.exit_code == 0, ok.output
    cases = json.loads((tmp_path / "flat" / "cases.json").read_text())
    assert cases[0]["lesions"] and all(not les["rim"] for les in cases[0]["lesions"])
    lesions, _ = _phantom_cases(tmp_path / "flat")  # what vpet evaluate reads back
    rims = [les.rim for les in lesions[cases[0]["study_uid"]]]
    assert rims == [False] * len(cases[0]["lesions"])
    bad = runner.invoke(app, ["phantoms", "make", "--ct-noise", "5", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "LOW,HIGH" in bad.output
    for text in ("5,1", "-2,3"):  # reversed or negative sigma: refused before anything is written
        bad = runner.invoke(app, ["phantoms", "make", "--ct-noise", text, "--out",
                                  str(tmp_path / "bad")])
        assert bad.exit_code == 2 and "0 <= LOW <= HIGH" in bad.output
        assert not (tmp_path / "bad").exists()
    brain = runner.invoke(app, ["phantoms", "make", "--kind", "brain", "--no-lesion-rims",
                                "--out", str(tmp_path / "b")])
    assert brain.exit_code == 2 and "abdomen" in brain.output


def test_correlated_noise_from_the_command_line(tmp_path):
    ok = runner.invoke(app, ["phantoms", "make", "--cases", "1", "--seed", "3", "--shape",
                             "8,48,48", "--ct-noise-grain", "2.5", "--out", str(tmp_path / "g")])
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "g" / "cases.json").read_text())[0]["seed"] == 3
    bad = runner.invoke(app, ["phantoms", "make", "--ct-noise-grain", "-1", "--out",
                              str(tmp_path / "bad")])
    assert bad.exit_code == 2 and not (tmp_path / "bad").exists()
    brain = runner.invoke(app, ["phantoms", "make", "--kind", "brain", "--ct-noise-grain", "2",
                                "--out", str(tmp_path / "b")])
    assert brain.exit_code == 2 and "abdomen" in brain.output
