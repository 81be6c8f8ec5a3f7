"""autoPET-layout NIfTI cases (CTres, SUV, SEG) become cached pairs on the model grid."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from training.pairs import find_nifti_cases, load_pairs


def _write(arr: np.ndarray, path, spacing, origin) -> None:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))


def test_nifti_case_resampled_and_cached(tmp_path):
    case = tmp_path / "data" / "PETCT_0001" / "study"
    case.mkdir(parents=True)
    ct = np.full((10, 32, 32), 40.0, np.float32)
    suv = np.full((10, 32, 32), 1.5, np.float32)
    seg = np.zeros((10, 32, 32), np.uint8)
    suv[4:7, 12:18, 12:18], seg[4:7, 12:18, 12:18] = 8.0, 1
    _write(ct, case / "CTres.nii.gz", (2.0, 2.0, 3.0), (-31.0, -31.0, 0.0))
    _write(suv, case / "SUV.nii.gz", (2.0, 2.0, 3.0), (-31.0, -31.0, 0.0))
    _write(seg, case / "SEG.nii.gz", (2.0, 2.0, 3.0), (-31.0, -31.0, 0.0))
    assert find_nifti_cases(tmp_path / "data") == [case]
    pairs = load_pairs(tmp_path / "data", (4.0, 4.0, 6.0), tmp_path / "cache")
    assert len(pairs) == 1
    pair = pairs[0]
    assert pair.spacing == (4.0, 4.0, 6.0) and pair.ct.shape == (6, 17, 17)
    assert pair.suv.shape == pair.seg.shape == pair.ct.shape
    assert abs(pair.suv.max() - 8.0) < 1e-3 and pair.seg.max() == 1
    assert pair.suv[pair.seg > 0].min() > 2.5  # SEG landed on the hot spot
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    again = load_pairs(tmp_path / "data", (4.0, 4.0, 6.0), tmp_path / "cache")[0]
    np.testing.assert_array_equal(again.seg, pair.seg)
    assert again.study_uid == pair.study_uid


def _case(root, name, flip_xy: bool):
    """One patient: a hot lesion on the patient's right-anterior side; written LPS or, as
    NIfTI tools often keep it, with x and y flipped (RAS-like direction (-1, -1, 1))."""
    case = root / name
    case.mkdir(parents=True)
    ct = np.full((8, 24, 28), 40.0, np.float32)
    suv = np.full((8, 24, 28), 1.5, np.float32)
    seg = np.zeros((8, 24, 28), np.uint8)
    ct[3:6, 4:9, 5:10], suv[3:6, 4:9, 5:10], seg[3:6, 4:9, 5:10] = 20.0, 7.0, 1
    origin = (-27.0, -23.0, 0.0)
    for arr, fname in ((ct, "CTres.nii.gz"), (suv, "SUV.nii.gz"), (seg, "SEG.nii.gz")):
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr[:, ::-1, ::-1]) if flip_xy else arr)
        img.SetSpacing((2.0, 2.0, 3.0))
        if flip_xy:  # voxel (0, 0, 0) is now the far corner in x and y
            img.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
            img.SetOrigin((origin[0] + 27 * 2.0, origin[1] + 23 * 2.0, 0.0))
        else:
            img.SetOrigin(origin)
        sitk.WriteImage(img, str(case / fname))


def test_nifti_stored_ras_gives_the_same_pair_as_lps(tmp_path):
    _case(tmp_path / "lps", "PETCT_A", flip_xy=False)
    _case(tmp_path / "ras", "PETCT_A", flip_xy=True)
    a = load_pairs(tmp_path / "lps", (2.0, 2.0, 3.0), tmp_path / "cache_a")[0]
    b = load_pairs(tmp_path / "ras", (2.0, 2.0, 3.0), tmp_path / "cache_b")[0]
    np.testing.assert_allclose(b.origin, a.origin, atol=1e-4)
    np.testing.assert_allclose(b.ct, a.ct, atol=1e-3)
    np.testing.assert_allclose(b.suv, a.suv, atol=1e-3)
    np.testing.assert_array_equal(b.seg, a.seg)
    assert a.suv[3:6, 4:9, 5:10].min() > 6.9  # the lesion sits where the LPS index says
