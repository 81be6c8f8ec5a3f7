"""SUVbw factors against the QIBA DRO facts and the refusal rules (REFERENCE.md)."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset

from pipeline.errors import SUVError
from pipeline.suv import bsa_m2, lbm_kg, series_suv_factor, slice_suv_factors, suv_factor, to_suv

DOSE, HALF_LIFE, WEIGHT = 370e6, 6586.0, 59.94


def dro_header(**overrides) -> Dataset:
    """QIBA FDG-PET/CT DRO: 370 MBq at 13:01, scan 14:01, half-life 6586 s, 59.94 kg."""
    ds = Dataset()
    ds.Units = "BQML"
    ds.CorrectedImage = ["ATTN", "DECY", "SCAT"]
    ds.DecayCorrection = "START"
    ds.PatientWeight = str(WEIGHT)
    ds.SeriesDate, ds.SeriesTime = "20100101", "140100"
    ds.AcquisitionDate, ds.AcquisitionTime = "20100101", "140100"
    item = Dataset()
    item.RadionuclideTotalDose = str(int(DOSE))
    item.RadionuclideHalfLife = str(HALF_LIFE)
    item.RadiopharmaceuticalStartDateTime = "20100101130100"
    ds.RadiopharmaceuticalInformationSequence = [item]
    for key, value in overrides.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    return ds


def test_dro_factor_matches_hand_computation():
    decayed = DOSE * 2 ** (-3600 / HALF_LIFE)  # one hour from injection to scan
    expected = WEIGHT * 1000 / decayed
    assert suv_factor(dro_header()) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(2.3663e-4, rel=1e-3)  # 59940 g / 253.3 MBq


def test_start_time_only_on_series_date_and_midnight():
    ds = dro_header()
    item = ds.RadiopharmaceuticalInformationSequence[0]
    del item.RadiopharmaceuticalStartDateTime
    item.RadiopharmaceuticalStartTime = "130100"
    assert suv_factor(ds) == pytest.approx(suv_factor(dro_header()), rel=1e-9)
    late = dro_header(SeriesTime="003000", AcquisitionTime="003000")
    late_item = late.RadiopharmaceuticalInformationSequence[0]
    del late_item.RadiopharmaceuticalStartDateTime
    late_item.RadiopharmaceuticalStartTime = "233000"  # injected the evening before
    expected = WEIGHT * 1000 / (DOSE * 2 ** (-3600 / HALF_LIFE))
    assert suv_factor(late) == pytest.approx(expected, rel=1e-9)


def test_admin_gml_and_philips():
    assert suv_factor(dro_header(DecayCorrection="ADMIN")) == pytest.approx(WEIGHT * 1000 / DOSE)
    assert suv_factor(dro_header(Units="GML")) == 1.0
    ds = dro_header(Units="CNTS")
    ds.add_new((0x7053, 0x1000), "DS", "0.000123")
    assert suv_factor(ds) == pytest.approx(0.000123)


def test_series_time_after_acquisition_uses_acquisition():
    ds = dro_header(SeriesTime="150000")  # series time rewritten after the scan
    assert suv_factor(ds) == pytest.approx(suv_factor(dro_header()), rel=1e-9)


@pytest.mark.parametrize(("overrides", "tag"), [
    ({"PatientWeight": None}, "PatientWeight"),
    ({"PatientWeight": "0"}, "PatientWeight"),
    ({"CorrectedImage": ["ATTN"]}, "CorrectedImage"),
    ({"DecayCorrection": "DECAYED"}, "DecayCorrection"),
    ({"Units": "PROPCNTS"}, "Units"),
    ({"SeriesTime": "120000", "AcquisitionTime": "120000"}, "RadiopharmaceuticalStartDateTime"),
])
def test_refusals_name_the_tag(overrides, tag):
    with pytest.raises(SUVError, match=tag):
        suv_factor(dro_header(**overrides))


def test_missing_dose_is_refused():
    ds = dro_header()
    del ds.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose
    with pytest.raises(SUVError, match="RadionuclideTotalDose"):
        suv_factor(ds)


def test_series_level_consistency_and_volume():
    a, b = dro_header(), dro_header(PatientWeight="70")
    with pytest.raises(SUVError, match="PatientWeight"):
        series_suv_factor([a, b])
    values = np.full((2, 2, 2), 1000.0, np.float32)
    assert to_suv([a, dro_header()], values)[0, 0, 0] == pytest.approx(1000 * suv_factor(a),
                                                                        rel=1e-6)


def test_decay_correction_none_uses_each_frame_time():
    # frame acquired at 14:01 for 0 s behaves like START at 14:01
    none = dro_header(DecayCorrection="NONE")
    assert suv_factor(none) == pytest.approx(suv_factor(dro_header()), rel=1e-9)
    # a 300 s frame measured the average: its start activity is higher by l*d / (1 - exp(-l*d))
    lam = np.log(2) / HALF_LIFE
    timed = dro_header(DecayCorrection="NONE", ActualFrameDuration="300000")
    gain = lam * 300 / (1 - np.exp(-lam * 300))
    assert suv_factor(timed) == pytest.approx(suv_factor(dro_header()) * gain, rel=1e-9)
    later = dro_header(DecayCorrection="NONE", AcquisitionTime="150100")  # a later bed position
    factors = slice_suv_factors([none, later])
    assert factors[1] / factors[0] == pytest.approx(2 ** (3600 / HALF_LIFE), rel=1e-9)
    values = np.ones((2, 2, 2), np.float32)
    out = to_suv([none, later], values)
    assert out[1, 0, 0] / out[0, 0, 0] == pytest.approx(factors[1] / factors[0], rel=1e-6)


def test_lbm_and_bsa():
    male = dro_header(PatientSex="M", PatientSize="1.80", PatientWeight="80")
    female = dro_header(PatientSex="F", PatientSize="1.65")
    assert lbm_kg(male) == pytest.approx(1.10 * 80 - 128 * (80 / 180) ** 2)
    assert lbm_kg(female) == pytest.approx(1.07 * WEIGHT - 148 * (WEIGHT / 165) ** 2)
    bmi = 80 / 1.8**2
    assert lbm_kg(male, "janmahasatian") == pytest.approx(9270 * 80 / (6680 + 216 * bmi))
    assert bsa_m2(male) == pytest.approx(0.007184 * 80**0.425 * 180**0.725)
    assert bsa_m2(male) == pytest.approx(1.99, abs=0.01)  # DuBois table value
    bw = suv_factor(male)
    assert suv_factor(male, kind="lbm") == pytest.approx(bw * lbm_kg(male) / 80, rel=1e-9)
    assert suv_factor(male, kind="bsa") == pytest.approx(bw * bsa_m2(male) * 1e4 / 80e3, rel=1e-9)
    assert suv_factor(dro_header(PatientSize="165", PatientSex="F"), kind="lbm") == pytest.approx(
        suv_factor(female, kind="lbm"))  # centimetres accepted
    with pytest.raises(SUVError, match="PatientSize"):
        suv_factor(dro_header(), kind="lbm")
    with pytest.raises(SUVError, match="PatientSex"):
        suv_factor(dro_header(PatientSize="1.7", PatientSex="O"), kind="lbm")


def test_ge_private_scan_time_when_series_time_is_late():
    ds = dro_header(SeriesTime="150000", AcquisitionTime="145000")  # series rewritten later
    ds.add_new((0x0009, 0x0010), "LO", "GEMS_PETD_01")
    ds.add_new((0x0009, 0x100D), "DT", "20100101140100")
    assert suv_factor(ds) == pytest.approx(suv_factor(dro_header()), rel=1e-9)


@pytest.mark.parametrize(("keyword", "tag"), [("RadiopharmaceuticalStartDateTime", "(0018,1078)"),
                                              ("RadionuclideHalfLife", "(0018,1075)")])
def test_inconsistent_radiopharmaceutical_is_refused(keyword, tag):
    other = dro_header()
    setattr(other.RadiopharmaceuticalInformationSequence[0], keyword,
            "20100101120100" if "DateTime" in keyword else "6000")
    with pytest.raises(SUVError, match=keyword + r" \(" + tag[1:5]):
        series_suv_factor([dro_header(), other])
