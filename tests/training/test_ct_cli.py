"""`vpet train fcn | pix2pix | blend` on two tiny phantoms write packages the pipeline loads;
`evaluate_ct` reports FCN, cGAN and blend rows with finite metrics and a montage."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dicom_node.cli import app
from pipeline.models.package import BLEND, load_package
from training.evaluate_ct import evaluate_ct
from training.phantoms.make import make_phantoms

TINY = ["--epochs", "1", "--batch", "2", "--spacing", "8", "--threads", "1", "--seed", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct-cli")
    make_phantoms(root / "data", 2, seed=41, ct_shape=(8, 48, 48), n_lesions=1,
                  kinds=("hypodense",), diameter_range_mm=(24, 28))
    runner = CliRunner()
    fcn = runner.invoke(app, ["train", "fcn", "--data", str(root / "data"), "--out",
                              str(root / "fcn"), "--width", "0.0625", "--fc-channels", "8",
                              "--context", "3", "--loss", "plain", "--average-last", "2",
                              "--workers", "2", "--max-minutes", "30", "--cache-dir",
                              str(root / "cache"), *TINY])
    assert fcn.exit_code == 0, fcn.output
    cgan = runner.invoke(app, ["train", "pix2pix", "--data", str(root / "data"), "--out",
                               str(root / "cgan"), "--ngf", "4", "--ndf", "4", "--num-downs", "5",
                               "--context", "3", "--negative-p", "0.2", "--negative-studies", "1",
                               "--positive-p", "0.25",
                               "--aug-noise-hu", "3", "--aug-noise-grain", "16",
                               "--no-antialias", *TINY])
    assert cgan.exit_code == 0, cgan.output
    again = runner.invoke(app, ["train", "pix2pix", "--data", str(root / "data"), "--out",
                                 str(root / "cgan-aa"), "--ngf", "4", "--ndf", "4",
                                 "--num-downs", "5", "--context", "3", "--init",
                                 str(root / "cgan"), "--lr", "1e-9", *TINY])  # fine-tuned copy
    assert again.exit_code == 0, again.output
    blend = runner.invoke(app, ["train", "blend", "--fcn", str(root / "fcn"), "--cgan",
                                str(root / "cgan-aa"), "--out", str(root / "blend"),
                                "--flip-tta", "fcn"])
    assert blend.exit_code == 0, blend.output
    return root


def test_train_commands_write_loadable_packages(trained):
    fcn, cgan = load_package(trained / "fcn"), load_package(trained / "cgan")
    assert fcn.manifest["architecture"]["name"] == "fcn4s"
    assert cgan.manifest["architecture"]["name"] == "pix2pix_unet"
    assert fcn.manifest["training"]["config"]["weighted"] is False  # --loss plain
    assert cgan.manifest["training"]["config"]["weighted"] is True
    assert cgan.manifest["training"]["config"]["negative_studies"] == 1
    assert cgan.manifest["training"]["config"]["positive_p"] == 0.25
    assert cgan.manifest["training"]["config"]["augment"] == {"noise_hu": 3.0,
                                                              "noise_grain_px": 2.0}  # 16 mm / 8
    assert cgan.manifest["input"]["antialias"] is False and cgan.antialias is False
    assert fcn.manifest["input"]["antialias"] is True and fcn.antialias is True
    assert fcn.manifest["training"]["config"]["average_last"] == 2
    assert fcn.manifest["training"]["config"]["workers"] == 2
    assert fcn.manifest["training"]["config"]["max_minutes"] == 30.0
    assert len(list((trained / "cache").glob("*.npz"))) == 2  # the shared pair cache
    assert fcn.manifest["metrics"]["averaged_epochs"] == [1]  # one epoch trained so far
    assert fcn.manifest["training"]["command"].startswith("vpet train fcn --data")
    assert fcn.manifest["training"]["processes"] == 1
    assert "--loss plain" in fcn.manifest["training"]["command"]
    blend = load_package(trained / "blend")
    assert blend.manifest["architecture"]["name"] == BLEND
    assert blend.antialias is True
    members = blend.manifest["architecture"]["members"]
    assert members["fcn"]["flip_tta"] is True and members["cgan"]["flip_tta"] is False
    tuned = load_package(trained / "cgan-aa").manifest["training"]["config"]
    assert tuned["init"] == str(trained / "cgan")
    assert blend.spacing_mm == (8.0, 8.0, 8.0)
    out = blend.predict(np.full((4, 20, 18), 50.0, np.float32))
    assert out.shape == (4, 20, 18) and np.isfinite(out).all()


def test_blend_options_reach_the_manifest(trained, tmp_path):
    result = CliRunner().invoke(app, ["train", "blend", "--fcn", str(trained / "fcn"), "--cgan",
                                      str(trained / "cgan-aa"), "--out", str(tmp_path / "b"),
                                      "--hot-mask", "fcn_veto_cgan", "--dilate", "1"])
    assert result.exit_code == 0, result.output
    pkg = load_package(tmp_path / "b")
    assert pkg.manifest["architecture"]["hot_mask"] == "fcn_veto_cgan"
    assert pkg.manifest["architecture"]["dilate"] == 1
    assert np.isfinite(pkg.predict(np.full((4, 20, 18), 50.0, np.float32))).all()
    bad = CliRunner().invoke(app, ["train", "blend", "--fcn", str(trained / "fcn"), "--cgan",
                                   str(trained / "cgan-aa"), "--out", str(tmp_path / "c"),
                                   "--hot-mask", "cgan"])
    assert bad.exit_code == 2 and "unknown hot mask" in bad.output


def test_init_from_another_architecture_is_refused(trained, tmp_path):
    result = CliRunner().invoke(app, ["train", "fcn", "--data", str(trained / "data"), "--out",
                                      str(tmp_path / "f"), "--init", str(trained / "cgan"),
                                      "--width", "0.0625", "--fc-channels", "8", *TINY])
    assert result.exit_code == 2 and "holds pix2pix_unet, not fcn4s" in result.output


def test_validation_folder_without_studies_is_refused(trained, tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["train", "fcn", "--data", str(trained / "data"), "--out",
                                      str(tmp_path / "x"), "--val-data", str(tmp_path / "empty"),
                                      "--width", "0.0625", "--fc-channels", "8", *TINY])
    assert result.exit_code == 2
    assert "no paired PET/CT studies under the validation data" in result.output


def test_noise_augmentation_without_augmentation_is_refused(trained, tmp_path):
    result = CliRunner().invoke(app, ["train", "pix2pix", "--data", str(trained / "data"),
                                      "--out", str(tmp_path / "g"), "--no-augment",
                                      "--aug-noise-hu", "3", *TINY])
    assert result.exit_code == 2
    assert "--aug-noise-hu and --aug-noise-grain need the augmentation" in result.output
    assert not (tmp_path / "g").exists()
    grain = CliRunner().invoke(app, ["train", "fcn", "--data", str(trained / "data"), "--out",
                                     str(tmp_path / "f"), "--no-augment", "--aug-noise-grain",
                                     "4", "--width", "0.0625", "--fc-channels", "8", *TINY])
    assert grain.exit_code == 2 and "need the augmentation" in grain.output
    assert not (tmp_path / "f").exists()
    negative = CliRunner().invoke(app, ["train", "fcn", "--data", str(trained / "data"), "--out",
                                        str(tmp_path / "f"), "--aug-noise-grain", "-1", *TINY])
    assert negative.exit_code == 2 and not (tmp_path / "f").exists()


def test_blend_refuses_members_with_other_inputs(trained, tmp_path):
    """The cGAN trained --no-antialias expects other input than the antialiased FCN."""
    result = CliRunner().invoke(app, ["train", "blend", "--fcn", str(trained / "fcn"), "--cgan",
                                      str(trained / "cgan"), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "differ in input" in result.output


def test_blend_refuses_swapped_members(trained, tmp_path):
    result = CliRunner().invoke(app, ["train", "blend", "--fcn", str(trained / "cgan"), "--cgan",
                                      str(trained / "fcn"), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "expected 'fcn4s'" in result.output


def test_evaluate_ct_reports_three_methods(trained, tmp_path):
    report = evaluate_ct(trained / "blend", trained / "data", tmp_path / "report")
    assert list(report["overall"]) == ["fcn", "cgan", "blend"]
    for row in report["overall"].values():
        assert row["cases"] == 2 and row["lesions_hot_in_pet"] >= 1
        for key in ("mae", "rmse", "psnr", "ssim", "false_positives_per_case"):
            assert math.isfinite(row[key]), key
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved["lesion_truth"] == "phantom cases.json"
    for case in saved["per_case"]["blend"]:  # each network's SUVmax at a blend false positive
        assert all({"fcn_suvmax", "cgan_suvmax"} <= set(f) for f in case["fp_regions"])
    assert all("cgan_suvmax" not in f for c in saved["per_case"]["fcn"] for f in c["fp_regions"])
    lesions = [les for c in saved["per_case"]["blend"] for les in c["lesions"]]
    assert lesions and all({"fcn_suvmax", "cgan_suvmax"} <= set(les) for les in lesions)
    assert "| blend |" in (tmp_path / "report" / "report.md").read_text()
    with Image.open(tmp_path / "report" / "montage.png") as img:
        assert img.width == 5 * 160  # CT | real PET | FCN | cGAN | blend


def test_evaluate_command_dispatches_ct(trained, tmp_path):
    result = CliRunner().invoke(app, ["evaluate", "--model", str(trained / "fcn"), "--data",
                                      str(trained / "data"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert list(json.loads((tmp_path / "r" / "report.json").read_text())["overall"]) == ["fcn4s"]
    assert '"lesion_tpr":' in result.output and '"false_positives_per_case":' in result.output


def test_extra_ct_window_reaches_the_package_and_its_predictions(trained, tmp_path):
    args = ["train", "fcn", "--data", str(trained / "data"), "--width", "0.0625",
            "--fc-channels", "8", "--context", "3", "--init", str(trained / "fcn"), *TINY]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "w"),
                                      "--extra-window", "0,120", "--lr", "1e-9",
                                      "--input-lr-factor", "10"])
    assert result.exit_code == 0, result.output
    windowed, source = load_package(tmp_path / "w"), load_package(trained / "fcn")
    params = windowed.manifest["architecture"]["params"]
    assert params["extra_windows"] == [[0.0, 120.0]] and params["input_window"] == [-160.0, 240.0]
    assert windowed.manifest["training"]["config"]["input_lr_factor"] == 10.0
    ct = np.random.default_rng(3).normal(55.0, 20.0, (5, 40, 40)).astype(np.float32)
    np.testing.assert_allclose(windowed.predict(ct), source.predict(ct), atol=1e-3)  # starts equal
    bad = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b"), "--extra-window", "0,500"])
    assert bad.exit_code == 2 and "not inside -160,240 HU" in bad.output
    odd = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o"), "--extra-window", "120"])
    assert odd.exit_code == 2 and "is not LOW,HIGH in HU" in odd.output
    assert not (tmp_path / "o").exists()
    slower = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "n"), "--input-lr-factor", "-1"])
    assert slower.exit_code == 2 and "--input-lr-factor" in slower.output
    assert not (tmp_path / "n").exists()
    assert not (tmp_path / "b").exists()
    gan = CliRunner().invoke(app, ["train", "pix2pix", "--data", str(trained / "data"), "--out",
                                   str(tmp_path / "g"), "--ngf", "4", "--ndf", "4",
                                   "--num-downs", "5", "--context", "3", "--extra-window",
                                   "-5,145", *TINY])
    assert gan.exit_code == 0, gan.output
    generator = load_package(tmp_path / "g")
    assert generator.manifest["architecture"]["params"]["extra_windows"] == [[-5.0, 145.0]]
    assert np.isfinite(generator.predict(ct)).all()
