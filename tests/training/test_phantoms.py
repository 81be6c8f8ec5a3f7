"""Phantom studies are valid DICOM, PET and CT share study/FoR on different grids."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from pipeline.series import load_series
from pipeline.suv import series_suv_factor
from tests.conftest import dciodvfy_errors
from training.phantoms.abdomen import make_case, make_ct_only
from training.phantoms.make import make_phantoms

TINY = (16, 64, 64)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return make_case(tmp_path_factory.mktemp("phantom"), 7, ct_shape=TINY, n_lesions=2,
                     kinds=("hypodense",), diameter_range_mm=(18, 24))


def test_dciodvfy_clean(case):
    assert dciodvfy_errors(case.ct_paths[0]) == []
    assert dciodvfy_errors(case.pet_paths[0]) == []


def test_study_and_frame_shared_grids_differ(case):
    ct = pydicom.dcmread(case.ct_paths[0])
    pt = pydicom.dcmread(case.pet_paths[0])
    assert ct.StudyInstanceUID == pt.StudyInstanceUID == case.study_uid
    assert ct.FrameOfReferenceUID == pt.FrameOfReferenceUID
    assert ct.SeriesInstanceUID != pt.SeriesInstanceUID
    assert list(ct.PixelSpacing) != list(pt.PixelSpacing)
    assert list(ct.ImagePositionPatient) != list(pt.ImagePositionPatient)
    assert (ct.Rows, len(case.ct_paths)) == (64, 16)


def test_pet_needs_computed_suv(case):
    pt = [pydicom.dcmread(p) for p in case.pet_paths]
    assert pt[0].Units == "BQML" and pt[0].DecayCorrection == "START"
    assert {"ATTN", "DECY"} <= set(pt[0].CorrectedImage)
    slopes = {float(ds.RescaleSlope) for ds in pt}
    assert len(slopes) > 1  # per-slice rescale
    factor = series_suv_factor(pt)
    assert 1e-5 < factor < 1e-3  # Bq/ml, not SUV
    vol = load_series(case.pet_paths)
    suv = vol.array() * factor
    liver = case.liver_point_mm
    idx = vol.image.TransformPhysicalPointToIndex(liver)
    assert 1.2 < suv[idx[2], idx[1], idx[0]] < 2.8


def test_lesions_in_liver_and_hypodense(case):
    assert len(case.lesions) == 2 and all(les.hot for les in case.lesions)
    ct = load_series(case.ct_paths)
    hu = ct.array()
    for les in case.lesions:
        i = ct.image.TransformPhysicalPointToIndex(les.centre_mm)
        assert 0 <= hu[i[2], i[1], i[0]] <= 70
        assert 3 <= les.suv_max <= 15


def test_ct_only_and_make_phantoms(tmp_path):
    info = make_ct_only(tmp_path / "ct", 3, ct_shape=(4, 32, 32))
    assert info.pet_dir is None and info.pet_paths == [] and len(info.ct_paths) == 4
    infos = make_phantoms(tmp_path / "set", 2, seed=11, ct_shape=(4, 32, 32))
    assert [c.seed for c in infos] == [11, 12]
    assert (tmp_path / "set" / "cases.json").is_file()


def test_parallel_generation_writes_the_same_cases(tmp_path):
    one = make_phantoms(tmp_path / "one", 3, seed=40, ct_shape=(4, 32, 32))
    two = make_phantoms(tmp_path / "two", 3, seed=40, ct_shape=(4, 32, 32), workers=2)
    assert [c.lesions for c in one] == [c.lesions for c in two]
    assert [c.study_uid for c in one] == [c.study_uid for c in two]
    for a, b in zip(one, two, strict=True):
        assert np.array_equal(pydicom.dcmread(a.ct_paths[2]).pixel_array,
                              pydicom.dcmread(b.ct_paths[2]).pixel_array)


def test_generation_is_seeded(tmp_path):
    a = make_case(tmp_path / "a", 5, ct_shape=(4, 32, 32))
    b = make_case(tmp_path / "b", 5, ct_shape=(4, 32, 32))
    assert a.lesions == b.lesions
    pa, pb = pydicom.dcmread(a.pet_paths[0]), pydicom.dcmread(b.pet_paths[0])
    assert np.array_equal(pa.pixel_array, pb.pixel_array)


def test_confounders_and_lesion_free_cases(tmp_path):
    cyst = make_case(tmp_path / "c", 9, ct_shape=(16, 64, 64), n_lesions=2, kinds=("cyst",),
                     diameter_range_mm=(20, 24))
    assert cyst.lesions and all(not les.hot for les in cyst.lesions)
    assert all(-5 <= les.hu <= 10 and les.suv_max <= 1.2 for les in cyst.lesions)
    iso = make_case(tmp_path / "i", 9, ct_shape=(16, 64, 64), n_lesions=1, kinds=("isodense",),
                    diameter_range_mm=(20, 24))
    assert iso.lesions[0].hot and iso.lesions[0].suv_max >= 3
    counts = [len(make_ct_only(tmp_path / f"s{s}", s, ct_shape=(4, 32, 32)).lesions)
              for s in range(12)]
    assert 0 in counts and max(counts) >= 2  # lesion-free cases occur for some seeds


def _core_and_rim_hu(case) -> list[tuple[float, float]]:
    """Mean CT HU of each lesion's core (r < 0.5 R) and of its rim shell (0.75 R < r < R)."""
    ct = load_series(case.ct_paths)
    hu = ct.array()
    z, y, x = np.indices(hu.shape)
    origin, spacing = np.array(ct.image.GetOrigin()), np.array(ct.image.GetSpacing())
    out = []
    for les in case.lesions:
        c = (np.array(les.centre_mm) - origin) / spacing
        rn = np.sqrt(((x - c[0]) * spacing[0]) ** 2 + ((y - c[1]) * spacing[1]) ** 2
                     + ((z - c[2]) * spacing[2]) ** 2) / (les.diameter_mm / 2)
        out.append((float(hu[rn < 0.5].mean()), float(hu[(rn > 0.75) & (rn < 0.95)].mean())))
    return out


