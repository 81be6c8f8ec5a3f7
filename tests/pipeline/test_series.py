"""load_series: sorting, geometry, and clear refusals."""

from __future__ import annotations

import random

import numpy as np
import pydicom
import pytest

from pipeline.errors import GeometryError, InputError
from pipeline.series import load_series
from tests.conftest import make_tiny_ct


def test_shuffled_files_sort_by_position(tmp_path):
    files = make_tiny_ct(tmp_path / "ct", shape=(6, 16, 16))
    shuffled = files[:]
    random.Random(3).shuffle(shuffled)
    vol = load_series(shuffled)
    z = [float(ds.ImagePositionPatient[2]) for ds in vol.datasets]
    assert z == sorted(z)
    assert vol.image.GetSize() == (16, 16, 6)
    assert vol.image.GetSpacing() == pytest.approx((2.0, 2.0, 3.0))
    assert vol.image.GetOrigin() == pytest.approx((-16.0, -16.0, 0.0))
    assert vol.modality == "CT" and vol.series_uid == vol.datasets[0].SeriesInstanceUID
    assert "PixelData" not in vol.datasets[0]
    ordered = load_series(files)
    np.testing.assert_array_equal(vol.array(), ordered.array())
    assert vol.array().mean() < 0  # rescale intercept -1024 applied (mostly air)


def test_oblique_orientation_gives_direction(tmp_path):
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    direction = (1, 0, 0, 0, c, s)  # rows along x, columns tilted in the y-z plane
    files = make_tiny_ct(tmp_path / "ct", shape=(5, 16, 16), direction=direction)
    vol = load_series(files[::-1])
    d = np.array(vol.image.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(d[:, 0], [1, 0, 0], atol=1e-5)
    np.testing.assert_allclose(d[:, 1], [0, c, s], atol=1e-5)
    np.testing.assert_allclose(d[:, 2], np.cross([1, 0, 0], [0, c, s]), atol=1e-5)
    assert vol.image.GetSpacing()[2] == pytest.approx(3.0, abs=1e-3)
    # voxel (x=3, y=4, z=2) lands where the DICOM header puts it
    ds = vol.datasets[2]
    expected = (np.array(ds.ImagePositionPatient, float) + 3 * 2.0 * np.array([1, 0, 0])
                + 4 * 2.0 * np.array([0, c, s]))
    np.testing.assert_allclose(vol.image.TransformIndexToPhysicalPoint((3, 4, 2)), expected, atol=1e-3)


def test_non_dicom_file_names_the_file(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(InputError, match="notes.txt"):
        load_series([bad])


def test_missing_pixel_spacing_names_the_tag(tmp_path):
    files = make_tiny_ct(tmp_path / "ct", shape=(3, 8, 8))
    ds = pydicom.dcmread(files[1])
    del ds.PixelSpacing
    ds.save_as(files[1])
    with pytest.raises(GeometryError, match=r"\(0028,0030\) PixelSpacing missing in SOP Instance "
                                            + ds.SOPInstanceUID.replace(".", r"\.")):
        load_series(files)


def test_two_series_refused(tmp_path):
    a = make_tiny_ct(tmp_path / "a", shape=(2, 8, 8))
    b = make_tiny_ct(tmp_path / "b", shape=(2, 8, 8), series_number=2)
    with pytest.raises(InputError, match="2 series"):
        load_series(a + b)


def test_duplicate_and_gap_refused(tmp_path):
    files = make_tiny_ct(tmp_path / "ct", shape=(4, 8, 8))
    with pytest.raises(GeometryError, match="missing slice"):
        load_series([files[0], files[1], files[3]])
    dup = pydicom.dcmread(files[1])
    dup.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    dup.save_as(tmp_path / "dup.dcm")
    with pytest.raises(GeometryError, match="duplicate"):
        load_series(files + [tmp_path / "dup.dcm"])


def test_no_files_refused():
    with pytest.raises(InputError, match="at least one"):
        load_series([])
