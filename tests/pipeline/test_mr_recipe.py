"""The mr-to-pet recipe through `pipeline.run` on a tiny brain phantom MR series (SUVR outputs)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
import torch

from pipeline.errors import ModelError
from pipeline.models.package import DEMO_MR_PACKAGE, DEMO_PACKAGE, default_package, save_package
from pipeline.models.unet3d import UNet3D
from pipeline.runner import run
from pipeline.types import Recipe
from tests.conftest import dciodvfy_errors
from tests.pipeline.conftest import make_package
from training.ganbert.normalization import NORMALIZATION
from training.phantoms.brain import make_brain_case


def make_mr_package(out: Path) -> Path:
    """An untrained tiny GANBERT generator package (MR in, SUVR out, 2 time-steps)."""
    torch.manual_seed(0)
    params = {"in_channels": 1, "out_channels": 2, "base": 2, "depth": 1}
    manifest = {"name": "tiny-mr", "version": "test-mr-0.1",
                "architecture": {"name": "unet3d", "params": params},
                "input": {"modality": "MR", "spacing_mm": [16.0, 16.0, 16.0],
                          "normalization": dict(NORMALIZATION)},
                "output": {"units": "SUVR", "time_steps": 2}}
    return save_package(out, UNet3D(**params), manifest)


@pytest.fixture(scope="module")
def brain_mr(tmp_path_factory) -> list[Path]:
    return make_brain_case(tmp_path_factory.mktemp("brain"), 11, shape=(16, 24, 24)).mr_paths


def _recipe(model: Path, **kw) -> Recipe:
    return Recipe(name="mr-to-pet", modality="MR", model=model, units="SUVR", **kw)


def test_mr_recipe_writes_suvr_outputs_that_pass_dciodvfy(tmp_path, brain_mr):
    pkg = make_mr_package(tmp_path / "pkg")
    # untrained: roughly uniform SUVR; a low threshold and no size cap force one region (SEG)
    recipe = _recipe(pkg, lesion_threshold=0.01, max_lesion_volume_ml=1e9)
    result = run(brain_mr, tmp_path / "out", recipe=recipe, preview=False)
    kinds = {o.kind: o for o in result.outputs}
    assert {"pm", "sc", "seg", "sr"} <= set(kinds) and result.units == "SUVR"
    assert result.lesions
    pm = pydicom.dcmread(kinds["pm"].path)
    rwvm = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert rwvm.LUTLabel == "SUVR"
    assert rwvm.MeasurementUnitsCodeSequence[0].CodeValue == "{ratio}"  # UCUM
    assert pm.FrameOfReferenceUID == pydicom.dcmread(brain_mr[0]).FrameOfReferenceUID
    for out in result.outputs:
        assert dciodvfy_errors(out.path) == [], out.kind


def test_no_regions_above_threshold_still_gives_pm_sc_sr(tmp_path, brain_mr):
    pkg = make_mr_package(tmp_path / "pkg")
    result = run(brain_mr, tmp_path / "out", recipe=_recipe(pkg, lesion_threshold=1e6),
                 preview=False)
    assert {"pm", "sc", "sr"} <= {o.kind for o in result.outputs} and not result.lesions


def test_ct_package_on_mr_series_is_refused(tmp_path, brain_mr):
    ct_pkg = make_package(tmp_path / "ct")
    with pytest.raises(ModelError, match="takes CT input.*is MR"):
        run(brain_mr, tmp_path / "out", recipe=_recipe(ct_pkg), preview=False)


def test_default_package_per_modality():
    assert default_package("CT") == DEMO_PACKAGE and default_package("mr") == DEMO_MR_PACKAGE
    with pytest.raises(ModelError, match="no shipped model package"):
        default_package("XA")
