"""A tiny training run writes a loadable package; the shipped demo package sees lesions."""

from __future__ import annotations

import numpy as np

from pipeline.models.package import DEMO_PACKAGE, load_package
from training.pairs import build_pair
from training.phantoms.abdomen import make_case
from training.train_demo import DemoConfig, train_demo


def test_one_epoch_tiny_run_gives_loadable_package(tmp_path):
    cfg = DemoConfig(ct_shape=(8, 48, 48), val_cases=1, spacing_mm=(8.0, 8.0, 6.0), base=4,
                     depth=2, batch_size=4, crop=None)
    metrics = train_demo(tmp_path / "pkg", cases=2, epochs=1, seed=3, work_dir=tmp_path / "w",
                         config=cfg)
    assert {"mae_suv_body", "rmse_suv_body", "lesion_tpr", "false_positives_per_case"} <= set(
        metrics)
    package = load_package(tmp_path / "pkg")
    assert package.manifest["demonstration"] is True
    assert package.units == "SUVbw" and package.modality == "CT"
    assert package.spacing_mm == (8.0, 8.0, 6.0)
    out = package.predict(np.full((5, 30, 27), 50.0, np.float32))
    assert out.shape == (5, 30, 27) and np.isfinite(out).all() and (out >= 0).all()


def test_shipped_demo_package_makes_lesion_hotter_than_liver(tmp_path):
    """On four fresh phantoms (seeds never used for training or validation) the lesion is
    hotter than the liver in every case, by > 0.5 SUV on average; one case alone is too fragile
    a check for a small demonstration model on the varied phantom generator."""
    package = load_package()
    assert package.manifest["name"] == "demo-ct-pet" and package.manifest["demonstration"]
    assert "not for clinical use" in package.manifest["description"].lower()
    margins = []
    for seed in range(987_654, 987_658):
        info = make_case(tmp_path / str(seed), seed, ct_shape=(24, 160, 160), n_lesions=1,
                         kinds=("hypodense",), diameter_range_mm=(22, 26))
        pair = build_pair(info.ct_paths, info.pet_paths, package.spacing_mm)
        pred = package.predict(pair.ct)
        assert pred.shape == pair.ct.shape
        z, y, x = pair.index_of(info.lesions[0].centre_mm)
        lz, ly, lx = pair.index_of(info.liver_point_mm)
        lesion = pred[max(z - 1, 0) : z + 2, y - 1 : y + 2, x - 1 : x + 2].max()
        liver = pred[lz, ly - 1 : ly + 2, lx - 1 : lx + 2].mean()
        assert 1.0 < liver < 3.0
        margins.append(float(lesion - liver))
    assert min(margins) > 0.0 and float(np.mean(margins)) > 0.5, margins


def test_shipped_package_manifest_states_metrics_and_commands():
    import json

    manifest = json.loads((DEMO_PACKAGE / "manifest.json").read_text())
    assert manifest["name"] == "demo-ct-pet" and manifest["demonstration"] is True
    assert "not for clinical use" in manifest["description"].lower()
    training = manifest["training"]
    commands = training.get("commands") or [training["command"]]
    assert commands and any(("vpet train" in c or "train_demo" in c) for c in commands)
    held = manifest["metrics"]["held_out_phantoms"]
    rows = held.values() if manifest["architecture"]["name"] == "blend_fcn_cgan" else [held]
    for row in rows:
        assert row["cases"] >= 8 and 0.0 <= row["lesion_tpr"] <= 1.0
        assert row["false_positives_per_case"] >= 0.0
    assert (DEMO_PACKAGE / "model.safetensors").stat().st_size < 8_000_000
