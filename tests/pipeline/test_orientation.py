"""A CT stored feet-first, prone or sagittal gets the same virtual PET as the same patient
stored head-first supine: the networks always see the anatomy in the orientation they learned."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from pipeline.models.package import default_package, load_package
from pipeline.resample import resample_onto
from pipeline.runner import run, synthesize
from pipeline.series import Volume
from pipeline.types import Recipe
from tests.conftest import dciodvfy_errors
from tests.pipeline.conftest import reoriented, sphere
from training.phantoms.dicom_writer import StudyInfo, write_series


@pytest.fixture(scope="module")
def ct_model():
    return load_package(default_package("CT"))


def _abdomen() -> sitk.Image:
    """A small asymmetric abdomen: body, a liver on the patient's right with a hypodense lesion."""
    shape = (16, 56, 64)
    arr = np.full(shape, -1000.0, np.float32)
    y, x = np.ogrid[:shape[1], :shape[2]]
    arr[:, ((y - 28) / 24.0) ** 2 + ((x - 32) / 30.0) ** 2 <= 1] = 40.0
    arr[:, ((y - 24) / 12.0) ** 2 + ((x - 20) / 14.0) ** 2 <= 1] = 58.0
    arr[sphere(shape, (8, 24, 18), 3)] = 25.0
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((2.0, 2.0, 2.5))
    img.SetOrigin((-64.0, -40.0, 100.0))
    return img


def _volume(image: sitk.Image) -> Volume:
    return Volume(image=image, datasets=[], modality="CT", series_uid="1.2.3",
                  study_uid="1.2", frame_of_reference_uid="1.2.4")


def test_the_networks_are_not_mirror_symmetric(ct_model):
    """Why the model grid must be canonical: a mirrored input gives another picture."""
    arr = sitk.GetArrayFromImage(_abdomen())
    plain = ct_model.predict(arr)
    mirrored = ct_model.predict(np.ascontiguousarray(arr[:, ::-1, :]))[:, ::-1, :]
    assert np.abs(plain - mirrored).max() > 0.05


@pytest.mark.parametrize(("flip", "order"), [((True, False, True), (0, 1, 2)),  # feet first
                                             ((True, True, False), (0, 1, 2)),  # prone
                                             ((False, True, True), (1, 2, 0))])  # sagittal
def test_stored_orientation_does_not_change_the_virtual_pet(ct_model, flip, order):
    src = _abdomen()
    moved = reoriented(src, flip, order)
    want = synthesize(_volume(src), ct_model, {})
    got_img = sitk.GetImageFromArray(synthesize(_volume(moved), ct_model, {}))
    got_img.CopyInformation(moved)  # the output is on the stored grid, in its orientation
    got = sitk.GetArrayFromImage(resample_onto(got_img, src, 0.0))
    assert want.max() > 1.0  # the comparison is about a real picture
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_a_prone_dicom_series_gets_the_same_outputs_on_its_own_pixels(ct_model, tmp_path):
    """End to end through DICOM: the same patient written head-first supine and prone
    (rows to the patient's right, columns anterior): every output frame of the prone run is
    the supine one with its pixels in the prone order, and the objects stay valid."""
    hu = sitk.GetArrayFromImage(_abdomen())
    hu[7:10, 22:27, 16:21] = 20.0  # a lesion-like spot so that SEG and SR have content
    stored = np.rint(hu + 1024).astype(np.int16)
    ny, nx = stored.shape[1:]
    origin = np.array([-64.0, -40.0, 100.0])
    supine = write_series(stored, (2.0, 2.0, 2.5), tuple(origin), tmp_path / "hfs",
                          modality="CT", study=StudyInfo(), rescale=(1.0, -1024.0))
    prone_origin = origin + np.array([(nx - 1) * 2.0, (ny - 1) * 2.0, 0.0])
    prone = write_series(np.ascontiguousarray(stored[:, ::-1, ::-1]), (2.0, 2.0, 2.5),
                         tuple(prone_origin), tmp_path / "hfp", modality="CT",
                         study=StudyInfo(), rescale=(1.0, -1024.0),
                         direction=(-1, 0, 0, 0, -1, 0), series_number=3)
    recipe = Recipe(name="ct-to-pet", modality="CT", lesion_threshold=1.5,
                    min_lesion_volume_ml=0.0)
    a = run(supine, tmp_path / "out_hfs", recipe=recipe, model=ct_model, preview=False)
    b = run(prone, tmp_path / "out_hfp", recipe=recipe, model=ct_model, preview=False)
    pm_a, pm_b = (pydicom.dcmread(next(o.path for o in r.outputs if o.kind == "pm"))
                  for r in (a, b))
    assert list(pm_b.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
                .ImageOrientationPatient) == [-1, 0, 0, 0, -1, 0]
    assert pm_a.pixel_array.max() > 1.0
    np.testing.assert_allclose(pm_b.pixel_array[:, ::-1, ::-1], pm_a.pixel_array, atol=1e-3)
    assert len(a.lesions) == len(b.lesions) >= 1
    for output in b.outputs:
        assert dciodvfy_errors(output.path) == [], output.kind
