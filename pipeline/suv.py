"""SUVbw from PET DICOM headers (QIBA vendor-neutral pseudo-code).

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


def bqml_factor(ds: pydicom.Dataset, earliest_acquisition: dt.datetime | None = None) -> float:
    """Bq/ml -> SUVbw: weight[g] / decayed injected dose[Bq]."""
    corrected = {str(v).upper() for v in (ds.get("CorrectedImage") or [])}
    missing = {"ATTN", "DECY"} - corrected
    if missing:
        raise SUVError(f"CorrectedImage (0028,0051) lacks {'/'.join(sorted(missing))}: "
                       "SUV needs attenuation- and decay-corrected activity")
    weight = _positive(ds.get("PatientWeight"), "PatientWeight (0010,1030)")
    item = _radiopharmaceutical(ds)
    dose = _positive(item.get("RadionuclideTotalDose"), "RadionuclideTotalDose (0018,1074)")
    decay_correction = str(ds.get("DecayCorrection", "")).upper()
    if decay_correction == "ADMIN":
        return weight * 1000.0 / dose
    if decay_correction != "START":
        raise SUVError(f"DecayCorrection (0054,1102) is {decay_correction or 'missing'!r}; "
                       "only START and ADMIN are supported")
    half_life = _positive(item.get("RadionuclideHalfLife"), "RadionuclideHalfLife (0018,1075)")
    scan = scan_datetime(ds, earliest_acquisition)
    decay_s = (scan - injection_datetime(ds, scan)).total_seconds()
    if decay_s < 0:
        raise SUVError(f"negative decay time ({decay_s:.0f} s): RadiopharmaceuticalStartDateTime "
                       "(0018,1078) is after the scan time")
    return weight * 1000.0 / (dose * 2.0 ** (-decay_s / half_life))


def suv_factor(ds: pydicom.Dataset, earliest_acquisition: dt.datetime | None = None) -> float:
    """Factor that turns rescaled PET pixel values (Units BQML, GML or CNTS) into SUVbw."""
    units = str(ds.get("Units", "")).upper()
    if units == "GML":
        return 1.0
    if units == "BQML":
        return bqml_factor(ds, earliest_acquisition)
    if units == "CNTS":
        if ds.get(PHILIPS_SUV_FACTOR) is not None and ds[PHILIPS_SUV_FACTOR].value:
            return _positive(_value(ds[PHILIPS_SUV_FACTOR].value), "Philips private (7053,1000)")
        if ds.get(PHILIPS_ACTIVITY_FACTOR) is not None and ds[PHILIPS_ACTIVITY_FACTOR].value:
            to_bqml = _positive(_value(ds[PHILIPS_ACTIVITY_FACTOR].value),
                                "Philips private (7053,1009)")
            return to_bqml * bqml_factor(ds, earliest_acquisition)
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


_SERIES_LEVEL = ("Units", "DecayCorrection", "PatientWeight", "SeriesDate", "SeriesTime")


def series_suv_factor(datasets: Sequence[pydicom.Dataset]) -> float:
    """One SUVbw factor for a whole series; refuses series-level tags that differ by instance."""
    if not datasets:
        raise SUVError("no PET instances given")
    first = datasets[0]
    for keyword in _SERIES_LEVEL:
        values = {str(ds.get(keyword, "")) for ds in datasets}
        if len(values) > 1:
            raise SUVError(f"inconsistent {keyword} across instances: {sorted(values)}")
    doses = {str(_radiopharmaceutical(ds).get("RadionuclideTotalDose", "")) for ds in datasets}
    if len(doses) > 1:
        raise SUVError(f"inconsistent RadionuclideTotalDose (0018,1074) across instances: {doses}")
    acquisitions = [a for ds in datasets
                    if (a := _date_time(ds, "AcquisitionDate", "AcquisitionTime")) is not None]
    factor = suv_factor(first, min(acquisitions) if acquisitions else None)
    log.debug("SUVbw factor %.6g for series %s", factor, first.get("SeriesInstanceUID", "?"))
    return factor


def to_suv(datasets: Sequence[pydicom.Dataset], values: np.ndarray) -> np.ndarray:
    """Rescaled PET values (z, y, x; slices in `datasets` order) -> SUVbw float32."""
    return (np.asarray(values, np.float32) * np.float32(series_suv_factor(datasets)))
