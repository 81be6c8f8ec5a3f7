"""Patient and study modules are copied faithfully, character set included, into every output."""

from __future__ import annotations

import dataclasses

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from pipeline.runner import detect_and_encode, run
from pipeline.series import load_series
from pipeline.types import Recipe
from tests.conftest import dciodvfy_errors, make_tiny_ct
from tests.pipeline.conftest import make_package
from training.phantoms.dicom_writer import StudyInfo


@pytest.mark.parametrize(("charset", "name"), [("ISO_IR 192", "Müller^Zoë=山田^太郎"),
                                               ("ISO_IR 100", "Gonçalves^Anaïs")])
def test_non_ascii_patient_name_round_trips(tmp_path, charset, name):
    files = make_tiny_ct(tmp_path / "ct", shape=(4, 24, 24), study=StudyInfo(patient_name=name),
                         extra={"SpecificCharacterSet": charset, "StudyDescription": "Étude"})
    volume = load_series(files)
    suv = np.ones(volume.array().shape, np.float32)
    suv[2, 8:12, 8:12] = 6.0
    recipe = Recipe(name="ct", modality="CT", min_lesion_volume_ml=0.0)
    outputs, *_ = detect_and_encode(volume, suv, recipe, tmp_path / "out", {}, model_version="t",
                                    units="SUVbw")
    assert {o.kind for o in outputs} == {"pm", "sc", "sc_grey", "seg", "sr"}
    for out in outputs:
        ds = pydicom.dcmread(out.path)
        assert ds.SpecificCharacterSet == charset, out.kind
        assert str(ds.PatientName) == name, out.kind
        assert ds.StudyDescription == "Étude", out.kind
        assert dciodvfy_errors(out.path) == [], out.kind


def test_reference_region_gives_suvr(tmp_path):
    files = make_tiny_ct(tmp_path / "ct", shape=(6, 32, 32))
    volume = load_series(files)
    labels = np.zeros(volume.array().shape, np.int16)
    labels[:, :4, :4] = 3
    ref = sitk.GetImageFromArray(labels)
    ref.CopyInformation(volume.image)
    path = tmp_path / "ref.nrrd"
    sitk.WriteImage(ref, str(path))
    recipe = Recipe(name="ct", modality="CT", model=make_package(tmp_path / "pkg"),
                    reference_region=path, reference_label=3, lesion_threshold=1e6)
    result = run(files, tmp_path / "out", recipe=dataclasses.replace(recipe, outputs=("pm",)),
                 preview=False)
    assert result.units == "SUVR"
    pm = pydicom.dcmread(result.outputs[0].path)
    rwvm = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert rwvm.LUTLabel == "SUVR"
    assert float(pm.pixel_array[:, :4, :4].mean()) == pytest.approx(1.0, rel=1e-3)
