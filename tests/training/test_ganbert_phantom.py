"""Brain phantoms: valid DICOM, PET on its own grid with two frames, SUVR 1 in the cerebellum."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from pipeline.series import load_series
from pipeline.suv import to_suv
from tests.conftest import dciodvfy_errors
from training.ganbert.data import find_brain_studies, pair_from_dicom
from training.phantoms.anatomy import Grid
from training.phantoms.brain import BrainCaseInfo, make_brain_case


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return make_brain_case(tmp_path_factory.mktemp("brain"), 4, shape=(48, 48, 48))


def test_dciodvfy_clean(case):
    assert dciodvfy_errors(case.mr_paths[0]) == []
    assert dciodvfy_errors(case.pet_paths[0][0]) == []
    assert dciodvfy_errors(case.pet_paths[1][-1]) == []


def test_two_frames_on_own_grid(case):
    mr = pydicom.dcmread(case.mr_paths[0])
    frames = [pydicom.dcmread(p[0]) for p in case.pet_paths]
    assert len(case.pet_paths) == 2 and len(case.mr_paths) == 48
    assert mr.Modality == "MR" and {f.Modality for f in frames} == {"PT"}
    assert len({f.SeriesInstanceUID for f in frames}) == 2
    assert {f.FrameOfReferenceUID for f in frames} == {mr.FrameOfReferenceUID}
    assert float(frames[0].PixelSpacing[0]) == pytest.approx(2 * float(mr.PixelSpacing[0]), 1e-4)
    assert list(frames[0].ImagePositionPatient) != list(mr.ImagePositionPatient)
    assert float(frames[1].FrameReferenceTime) > float(frames[0].FrameReferenceTime)
    assert frames[0].Units == "BQML"


def test_cerebellum_suvr_about_one_and_hot_cortex(case):
    for files in case.pet_paths:
        vol = load_series(files)
        suv = to_suv(vol.datasets, vol.array())
        grid = Grid(vol.image.GetOrigin(), vol.image.GetSpacing(), suv.shape)
        ref = BrainCaseInfo.reference_mask(grid)
        suvr = suv / float(suv[ref].mean())
        assert ref.sum() > 10
        assert 0.8 < float(suv[ref].mean()) / case.reference_suv < 1.2
        assert suvr.max() > 1.3  # white matter / hot cortex above the reference


def test_mr_tissue_values_and_seeded(case, tmp_path):
    mr = load_series(case.mr_paths).array()
    assert 130 < np.percentile(mr, 99) < 200  # white matter ~154 with bias and noise
    again = make_brain_case(tmp_path, 4, shape=(16, 16, 16))
    other = make_brain_case(tmp_path / "b", 4, shape=(16, 16, 16))
    a, b = (pydicom.dcmread(c.pet_paths[0][3]).pixel_array for c in (again, other))
    assert np.array_equal(a, b)


def test_pairs_from_folder(case):
    studies = find_brain_studies(case.mr_dir.parent)
    assert len(studies) == 1 and len(studies[0][1]) == 2
    pair = pair_from_dicom(studies[0][0], studies[0][1], (10.0, 10.0, 10.0),
                           BrainCaseInfo.reference_mask)
    assert pair.pet.shape[0] == 2 and pair.pet.shape[1:] == pair.mr.shape
    assert np.isfinite(pair.pet).all()


def _mr_on_own_grid(case):
    vol = load_series(case.mr_paths)
    return vol.array(), Grid(vol.image.GetOrigin(), vol.image.GetSpacing(), vol.array().shape)


@pytest.mark.parametrize("tracer", ["amyloid", "fdg"])
def test_hot_cortex_has_an_mr_correlate_for_amyloid_only(tmp_path, tracer):
    from training.phantoms.brain import GM, hot_weight

    case = make_brain_case(tmp_path, 777_003, shape=(64, 64, 64), tracer=tracer)
    mr, grid = _mr_on_own_grid(case)
    labels = case.labels(grid)
    hot = hot_weight(grid, case.hot_regions) > 0
    gm_hot, gm = mr[(labels == GM) & hot].mean(), mr[(labels == GM) & ~hot].mean()
    if tracer == "amyloid":
        assert gm_hot > 1.05 * gm  # brighter, less grey/white-contrasted cortex
    else:
        assert abs(gm_hot / gm - 1) < 0.04


def test_atrophy_widens_sulci_and_ventricles():
    from training.phantoms.brain import CSF, GM, WM, paint_labels

    grid = Grid((-127.0, -127.0, -127.0), (4.0, 4.0, 4.0), (64, 64, 64))
    before, after = (paint_labels(grid, np.random.default_rng(5), a) for a in (0, 1))
    tissue = np.isin(before, (GM, WM))
    assert ((before == CSF) & (after != CSF)).sum() == 0  # atrophy only adds CSF
    assert (tissue & (after == CSF)).sum() > 0.01 * tissue.sum()  # ~1.3% of GM+WM lost
