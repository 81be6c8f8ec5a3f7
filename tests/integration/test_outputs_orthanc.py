"""Every output kind, from a non-uniform CT of a patient with a non-ASCII name: stored by a real
Orthanc, which renders every SC (colour and grey) and SEG frame; readable back with highdicom;
dciodvfy-clean; patient name and frame positions as in the source."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest

from pipeline.runner import detect_and_encode
from pipeline.series import load_series
from pipeline.types import Recipe
from tests.conftest import dciodvfy_errors, free_port, require_tool
from tests.integration.checks import PM, SC_GREY, SC_MF, SEG, SR
from tests.integration.orthanc import start_orthanc
from training.phantoms.dicom_writer import StudyInfo, write_series

NAME = "Ødegård^Zoë"
OFFSETS = [0.0, 2.5, 5.0, 7.5, 11.0, 14.5, 18.0]  # 2.5 mm then 3.5 mm: resampled and back


@pytest.fixture
def outputs(tmp_path):
    stored = np.full((len(OFFSETS), 32, 32), 1024, np.int16)
    per_slice = [{"ImagePositionPatient": ["-16", "-16", f"{z:.4f}"]} for z in OFFSETS]
    files = write_series(stored, (1.0, 1.0, 2.5), (-16.0, -16.0, 0.0), tmp_path / "ct",
                         modality="CT", study=StudyInfo(patient_name=NAME), rescale=(1.0, -1024.0),
                         extra={"SpecificCharacterSet": "ISO_IR 192"}, extra_per_slice=per_slice)
    volume = load_series(files)
    assert volume.resampled
    suv = np.ones(volume.array().shape, np.float32)
    suv[3:6, 10:16, 10:16] = 6.0
    suv[1:3, 22:26, 20:24] = 4.0
    recipe = Recipe(name="ct", modality="CT", min_lesion_volume_ml=0.0)
    written, lesions, *_ = detect_and_encode(volume, suv, recipe, tmp_path / "out", {},
                                             model_version="test", units="SUVbw")
    assert len(lesions) == 2
    return volume, {o.sop_class_uid: o.path for o in written}


def test_orthanc_stores_and_renders_every_output(tmp_path, outputs):
    volume, paths = outputs
    assert set(paths) == {PM, SEG, SC_MF, SC_GREY, SR}
    z = np.array(OFFSETS)
    for path in paths.values():
        assert dciodvfy_errors(path) == [], path.name
        ds = pydicom.dcmread(path)
        assert str(ds.PatientName) == NAME and ds.SpecificCharacterSet == "ISO_IR 192"
        assert ds.StudyInstanceUID == volume.study_uid
    pm = pydicom.dcmread(paths[PM])
    assert pm.FrameOfReferenceUID == volume.frame_of_reference_uid
    np.testing.assert_allclose(sorted(float(f.PlanePositionSequence[0].ImagePositionPatient[2])
                                      for f in pm.PerFrameFunctionalGroupsSequence), z, atol=1e-3)
    seg = hd.seg.segread(paths[SEG])
    assert seg.number_of_segments == 2
    assert seg.get_segment_description(2).tracking_id == "lesion-2"
    sr = hd.sr.srread(paths[SR])
    assert len(sr.content.get_volumetric_roi_measurement_groups()) == 2
    for cls in (SC_MF, SC_GREY):
        sc = pydicom.dcmread(paths[cls])
        np.testing.assert_allclose([float(v) for v in sc.SliceLocationVector], z, atol=1e-3)

    orthanc = start_orthanc(require_tool("/usr/sbin/Orthanc"), tmp_path / "orthanc", free_port(),
                            free_port(), {})
    try:
        ids = {cls: orthanc.post("/instances", path.read_bytes())["ID"]
               for cls, path in paths.items()}
        for cls, instance in ids.items():
            tags = orthanc.get(f"/instances/{instance}/simplified-tags")
            assert tags["SOPClassUID"] == cls and tags["PatientName"] == NAME
        for cls in (SC_MF, SC_GREY, SEG):
            frames = orthanc.get(f"/instances/{ids[cls]}/frames")
            assert len(frames) == (len(OFFSETS) if cls != SEG else 2 * len(OFFSETS))
            for frame in frames:
                status = orthanc.get_status(f"/instances/{ids[cls]}/frames/{frame}/preview")
                assert status == (200, "image/png"), (cls, frame)
    finally:
        orthanc.stop()