def test_flat_lesions_and_other_noise_keep_the_same_draws(tmp_path):
    """--no-lesion-rims / --ct-noise: the same seed gives the same lesions, now flat (no rim)
    and with the CT noise asked for, so a generality check changes one thing only."""
    kw = {"ct_shape": (40, 128, 128), "n_lesions": 1, "kinds": ("hypodense",),
          "diameter_range_mm": (26, 30), "ct_noise_hu": (0.0, 0.0)}
    rim = make_case(tmp_path / "rim", 11, **kw)
    flat = make_case(tmp_path / "flat", 11, lesion_rims=False, **kw)
    assert [les.centre_mm for les in rim.lesions] == [les.centre_mm for les in flat.lesions]
    assert rim.lesions[0].rim and not flat.lesions[0].rim
    (core, shell), = _core_and_rim_hu(rim)
    assert shell - core > 8  # the enhancing rim (+15 HU at r > 0.7 R)
    (core, shell), = _core_and_rim_hu(flat)
    assert abs(shell - core) < 2 and abs(core - flat.lesions[0].hu) < 2
    ct = load_series(flat.ct_paths).array()
    ref = flat.liver_point_mm
    noisy = make_case(tmp_path / "noisy", 11, **{**kw, "ct_noise_hu": (12.0, 12.0)})
    vol = load_series(noisy.ct_paths)
    i = vol.image.TransformPhysicalPointToIndex(ref)
    patch = (vol.array() - ct)[i[2], i[1] - 4:i[1] + 4, i[0] - 4:i[0] + 4]
    assert 8 < patch.std() < 16  # only the noise differs, at the sigma asked for


def test_correlated_noise_keeps_sigma_anatomy_and_pet(tmp_path):
    """--ct-noise-grain: the same draws filtered in-plane, so the same seed keeps its lesions and
    PET, the per-voxel sigma stays the one asked for, and neighbours now correlate."""
    kw = {"ct_shape": (8, 64, 64), "n_lesions": 1, "kinds": ("hypodense",),
          "ct_noise_hu": (10.0, 10.0)}
    white = make_case(tmp_path / "white", 13, **kw)
    grain = make_case(tmp_path / "grain", 13, ct_noise_grain_mm=20.0, **kw)  # ~3 px at 64 px
    flat = make_case(tmp_path / "flat", 13, **{**kw, "ct_noise_hu": (0.0, 0.0)})
    assert white.lesions == grain.lesions
    pet = [pydicom.dcmread(c.pet_paths[0]).pixel_array for c in (white, grain)]
    assert np.array_equal(*pet)  # the PET's own noise draws come after the CT's, unchanged
    base = load_series(flat.ct_paths).array()
    for case, low, high in ((white, -0.15, 0.15), (grain, 0.6, 0.95)):
        noise = (load_series(case.ct_paths).array() - base)[:, 2:14, 2:14]  # air, no clipping
        assert 8.5 < noise.std() < 11.5
        lag1 = np.corrcoef(noise[:, :, :-1].ravel(), noise[:, :, 1:].ravel())[0, 1]
        assert low < lag1 < high, lag1
