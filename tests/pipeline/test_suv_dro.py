"""SUV end to end on real PET DICOM: a small QIBA FDG-PET/CT DRO and vendor-style header sets.

The DRO (REFERENCE.md): 370 MBq injected 13:01, scan 14:01, half-life 6586 s, female 59.94 kg;
regions of SUVbw 0.00, 1.00, 4.00, 0.10, 0.90 and single voxels 4.11 / -0.11. Activity is
stored in Bq/ml as int16 with a per-slice RescaleSlope (as GE does), read back through
`load_series` and converted by `to_suv`.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from pipeline.series import load_series
from pipeline.suv import to_suv
from training.phantoms.dicom_writer import StudyInfo, write_series

DOSE, HALF_LIFE, WEIGHT = 370e6, 6586.0, 59.94
FACTOR = WEIGHT * 1000 / (DOSE * 2 ** (-3600 / HALF_LIFE))  # SUVbw per Bq/ml
TEST_VALUES = (0.00, 1.00, 4.00, 0.10, 0.90)


def dro_suv() -> np.ndarray:
    """(6, 24, 40) SUV: one 8x8 square per test value in slices 1..4, plus two voxels."""
    suv = np.zeros((6, 24, 40), np.float32)
    for i, value in enumerate(TEST_VALUES):
        suv[1:5, 8:16, 8 * i: 8 * i + 8] = value
    suv[2, 4, 4] = 4.11
    suv[3, 4, 4] = -0.11
    return suv


def radiopharmaceutical(**overrides) -> pydicom.Dataset:
    item = pydicom.Dataset()
    item.Radiopharmaceutical = "Fluorodeoxyglucose F^18^"
    item.RadionuclideTotalDose = f"{DOSE:.0f}"
    item.RadionuclideHalfLife = f"{HALF_LIFE:g}"
    item.RadiopharmaceuticalStartDateTime = "20100101130100"
    for key, value in overrides.items():
        if value is None:
            delattr(item, key)
        else:
            setattr(item, key, value)
    return item


def write_pet(out, stored_per_bqml: float = 1.0, *, units="BQML", decay="START",
              rp: dict | None = None, series_time="140100", acquisition_time="140100",
              private=None) -> list:
    """Write the DRO as a PT series; stored = round(activity * stored_per_bqml / slope)."""
    activity = dro_suv() / FACTOR * stored_per_bqml
    slopes = [max(float(np.abs(s).max()) / 32000.0, 1e-3) for s in activity]
    stored = np.stack([np.rint(s / m) for s, m in zip(activity, slopes, strict=True)]).astype(np.int16)
    study = StudyInfo(patient_sex="F", patient_weight_kg=WEIGHT, study_date="20100101",
                      study_time=series_time)
    extra = {"Units": units, "DecayCorrection": decay, "CorrectedImage": ["ATTN", "DECY", "SCAT"],
             "PatientWeight": f"{WEIGHT}", "SeriesTime": series_time,
             "AcquisitionTime": acquisition_time,
             "RadiopharmaceuticalInformationSequence": [radiopharmaceutical(**(rp or {}))]}
    files = write_series(stored, (4.0, 4.0, 4.0), (0.0, 0.0, 0.0), out, modality="PT",
                         study=study, rescale=[(m, 0.0) for m in slopes], extra=extra)
    for path in files:
        if private:
            ds = pydicom.dcmread(path)
            for tag, (vr, value) in private.items():
                ds.add_new(tag, vr, value)
            ds.save_as(path)
    return files


def _check(files) -> None:
    volume = load_series(files)
    suv = to_suv(volume.datasets, volume.array())
    expected = dro_suv()
    for i, value in enumerate(TEST_VALUES):
        assert suv[1:5, 8:16, 8 * i: 8 * i + 8] == pytest.approx(value, abs=1e-3), value
    assert suv[2, 4, 4] == pytest.approx(4.11, abs=1e-3)
    assert suv[3, 4, 4] == pytest.approx(-0.11, abs=1e-3)
    assert float(suv.max()) == pytest.approx(4.11, abs=1e-3)
    np.testing.assert_allclose(suv, expected, atol=1e-3)


def test_qiba_dro_bqml_start(tmp_path):
    _check(write_pet(tmp_path / "dro"))


def test_siemens_style_start_time_only(tmp_path):
    """Siemens: BQML, START, RadiopharmaceuticalStartTime only (date from the series)."""
    _check(write_pet(tmp_path / "siemens", rp={"RadiopharmaceuticalStartDateTime": None,
                                               "RadiopharmaceuticalStartTime": "130100.000000"}))


def test_ge_style_series_time_after_acquisition(tmp_path):
    """GE: SeriesTime rewritten after the scan; (0009,100D) holds the real scan start."""
    private = {(0x0009, 0x0010): ("LO", "GEMS_PETD_01"), (0x0009, 0x100D): ("DT", "20100101140100")}
    _check(write_pet(tmp_path / "ge", series_time="153000", acquisition_time="150000",
                     private=private))


def test_philips_style_counts_with_suv_factor(tmp_path):
    """Philips: Units CNTS, stored counts, (7053,1000) turns rescaled counts into SUVbw."""
    counts_per_bqml = 2.5
    private = {(0x7053, 0x0010): ("LO", "Philips PET Private Group"),
               (0x7053, 0x1000): ("DS", f"{FACTOR / counts_per_bqml:.10g}")}
    _check(write_pet(tmp_path / "philips", counts_per_bqml, units="CNTS", private=private))


def test_philips_style_counts_with_activity_factor(tmp_path):
    """Philips: (7053,1009) turns rescaled counts into Bq/ml; then the BQML rules apply."""
    counts_per_bqml = 0.4
    private = {(0x7053, 0x0010): ("LO", "Philips PET Private Group"),
               (0x7053, 0x1009): ("DS", f"{1 / counts_per_bqml:.10g}")}
    _check(write_pet(tmp_path / "philips2", counts_per_bqml, units="CNTS", private=private))


def test_admin_decay_correction(tmp_path):
    """ADMIN: values decay-corrected back to injection time: activity x 2^(t/T) in the file."""
    files = write_pet(tmp_path / "admin", 2 ** (3600 / HALF_LIFE), decay="ADMIN")
    _check(files)
