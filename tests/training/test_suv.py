"""SUVbw factors against the QIBA DRO facts and the refusal rules (REFERENCE.md)."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from pipeline.errors import SUVError
from pipeline.suv import series_suv_factor, suv_factor, to_suv

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
    ({"DecayCorrection": "NONE"}, "DecayCorrection"),
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
    import numpy as np

    a, b = dro_header(), dro_header(PatientWeight="70")
    with pytest.raises(SUVError, match="PatientWeight"):
        series_suv_factor([a, b])
    values = np.full((2, 2, 2), 1000.0, np.float32)
    assert to_suv([a, dro_header()], values)[0, 0, 0] == pytest.approx(1000 * suv_factor(a),
                                                                        rel=1e-6)
