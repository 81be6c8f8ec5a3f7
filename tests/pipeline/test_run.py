"""End to end: DICOM files + a real (untrained) tiny package -> DICOM outputs and a preview."""

from __future__ import annotations

import dataclasses

import numpy as np
import pydicom
import pytest
from PIL import Image

from pipeline.errors import InputError
from pipeline.models.package import load_package
from pipeline.preview import write_preview
from pipeline.runner import run
from pipeline.types import Recipe
from tests.conftest import dciodvfy_errors, make_tiny_ct
from tests.pipeline.conftest import make_package

RECIPE = Recipe(name="ct-to-pet", modality="CT", lesion_threshold=0.0, min_lesion_volume_ml=0.0,
                max_lesions=3)


@pytest.fixture
def files(tmp_path):
    return make_tiny_ct(tmp_path / "ct", shape=(6, 32, 32))


def test_run_end_to_end_is_deterministic(files, tmp_path):
    pkg = make_package(tmp_path / "pkg")
    recipe = dataclasses.replace(RECIPE, model=pkg)
    # threshold 0: the untrained softplus network is positive everywhere -> at least one lesion
    result = run(files, tmp_path / "out1", recipe=recipe)
    assert {o.kind for o in result.outputs} == {"pm", "sc", "sc_grey", "seg", "sr"}
    assert result.lesions and result.units == "SUVbw" and result.model_version == "test-0.1"
    assert set(result.timings) >= {"load", "resample", "infer", "detect", "encode", "preview"}
    assert result.preview_png is not None and result.preview_png.is_file()
    src = pydicom.dcmread(files[0], stop_before_pixels=True)
    for out in result.outputs:
        assert out.path.name == f"{out.kind}.dcm"
        ds = pydicom.dcmread(out.path, stop_before_pixels=True)
        assert ds.StudyInstanceUID == src.StudyInstanceUID
        if out.kind in ("pm", "seg"):
            assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID
        assert dciodvfy_errors(out.path) == []
    model = load_package(pkg)
    again = run(list(reversed(files)), tmp_path / "out2", recipe=recipe, model=model, preview=False)
    assert [o.sop_instance_uid for o in again.outputs] == [o.sop_instance_uid for o in result.outputs]
    assert again.preview_png is None


def test_run_refuses_wrong_modality(files, tmp_path):
    model = load_package(make_package(tmp_path / "pkg"))
    with pytest.raises(InputError, match="accepts MR"):
        run(files, tmp_path / "out", recipe=dataclasses.replace(RECIPE, modality="MR"), model=model)


def test_run_without_lesions_writes_no_seg(files, tmp_path):
    model = load_package(make_package(tmp_path / "pkg"))
    recipe = dataclasses.replace(RECIPE, lesion_threshold=1e6, outputs=("pm", "seg", "sr"))
    result = run(files, tmp_path / "out", recipe=recipe, model=model, preview=False)
    assert result.lesions == [] and {o.kind for o in result.outputs} == {"pm", "sr"}


def test_preview_png(tmp_path):
    base = np.zeros((4, 20, 30), np.float32)
    suv = np.zeros_like(base)
    suv[1, 5:9, 5:9] = 6.0  # lesion slice 1 + middle slice 2
    labels = (suv > 2.5).astype(np.int32)
    path = write_preview(base, suv, labels, tmp_path / "p.png")
    with Image.open(path) as img:
        assert img.mode == "RGB" and img.width * 2 * 20 == img.height * 3 * 30  # 2 rows x 3 panels


def test_package_level_run_stays_callable(tmp_path):
    import pipeline

    for _ in range(2):  # the package-level wrapper works on every call
        with pytest.raises(InputError, match="at least one"):
            pipeline.run([], tmp_path, recipe=RECIPE)
