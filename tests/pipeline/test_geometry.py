"""Series geometry from headers alone: non-uniform spacing, gaps, tilt, acquisitions, single
slice, enhanced multi-frame, signed/unsigned pixels; points keep their patient coordinates."""

from __future__ import annotations

import dataclasses

import highdicom as hd
import numpy as np
import pydicom
import pytest

from pipeline.errors import GeometryError
from pipeline.models.package import load_package
from pipeline.runner import detect_and_encode, run
from pipeline.series import load_series
from pipeline.types import Recipe
from tests.conftest import dciodvfy_errors, make_tiny_ct
from tests.pipeline.conftest import make_package
from tests.pipeline.enhanced import enhanced_from_series
from training.phantoms.dicom_writer import StudyInfo, write_series

OFFSETS = [0.0, 2.0, 4.0, 6.0, 9.0, 12.0, 15.0]  # 2 mm, then 3 mm slices (two ranges)


def _stack(tmp_path, offsets, *, shape=(16, 20), hot=(4, 5, 7), dtype=np.int16, extra=None,
           origin=(-10.0, -8.0, 30.0), shift_y=0.0, name="ct", study=None):
    """A CT with slices at `offsets` (mm along z); one bright voxel at (k, y, x) = `hot`."""
    n = len(offsets)
    stored = np.full((n, *shape), 1000, dtype)
    stored[hot] = 3000
    per_slice = [{"ImagePositionPatient": [f"{origin[0]:.4f}", f"{origin[1] + shift_y * k:.4f}",
                                           f"{origin[2] + z:.4f}"]} for k, z in enumerate(offsets)]
    for k, item in enumerate(per_slice):
        item.update((extra or [{}] * n)[k])
    return write_series(stored, (1.5, 2.0, 2.5), origin, tmp_path / name, modality="CT",
                        study=study or StudyInfo(), rescale=(1.0, -1024.0),
                        extra_per_slice=per_slice)


def _hot_point(origin=(-10.0, -8.0, 30.0), hot=(4, 5, 7)) -> np.ndarray:
    k, y, x = hot
    return np.array(origin) + np.array([x * 1.5, y * 2.0, OFFSETS[k]])


def test_non_uniform_spacing_is_resampled_and_maps_back(tmp_path):
    volume = load_series(_stack(tmp_path, OFFSETS)[::-1])
    assert volume.resampled and len(volume.frames) == len(OFFSETS)
    dz = volume.image.GetSpacing()[2]
    assert dz <= 2.0 and volume.image.GetSize()[2] == round(15 / dz) + 1
    assert volume.image.GetSpacing()[:2] == pytest.approx((1.5, 2.0))
    work = volume.array()
    k, y, x = np.unravel_index(int(np.argmax(work)), work.shape)
    point = volume.image.TransformIndexToPhysicalPoint((int(x), int(y), int(k)))
    np.testing.assert_allclose(point, _hot_point(), atol=dz / 2 + 1e-6)
    back = volume.to_source(work)
    assert back.shape == (len(OFFSETS), 16, 20)
    assert np.unravel_index(int(np.argmax(back)), back.shape) == (4, 5, 7)
    away = np.ones(back.shape, bool)
    away[:, 5, 7] = False  # elsewhere the stack is constant along z: the round trip is exact
    np.testing.assert_allclose(back[away], volume.source_array()[away], atol=1e-3)
    assert volume.source_array()[4, 5, 7] == pytest.approx(3000 - 1024)


def test_point_lands_on_the_same_patient_coordinate_in_every_output(tmp_path):
    """A hot ball at a patient point of a non-uniform CT: PM peak, SEG mask and the lesion
    centroid all sit on that point; PM/SEG frames have the source positions."""
    files = _stack(tmp_path, OFFSETS)
    volume = load_series(files)
    point = _hot_point()
    size = volume.image.GetSize()
    idx = np.indices(size[::-1]).reshape(3, -1)[::-1].T.astype(float)  # (x, y, z) indices
    spacing, origin = np.array(volume.image.GetSpacing()), np.array(volume.image.GetOrigin())
    dist = np.linalg.norm(origin + idx * spacing - point, axis=1).reshape(size[::-1])
    suv = np.where(dist <= 4.0, 8.0 - dist, 0.5).astype(np.float32)
    recipe = Recipe(name="ct", modality="CT", min_lesion_volume_ml=0.0)
    outputs, lesions, *_ = detect_and_encode(volume, suv, recipe, tmp_path / "out", {},
                                             model_version="t", units="SUVbw")
    assert len(lesions) == 1
    np.testing.assert_allclose(lesions[0].centroid_mm, point, atol=0.5)
    files_by_kind = {o.kind: o.path for o in outputs}
    pm = pydicom.dcmread(files_by_kind["pm"])
    z = sorted(float(f.PlanePositionSequence[0].ImagePositionPatient[2])
               for f in pm.PerFrameFunctionalGroupsSequence)
    np.testing.assert_allclose(z, np.array(OFFSETS) + 30.0, atol=1e-3)
    frame = int(np.argmax(pm.pixel_array.reshape(len(OFFSETS), -1).max(axis=1)))
    item = pm.PerFrameFunctionalGroupsSequence[frame].PlanePositionSequence[0]
    row, col = np.unravel_index(int(np.argmax(pm.pixel_array[frame])), pm.pixel_array.shape[1:])
    peak = np.array(item.ImagePositionPatient, float) + np.array([col * 1.5, row * 2.0, 0])
    np.testing.assert_allclose(peak, point, atol=1e-3)
    seg = hd.seg.segread(files_by_kind["seg"])
    uids = [ds.SOPInstanceUID for ds in volume.datasets]
    mask = seg.get_pixels_by_source_instance(uids, combine_segments=True)
    assert mask[4, 5, 7] == 1 and mask[0].sum() == 0
    for kind in ("pm", "seg", "sc", "sc_grey", "sr"):
        assert dciodvfy_errors(files_by_kind[kind]) == [], kind


