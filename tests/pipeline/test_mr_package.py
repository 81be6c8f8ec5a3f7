"""The shipped demo-mr-pet package: loads, and on a fresh phantom (a seed it never saw) gives
the amyloid pattern its T1 carries: cerebellar reference ~1 SUVR, white matter above cortex
above CSF, and hot cortex clearly above normal cortex (the regions come from the phantom)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.models.package import DEMO_MR_PACKAGE, default_package, load_package
from training.evaluate_mr import regional_suvr
from training.ganbert.data import pair_from_dicom
from training.phantoms.brain import BrainCaseInfo, make_brain_case

# Not in training (seeds 0..31), validation (100000..100003) or the held-out set (200000..).
# Chosen on the phantom's truth only (an amyloid-negative scan with a hot region large enough
# to hold > 20 cortex voxels on the 4 mm grid), never on the model's output.
FRESH_SEED = 777_003


@pytest.fixture(scope="module")
def package():
    return load_package(default_package("MR"))


def test_shipped_mr_package_manifest(package):
    m = package.manifest
    assert package.path == DEMO_MR_PACKAGE and package.modality == "MR"
    assert package.units == "SUVR" and m["demonstration"] is True
    assert "synthetic" in m["description"] and m["training"]["command"].startswith("vpet train")
    assert (DEMO_MR_PACKAGE / "model.safetensors").stat().st_size < 10 * 2**20


@pytest.fixture(scope="module")
def regions(package, tmp_path_factory):
    case = make_brain_case(tmp_path_factory.mktemp("fresh"), FRESH_SEED, shape=(128, 128, 128))
    pair = pair_from_dicom(case.mr_paths, case.pet_paths, package.spacing_mm,
                           BrainCaseInfo.reference_mask)
    pred = package.predict(pair.mr)
    assert pred.shape == pair.mr.shape and np.isfinite(pred).all()
    # predict() returns the package's output frame; regional_suvr reads the last frame
    return regional_suvr(pair, pred[None] if pred.ndim == 3 else pred, case.to_json())


def test_fresh_phantom_is_a_fair_probe(regions):
    assert "hot_cortex_true" in regions, regions  # enough hot grey-matter voxels
    assert regions["hot_cortex_true"] - regions["cortex_true"] > 0.2, regions


def test_cerebellar_reference_about_one(regions):
    assert 0.85 < regions["cerebellum_pred"] < 1.15, regions


def test_tissue_order_as_in_truth(regions):
    r = regions
    assert r["wm_true"] > r["cortex_true"] > r["csf_true"]  # amyloid-negative AV45 pattern
    assert r["wm_pred"] > r["cortex_pred"] + 0.1, r
    assert r["cortex_pred"] > r["csf_pred"] + 0.1, r


def test_hot_cortex_above_normal_cortex_and_reference(regions):
    # The 0.1.0 package failed even the last line (hot cortex 0.85 < cerebellum 0.93 SUVR).
    # 0.2.0 reaches about a third of the true hot-spot contrast on held-out phantoms (see its
    # manifest); a visible hot spot means: at least 0.1 SUVR and a quarter of the truth.
    r = regions
    true_contrast = r["hot_cortex_true"] - r["cortex_true"]
    pred_contrast = r["hot_cortex_pred"] - r["cortex_pred"]
    assert pred_contrast > max(0.1, 0.25 * true_contrast), r
    assert r["hot_cortex_pred"] > r["cerebellum_pred"] + 0.1, r
