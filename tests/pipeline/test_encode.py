"""Each encoder: dciodvfy-clean, readable back, same study and frame of reference, stable UIDs."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest

from pipeline.encode.pm import encode_pm
from pipeline.encode.sc import encode_sc
from pipeline.encode.seg import encode_seg
from pipeline.encode.sr import encode_sr
from pipeline.encode.uids import derive_uid
from pipeline.lesions import detect_lesions
from tests.conftest import dciodvfy_errors

VERSION = "test-0.1"


def _common(path, volume) -> pydicom.Dataset:
    ds = pydicom.dcmread(path)
    src = volume.datasets[0]
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.StudyInstanceUID == volume.study_uid
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "SpecificCharacterSet"):
        assert ds[kw].value == src[kw].value, kw
    assert "synthetic" in ds.SeriesDescription.lower()
    assert ds.Manufacturer == "virtual-pet"
    assert dciodvfy_errors(path) == []
    return ds


def test_derive_uid_is_stable_and_separator_safe():
    assert derive_uid("a", "b") == derive_uid("a", "b")
    assert derive_uid("ab", "c") != derive_uid("a", "bc")
    assert derive_uid("x").startswith("2.25.") and len(derive_uid("x")) <= 64


def test_pm(ct_volume, hot_suv, tmp_path):
    out = encode_pm(ct_volume, hot_suv, tmp_path / "a", model_version=VERSION)
    ds = _common(out.path, ct_volume)
    assert ds.FrameOfReferenceUID == ct_volume.frame_of_reference_uid
    assert ds.ContentQualification == "RESEARCH" and ds.ImageType[0] == "DERIVED"
    assert ds.BodyPartExamined == "ABDOMEN"
    assert int(ds.NumberOfFrames) == len(ct_volume.datasets)
    # highdicom may reorder frames; each frame's position must match its source slice's
    source_z = [float(s.ImagePositionPatient[2]) for s in ct_volume.datasets]
    for frame, item in zip(ds.pixel_array, ds.PerFrameFunctionalGroupsSequence, strict=True):
        k = source_z.index(float(item.PlanePositionSequence[0].ImagePositionPatient[2]))
        ref = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        assert ref == ct_volume.datasets[k].SOPInstanceUID
        np.testing.assert_allclose(frame, hot_suv[k], atol=1e-6)
    rwvm = ds.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert rwvm.MeasurementUnitsCodeSequence[0].CodeValue == "g/ml{SUVbw}"
    again = encode_pm(ct_volume, hot_suv, tmp_path / "b", model_version=VERSION)
    assert (again.sop_instance_uid, again.series_instance_uid) == (out.sop_instance_uid,
                                                                   out.series_instance_uid)
    other = encode_pm(ct_volume, hot_suv, tmp_path / "c", model_version="other", units="SUVR")
    assert other.sop_instance_uid != out.sop_instance_uid
    assert dciodvfy_errors(other.path) == []


def test_seg_and_sr(ct_volume, hot_suv, tmp_path):
    labels, lesions = detect_lesions(hot_suv, ct_volume.image)
    assert len(lesions) == 2
    seg_out = encode_seg(ct_volume, labels, lesions, tmp_path, model_version=VERSION)
    seg_ds = _common(seg_out.path, ct_volume)
    assert seg_ds.FrameOfReferenceUID == ct_volume.frame_of_reference_uid
    seg = hd.seg.segread(seg_out.path)
    assert seg.number_of_segments == 2
    desc = seg.get_segment_description(1)
    assert desc.tracking_id == "lesion-1"
    assert desc.algorithm_identification[0].AlgorithmName == "virtual-pet"
    uids = [s.SOPInstanceUID for s in ct_volume.datasets]
    mask = seg.get_pixels_by_source_instance(uids, combine_segments=True)
    np.testing.assert_array_equal(mask, labels)  # pixel-aligned with the source slices
    sr_out = encode_sr(ct_volume, lesions, seg_ds, tmp_path, model_version=VERSION)
    _common(sr_out.path, ct_volume)
    sr = hd.sr.srread(sr_out.path)
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == 2
    values = sorted(float(m.value) for m in groups[0].get_measurements())
    les = lesions[0]
    expected = sorted([les.suv_max, les.suv_mean, les.volume_ml, les.suv_peak, les.tlg])
    assert values == pytest.approx(expected, rel=1e-4)
    names = {(m.name.value, m.derivation.value if m.derivation else None)
             for m in groups[0].get_measurements()}
    assert ("126401", "126031") in names  # SUVbw, Peak Value Within ROI
    assert ("126033", None) in names  # Total Lesion Glycolysis
    assert groups[0].tracking_identifier == "lesion-1"
    assert groups[0].tracking_uid == desc.tracking_uid
    # the image library lists the key images: the source slices through the lesion centroids
    library = {item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
               for entry in pydicom.dcmread(sr_out.path).ContentSequence
               if entry.ConceptNameCodeSequence[0].CodeValue == "111028"  # Image Library
               for group in entry.ContentSequence for item in group.ContentSequence}
    lesion_slices = {uids[k] for k in {int(z) for z in np.nonzero(labels)[0]}}
    assert library and library <= lesion_slices
    again = encode_seg(ct_volume, labels, lesions, tmp_path / "again", model_version=VERSION)
    assert again.sop_instance_uid == seg_out.sop_instance_uid


def test_no_lesions_skips_seg_and_still_reports(ct_volume, tmp_path):
    zeros = np.zeros(ct_volume.image.GetSize()[::-1], np.int32)
    assert encode_seg(ct_volume, zeros, [], tmp_path, model_version=VERSION) is None
    sr_out = encode_sr(ct_volume, [], None, tmp_path, model_version=VERSION)
    _common(sr_out.path, ct_volume)
    assert hd.sr.srread(sr_out.path).content.get_volumetric_roi_measurement_groups() == []


def test_sc(ct_volume, hot_suv, tmp_path):
    labels, _ = detect_lesions(hot_suv, ct_volume.image)
    out = encode_sc(ct_volume, hot_suv, labels, tmp_path, model_version=VERSION)
    ds = _common(out.path, ct_volume)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7.4"
    assert ds.BurnedInAnnotation == "YES" and list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    frames = ds.pixel_array
    assert frames.shape == (len(ct_volume.datasets), 48, 48, 3)
    assert (frames[:, :14, :40].min(axis=-1) > 200).any(axis=(1, 2)).all()  # white notice text
    assert [i.ReferencedSOPInstanceUID for i in ds.SourceImageSequence] == [
        s.SOPInstanceUID for s in ct_volume.datasets]
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == ct_volume.series_uid
    assert len(ds.SliceLocationVector) == len(ct_volume.datasets)
