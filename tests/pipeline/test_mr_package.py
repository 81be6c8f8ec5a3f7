"""The shipped demo-mr-pet package: loads, and on a fresh phantom (a seed it never saw) gives
cortical SUVR above the cerebellar reference (~1) in an amyloid-positive case."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.models.package import DEMO_MR_PACKAGE, default_package, load_package
from training.ganbert.data import pair_from_dicom
from training.phantoms.anatomy import Grid
from training.phantoms.brain import GM, BrainCaseInfo, make_brain_case, paint_labels

FRESH_SEED = 777_001  # amyloid-positive; training used seeds 0..7, validation 100000..100001


@pytest.fixture(scope="module")
def package():
    return load_package(default_package("MR"))


def test_shipped_mr_package_manifest(package):
    m = package.manifest
    assert package.path == DEMO_MR_PACKAGE and package.modality == "MR"
    assert package.units == "SUVR" and m["demonstration"] is True
    assert "synthetic" in m["description"] and m["training"]["command"].startswith("vpet train")
    assert (DEMO_MR_PACKAGE / "model.safetensors").stat().st_size < 5 * 2**20


def test_cortex_above_cerebellum_on_fresh_phantom(package, tmp_path):
    case = make_brain_case(tmp_path, FRESH_SEED, shape=(48, 48, 48))
    pair = pair_from_dicom(case.mr_paths, case.pet_paths, package.spacing_mm,
                           BrainCaseInfo.reference_mask)
    grid = Grid(pair.origin, pair.spacing, pair.mr.shape)
    cortex = paint_labels(grid, np.random.default_rng(FRESH_SEED)) == GM
    ref = BrainCaseInfo.reference_mask(grid)
    assert pair.pet[-1][cortex].mean() > 1.2  # the case is amyloid-positive
    pred = package.predict(pair.mr)
    assert pred.shape == pair.mr.shape and np.isfinite(pred).all()
    cortex_suvr, ref_suvr = float(pred[cortex].mean()), float(pred[ref].mean())
    assert 0.6 < ref_suvr < 1.4, ref_suvr
    assert cortex_suvr > ref_suvr + 0.1, (cortex_suvr, ref_suvr)
