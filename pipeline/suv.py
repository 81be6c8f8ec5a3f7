"""SUV (bw, lbm, bsa) from PET DICOM headers (QIBA vendor-neutral pseudo-code).

Why: training targets and any PET shown next to the virtual PET must be in SUV, and vendors
store activity differently (Bq/ml decayed to the scan start or to injection, counts with a
Philips private factor, or SUV already). Anything that does not allow a safe computation is
refused with an SUVError that names the tag, never guessed.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

import numpy as np
import pydicom

from pipeline.errors import SUVError

log = logging.getLogger(__name__)

PHILIPS_SUV_FACTOR = (0x7053, 0x1000)
PHILIPS_ACTIVITY_FACTOR = (0x7053, 0x1009)
GE_PRE_INJECTION_SCAN_TIME = (0x0009, 0x100D)


def _parse_time(value: str, tag: str) -> dt.time:
    text = str(value).strip().replace(":", "")
    whole, _, frac = text.partition(".")
    try:
        hh, mm, ss = int(whole[0:2]), int(whole[2:4] or 0), int(whole[4:6] or 0)
        micro = int((frac + "000000")[:6]) if frac else 0
        return dt.time(hh, mm, min(ss, 59), micro)
    except ValueError as exc:
        raise SUVError(f"{tag} has an unreadable time {value!r}") from exc


def _parse_date(value: str, tag: str) -> dt.date:
    try:
        return dt.datetime.strptime(str(value).strip().replace(".", "")[:8], "%Y%m%d").date()
    except ValueError as exc:
        raise SUVError(f"{tag} has an unreadable date {value!r}") from exc


def _parse_dt(value: str, tag: str) -> dt.datetime:
    """DICOM DT (YYYYMMDDHHMMSS.FFFFFF&ZZXX); the UTC offset is ignored (same clock as series)."""
    text = str(value).strip()
    for sign in "+-":
        if sign in text[8:]:
            text = text[: 8 + text[8:].index(sign)]
    date = _parse_date(text[:8], tag)
    time = _parse_time(text[8:] or "000000", tag)
    return dt.datetime.combine(date, time)


def _date_time(ds: pydicom.Dataset, date_kw: str, time_kw: str) -> dt.datetime | None:
    if not ds.get(date_kw) or not ds.get(time_kw):
        return None
    return dt.datetime.combine(_parse_date(ds.get(date_kw), date_kw),
                               _parse_time(ds.get(time_kw), time_kw))


def scan_datetime(ds: pydicom.Dataset, earliest_acquisition: dt.datetime | None = None
                  ) -> dt.datetime:
    """Series date/time, unless it is after the acquisition (then GE private or acquisition)."""
    series = _date_time(ds, "SeriesDate", "SeriesTime")
    if series is None:
        raise SUVError("SeriesDate (0008,0021) / SeriesTime (0008,0031) missing: no scan time")
    acquisition = earliest_acquisition or _date_time(ds, "AcquisitionDate", "AcquisitionTime")
    if acquisition is not None and series > acquisition:
        private = ds.get(GE_PRE_INJECTION_SCAN_TIME)
        if private is not None and private.value:
            return _parse_dt(private.value, "GE private (0009,100D)")
        return acquisition
    return series


def _radiopharmaceutical(ds: pydicom.Dataset) -> pydicom.Dataset:
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    if not seq:
        raise SUVError("RadiopharmaceuticalInformationSequence (0054,0016) missing")
    return seq[0]


def injection_datetime(ds: pydicom.Dataset, scan: dt.datetime) -> dt.datetime:
    """RadiopharmaceuticalStartDateTime, else StartTime on the series date (midnight aware)."""
    item = _radiopharmaceutical(ds)
    if item.get("RadiopharmaceuticalStartDateTime"):
        return _parse_dt(item.RadiopharmaceuticalStartDateTime,
                         "RadiopharmaceuticalStartDateTime (0018,1078)")
    if not item.get("RadiopharmaceuticalStartTime"):
        raise SUVError("RadiopharmaceuticalStartDateTime (0018,1078) and "
                       "RadiopharmaceuticalStartTime (0018,1072) missing: no injection time")
    time = _parse_time(item.RadiopharmaceuticalStartTime, "RadiopharmaceuticalStartTime (0018,1072)")
    injection = dt.datetime.combine(scan.date(), time)
    if injection > scan:  # injected before midnight, scanned after it
        injection -= dt.timedelta(days=1)
    return injection


def _positive(value, tag: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = 0.0
    if not number > 0:
        raise SUVError(f"{tag} missing or not positive ({value!r}): cannot compute SUVbw")
    return number


def _height_m(ds: pydicom.Dataset) -> float:
    height = _positive(ds.get("PatientSize"), "PatientSize (0010,1020)")
    return height / 100.0 if height > 3.0 else height  # some sites write centimetres


def lbm_kg(ds: pydicom.Dataset, formula: str = "james") -> float:
    """Lean body mass: James (1976) or Janmahasatian (2005), by PatientSex (0010,0040)."""
    weight = _positive(ds.get("PatientWeight"), "PatientWeight (0010,1030)")
    height_m = _height_m(ds)
    sex = str(ds.get("PatientSex", "")).upper()
    if sex not in ("M", "F"):
        raise SUVError(f"PatientSex (0010,0040) is {sex or 'missing'!r}: SUVlbm needs M or F")
    if formula == "janmahasatian":
        bmi = weight / height_m**2
        return 9270 * weight / ((6680 + 216 * bmi) if sex == "M" else (8780 + 244 * bmi))
    ratio = weight / (100 * height_m)
    return 1.10 * weight - 128 * ratio**2 if sex == "M" else 1.07 * weight - 148 * ratio**2


def bsa_m2(ds: pydicom.Dataset) -> float:
    """Body surface area, DuBois & DuBois (1916): 0.007184 W^0.425 H[cm]^0.725."""
    weight = _positive(ds.get("PatientWeight"), "PatientWeight (0010,1030)")
    return 0.007184 * weight**0.425 * (100 * _height_m(ds)) ** 0.725


def body_factor(ds: pydicom.Dataset, kind: str = "bw") -> float:
    """Numerator of SUV: weight [g] (bw), lean body mass [g] (lbm, lbm_jan) or BSA [cm2] (bsa)."""
    if kind == "bw":
        return _positive(ds.get("PatientWeight"), "PatientWeight (0010,1030)") * 1000.0
    if kind in ("lbm", "lbm_james"):
        return lbm_kg(ds, "james") * 1000.0
    if kind == "lbm_jan":
        return lbm_kg(ds, "janmahasatian") * 1000.0
    if kind == "bsa":
        return bsa_m2(ds) * 1e4
    raise SUVError(f"unknown SUV kind {kind!r}; known: bw, lbm, lbm_jan, bsa")


def _decay_seconds(ds: pydicom.Dataset, at: dt.datetime) -> float:
    decay_s = (at - injection_datetime(ds, at)).total_seconds()
    if decay_s < 0:
        raise SUVError(f"negative decay time ({decay_s:.0f} s): RadiopharmaceuticalStartDateTime "
                       "(0018,1078) / RadiopharmaceuticalStartTime (0018,1072) is after the scan "
                       "time")
    return decay_s


def _uncorrected_gain(ds: pydicom.Dataset, half_life: float) -> float:
    """DecayCorrection NONE: activity at frame start / frame average, times decay to injection.

    The frame measured the mean of A0*exp(-l t) over its duration d: A0 = mean * l d / (1 -
    exp(-l d)); A0 is then referred to injection through the frame start time.
    """
    start = _date_time(ds, "AcquisitionDate", "AcquisitionTime")
    if start is None:
        raise SUVError("DecayCorrection NONE needs AcquisitionDate (0008,0022) / "
                       "AcquisitionTime (0008,0032) of each frame")
    lam = np.log(2.0) / half_life
    duration_s = float(ds.get("ActualFrameDuration", 0) or 0) / 1000.0
    average = lam * duration_s / -np.expm1(-lam * duration_s) if duration_s > 0 else 1.0
    return float(average * 2.0 ** (_decay_seconds(ds, start) / half_life))


def bqml_factor(ds: pydicom.Dataset, earliest_acquisition: dt.datetime | None = None,
                kind: str = "bw") -> float:
    """Bq/ml -> SUV: body factor (g or cm2) / injected dose decayed to the reference time [Bq]."""
    corrected = {str(v).upper() for v in (ds.get("CorrectedImage") or [])}
    decay_correction = str(ds.get("DecayCorrection", "")).upper()
    needed = {"ATTN", "DECY"} if decay_correction != "NONE" else {"ATTN"}
    missing = needed - corrected
    if missing:
        raise SUVError(f"CorrectedImage (0028,0051) lacks {'/'.join(sorted(missing))}: "
                       "SUV needs attenuation- and decay-corrected activity")
    body = body_factor(ds, kind)
    item = _radiopharmaceutical(ds)
    dose = _positive(item.get("RadionuclideTotalDose"), "RadionuclideTotalDose (0018,1074)")
    if decay_correction == "ADMIN":
        return body / dose
    if decay_correction not in ("START", "NONE"):
        raise SUVError(f"DecayCorrection (0054,1102) is {decay_correction or 'missing'!r}; "
                       "expected START, ADMIN or NONE")
    half_life = _positive(item.get("RadionuclideHalfLife"), "RadionuclideHalfLife (0018,1075)")
    if decay_correction == "NONE":
        return body / dose * _uncorrected_gain(ds, half_life)
    decay_s = _decay_seconds(ds, scan_datetime(ds, earliest_acquisition))
    return body / (dose * 2.0 ** (-decay_s / half_life))


def suv_factor(ds: pydicom.Dataset, earliest_acquisition: dt.datetime | None = None,
               kind: str = "bw") -> float:
    """Factor that turns rescaled PET pixel values (Units BQML, GML or CNTS) into SUV `kind`."""
    units = str(ds.get("Units", "")).upper()
    if units == "GML":
        if kind != "bw":  # stored SUVbw: rescale by body factor ratio
            return body_factor(ds, kind) / body_factor(ds, "bw")
        return 1.0
    if units == "BQML":
        return bqml_factor(ds, earliest_acquisition, kind)
    if units == "CNTS":
        if ds.get(PHILIPS_SUV_FACTOR) is not None and ds[PHILIPS_SUV_FACTOR].value:
            factor = _positive(_value(ds[PHILIPS_SUV_FACTOR].value), "Philips private (7053,1000)")
            return factor * (body_factor(ds, kind) / body_factor(ds, "bw") if kind != "bw" else 1.0)
        if ds.get(PHILIPS_ACTIVITY_FACTOR) is not None and ds[PHILIPS_ACTIVITY_FACTOR].value:
            to_bqml = _positive(_value(ds[PHILIPS_ACTIVITY_FACTOR].value),
                                "Philips private (7053,1009)")
            return to_bqml * bqml_factor(ds, earliest_acquisition, kind)
        raise SUVError("Units (0054,1001) CNTS without Philips private (7053,1000) or (7053,1009)")
    raise SUVError(f"Units (0054,1001) is {units or 'missing'!r}; expected BQML, GML or CNTS")


def _value(raw) -> float:
    """Private tags may arrive as raw bytes (implicit VR): decode DS text or a double."""
    if isinstance(raw, bytes):
        try:
            return float(raw.decode("ascii").strip("\x00 "))
        except (UnicodeDecodeError, ValueError):
            return float(np.frombuffer(raw[:8], "<f8")[0]) if len(raw) >= 8 else 0.0
    return float(raw)


_SERIES_LEVEL = {
    "Units": "(0054,1001)", "DecayCorrection": "(0054,1102)", "PatientWeight": "(0010,1030)",
    "PatientSize": "(0010,1020)", "PatientSex": "(0010,0040)", "SeriesDate": "(0008,0021)",
    "SeriesTime": "(0008,0031)", "CorrectedImage": "(0028,0051)",
}
_RADIOPHARMACEUTICAL = {
    "RadionuclideTotalDose": "(0018,1074)", "RadionuclideHalfLife": "(0018,1075)",
    "RadiopharmaceuticalStartDateTime": "(0018,1078)", "RadiopharmaceuticalStartTime": "(0018,1072)",
}


def _check_consistent(datasets: Sequence[pydicom.Dataset]) -> None:
    for keyword, tag in _SERIES_LEVEL.items():
        values = {str(ds.get(keyword, "")) for ds in datasets}
        if len(values) > 1:
            raise SUVError(f"inconsistent {keyword} {tag} across instances: {sorted(values)}")
    for keyword, tag in _RADIOPHARMACEUTICAL.items():
        values = {str(_radiopharmaceutical(ds).get(keyword, "")) for ds in datasets}
        if len(values) > 1:
            raise SUVError(f"inconsistent {keyword} {tag} across instances: {sorted(values)}")


def slice_suv_factors(datasets: Sequence[pydicom.Dataset], kind: str = "bw") -> np.ndarray:
    """One factor per instance (they differ only with DecayCorrection NONE); checks consistency."""
    if not datasets:
        raise SUVError("no PET instances given")
    _check_consistent(datasets)
    acquisitions = [a for ds in datasets
                    if (a := _date_time(ds, "AcquisitionDate", "AcquisitionTime")) is not None]
    earliest = min(acquisitions) if acquisitions else None
    if str(datasets[0].get("DecayCorrection", "")).upper() == "NONE":
        return np.array([suv_factor(ds, earliest, kind) for ds in datasets])
    return np.full(len(datasets), suv_factor(datasets[0], earliest, kind))


def series_suv_factor(datasets: Sequence[pydicom.Dataset], kind: str = "bw") -> float:
    """One SUV factor for a whole series; refuses series-level tags that differ by instance."""
    factors = slice_suv_factors(datasets, kind)
    if np.ptp(factors) > 1e-9 * float(factors.max()):
        raise SUVError("DecayCorrection (0054,1102) NONE: the SUV factor differs per frame; "
                       "use slice_suv_factors")
    log.debug("SUV%s factor %.6g for series %s", kind, factors[0],
              datasets[0].get("SeriesInstanceUID", "?"))
    return float(factors[0])


def to_suv(datasets: Sequence[pydicom.Dataset], values: np.ndarray, kind: str = "bw") -> np.ndarray:
    """Rescaled PET values (z, y, x; slices in `datasets` order) -> SUV float32.

    Per-slice rescale is applied when loading (`pipeline.series`); per-slice SUV factors
    (DecayCorrection NONE) need one slice per dataset.
    """
    factors = slice_suv_factors(datasets, kind)
    values = np.asarray(values, np.float32)
    if np.ptp(factors) <= 1e-9 * float(factors.max()):
        return values * np.float32(factors[0])
    if values.shape[0] != len(datasets):
        raise SUVError(f"per-slice SUV factors (DecayCorrection NONE) need one slice per "
                       f"instance: {values.shape[0]} slices, {len(datasets)} instances")
    return values * factors.astype(np.float32)[:, None, None]