def test_isolated_gap_is_a_missing_slice(tmp_path):
    with pytest.raises(GeometryError, match=r"missing slice.*\(-10, -8, 34\) and \(-10, -8, 38\)"):
        load_series(_stack(tmp_path, [0.0, 2.0, 4.0, 8.0, 10.0, 12.0], hot=(1, 1, 1)))


def test_gantry_tilt_is_refused_with_the_reason(tmp_path):
    files = _stack(tmp_path, [0.0, 2.5, 5.0, 7.5], hot=(1, 1, 1), shift_y=0.8)
    with pytest.raises(GeometryError, match="gantry tilt"):
        load_series(files)


def test_several_acquisitions_are_refused_naming_the_tags(tmp_path):
    study = StudyInfo()
    a = _stack(tmp_path, [0.0, 2.5, 5.0], hot=(1, 1, 1), name="a", study=study)
    b = _stack(tmp_path, [0.0, 2.5, 5.0], hot=(1, 1, 1), name="b", study=study,
               extra=[{"AcquisitionNumber": 2, "SOPInstanceUID": f"1.2.3.4.{k}"} for k in range(3)])
    with pytest.raises(GeometryError, match=r"several acquisitions.*AcquisitionNumber \(0020,0012\)"):
        load_series(a + b)


def test_slice_thickness_disagreeing_with_positions_is_ignored(tmp_path):
    files = make_tiny_ct(tmp_path / "ct", shape=(4, 8, 8), spacing=(1.0, 1.0, 3.0),
                         extra={"SliceThickness": "5", "SpacingBetweenSlices": "5"})
    assert load_series(files).image.GetSpacing()[2] == pytest.approx(3.0)


def test_single_slice_runs_end_to_end(tmp_path):
    files = make_tiny_ct(tmp_path / "ct", shape=(1, 32, 32), spacing=(2.0, 2.0, 5.0))
    volume = load_series(files)
    assert volume.image.GetSize() == (32, 32, 1) and volume.image.GetSpacing()[2] == 5.0
    recipe = Recipe(name="ct", modality="CT", model=make_package(tmp_path / "pkg"),
                    lesion_threshold=0.0, min_lesion_volume_ml=0.0, max_lesions=1)
    result = run(files, tmp_path / "out", recipe=recipe, preview=False)
    assert {o.kind for o in result.outputs} == {"pm", "sc", "sc_grey", "seg", "sr"}
    assert int(pydicom.dcmread(result.outputs[0].path).NumberOfFrames) == 1


def test_enhanced_ct_loads_like_the_single_frame_series(tmp_path):
    files = make_tiny_ct(tmp_path / "ct", shape=(5, 24, 24))
    enhanced = enhanced_from_series(files, tmp_path / "enh" / "ct.dcm", order=[2, 0, 4, 1, 3])
    a, b = load_series(files), load_series([enhanced])
    np.testing.assert_array_equal(a.array(), b.array())
    assert b.image.GetOrigin() == pytest.approx(a.image.GetOrigin())
    assert b.image.GetSpacing() == pytest.approx(a.image.GetSpacing())
    assert [f.number for f in b.frames] == [2, 4, 1, 5, 3]
    suv = np.ones(a.array().shape, np.float32)
    suv[2, 10:14, 10:14] = 6.0
    model = load_package(make_package(tmp_path / "pkg"))
    recipe = dataclasses.replace(Recipe(name="ct", modality="CT"), min_lesion_volume_ml=0.0)
    outputs, lesions, *_ = detect_and_encode(b, suv, recipe, tmp_path / "out", {},
                                             model_version=model.version, units="SUVbw")
    pm = pydicom.dcmread(next(o.path for o in outputs if o.kind == "pm"))
    for frame, item in zip(pm.pixel_array, pm.PerFrameFunctionalGroupsSequence, strict=True):
        z = float(item.PlanePositionSequence[0].ImagePositionPatient[2])
        k = round((z - a.image.GetOrigin()[2]) / 3.0)
        np.testing.assert_allclose(frame, suv[k])
    seg = hd.seg.segread(next(o.path for o in outputs if o.kind == "seg"))
    assert seg.number_of_segments == len(lesions) == 1
    sc = pydicom.dcmread(next(o.path for o in outputs if o.kind == "sc"), stop_before_pixels=True)
    assert [int(i.ReferencedFrameNumber) for i in sc.SourceImageSequence] == [2, 4, 1, 5, 3]
    for output in outputs:  # every object made from an Enhanced CT source is valid too
        assert dciodvfy_errors(output.path) == [], output.kind


@pytest.mark.parametrize("dtype", [np.int16, np.uint16])
def test_signed_and_unsigned_pixels(tmp_path, dtype):
    hu = np.array([[-1000, 0], [40, 1500]], float)
    intercept = -1024.0 if dtype == np.uint16 else 0.0
    stored = np.broadcast_to((hu - intercept).astype(dtype), (2, 2, 2))
    files = write_series(np.ascontiguousarray(stored), (1.0, 1.0, 1.0), (0, 0, 0), tmp_path,
                         modality="CT", study=StudyInfo(), rescale=(1.0, intercept))
    assert pydicom.dcmread(files[0]).PixelRepresentation == (1 if dtype == np.int16 else 0)
    np.testing.assert_array_equal(load_series(files).array()[0], hu)
