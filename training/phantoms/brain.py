"""Synthetic paired brain MR/PET studies written as real DICOM (GANBERT training data).

Why: the MR -> PET recipe needs paired T1 MR and two-time-step PET in SUVR, and no patient data
ships. Each case has a BrainWeb-like T1 (WM 154, GM 106, CSF 48, skin 92, dark skull; 0.9..1.1
bias field; Rician noise) on a fine grid and PET on its own grid (2x the MR spacing, origin
offset by half an MR voxel), amyloid- or FDG-like uptake with cortical hot regions of varying
extent, stored in Bq/ml with full radiopharmaceutical headers so SUV must be computed.

SUVR is defined by the whole-cerebellum reference (as for AV45 in ADNI): the uptake map is
scaled so the mean over `BrainCaseInfo.reference_mask(grid)` is 1 before blurring and noise.

MR correlate of amyloid (a modelling choice, stated plainly): amyloid itself is invisible on
T1, so a network can only predict what the T1 carries. Amyloid cases therefore get the
structural changes that accompany amyloid positivity in Alzheimer's disease imaging studies,
exaggerated so a small phantom set can teach them: a positive scan has global atrophy (wider
sulci, larger ventricles) and lower grey/white T1 contrast, and each hot region has local
cortical thinning (wider sulci) and a brighter (less grey/white-contrasted) cortical T1 signal
in proportion to its uptake increase. In real patients this coupling is much weaker and
regional amyloid cannot be read off a T1; FDG cases keep no such coupling.

Time-steps: two PET series (one per frame, SeriesType STATIC, FrameReferenceTime set, series
numbers 2 and 3) rather than one dynamic series, because every series then loads with the
pipeline's single-frame, one-position-per-slice loader unchanged.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from scipy.ndimage import gaussian_filter

from training.phantoms.anatomy import Grid
from training.phantoms.dicom_writer import StudyInfo, write_series

log = logging.getLogger(__name__)

AIR, SKIN, SKULL, CSF, GM, WM, CB_GM, CB_WM = range(8)
T1 = {AIR: 0.0, SKIN: 92.0, SKULL: 25.0, CSF: 48.0, GM: 106.0, WM: 154.0, CB_GM: 106.0,
      CB_WM: 154.0}
HEAD_SEMI = (72.0, 92.0, 85.0)  # x, y, z mm
CEREBELLUM = ((0.0, -50.0, -42.0), (46.0, 26.0, 20.0))  # centre, semi-axes (x, y, z) mm
REF_CORE = 0.8  # reference region: inner 80% of the cerebellum ellipsoid, inside the brain
F18_HALF_LIFE_S = 6586.2
DATE, MR_TIME, PET_TIME = "20260101", "100000", "110000"
FRAME_MS = 300_000
TRACERS = {  # name: (drug meaning, code value, scheme, dose MBq, cerebellum SUV range)
    "amyloid": ("Florbetapir F^18^", "126502", "DCM", 370.0, (0.9, 1.3)),
    "fdg": ("Fluorodeoxyglucose F^18^", "35321007", "SCT", 250.0, (6.0, 8.0)),
}


@dataclass
class HotRegion:
    """A cortical region of raised uptake: centre (x, y, z) mm, radius mm, SUVR added to GM."""

    centre_mm: tuple[float, float, float]
    radius_mm: float
    suvr_increase: float


@dataclass
class BrainCaseInfo:
    """Where a brain study was written and its ground truth (for tests and metrics)."""

    seed: int
    mr_dir: Path
    pet_dirs: list[Path]
    mr_paths: list[Path]
    pet_paths: list[list[Path]]  # one file list per time-step
    study_uid: str
    tracer: str
    hot_regions: list[HotRegion]
    reference_suv: float
    frame_scales: list[float] = field(default_factory=list)
    atrophy: float = 0.0  # 0 = none; ~1 = an amyloid-positive brain (see the module docstring)

    def labels(self, grid: Grid) -> np.ndarray:
        """The case's tissue labels (with its atrophy and thinning) on any identity grid."""
        return case_labels(grid, self.seed, self.tracer, self.atrophy, self.hot_regions)

    @classmethod
    def truth_from_json(cls, d: dict) -> tuple[int, str, float, list[HotRegion]]:
        """(seed, tracer, atrophy, hot regions) of a `to_json` record (cases.json)."""
        hot = [HotRegion(tuple(h["centre_mm"]), h["radius_mm"], h["suvr_increase"])
               for h in d.get("hot_regions", [])]
        return int(d["seed"]), str(d["tracer"]), float(d.get("atrophy", 0.0)), hot

    @staticmethod
    def reference_mask(grid: Grid) -> np.ndarray:
        """Whole-cerebellum reference region (core) on any identity-direction grid."""
        z, y, x = _coords(grid)
        return (_ellipsoid(x, y, z, *CEREBELLUM) <= REF_CORE) & (_head_r(x, y, z) <= 0.81)

    def to_json(self) -> dict:
        return {"seed": self.seed, "mr_dir": str(self.mr_dir),
                "pet_dirs": [str(p) for p in self.pet_dirs], "study_uid": self.study_uid,
                "tracer": self.tracer, "reference_suv": self.reference_suv,
                "atrophy": self.atrophy, "hot_regions": [vars(h) for h in self.hot_regions]}


def _coords(grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (grid.axis(2)[:, None, None], grid.axis(1)[None, :, None], grid.axis(0)[None, None, :])


def _ellipsoid(x, y, z, centre, semi) -> np.ndarray:
    return np.sqrt(((x - centre[0]) / semi[0]) ** 2 + ((y - centre[1]) / semi[1]) ** 2
                   + ((z - centre[2]) / semi[2]) ** 2)


def _head_r(x, y, z) -> np.ndarray:
    return _ellipsoid(x, y, z, (0.0, 0.0, 0.0), HEAD_SEMI)


def hot_weight(grid: Grid, hot: Sequence[HotRegion]) -> np.ndarray:
    """Per voxel, the summed uptake increase of the hot spheres covering it (0 elsewhere)."""
    z, y, x = _coords(grid)
    w = np.zeros(np.broadcast_shapes(z.shape, y.shape, x.shape), np.float32)
    for h in hot:
        w += h.suvr_increase * (_ellipsoid(x, y, z, h.centre_mm, (h.radius_mm,) * 3) <= 1)
    return w


def paint_labels(grid: Grid, rng: np.random.Generator, atrophy: float = 0.0,
                 hot: Sequence[HotRegion] = ()) -> np.ndarray:
    """Tissue labels: skin, skull, CSF, folded cortex over WM, ventricles, cerebellum.

    `atrophy` widens all sulci and the ventricles; each hot region widens the sulci inside it
    in proportion to its uptake increase (cortical thinning). Only 3 draws from `rng`.
    """
    z, y, x = _coords(grid)
    r = _head_r(x, y, z)
    ph = rng.uniform(0, 2 * np.pi, 3)
    fold = np.sin(x / 7 + ph[0]) * np.sin(y / 8 + ph[1]) * np.sin(z / 9 + ph[2])
    rb = r / 0.81
    labels = np.zeros(r.shape, np.uint8)
    labels[r <= 1.0] = SKIN
    labels[r <= 0.93] = SKULL
    labels[r <= 0.85] = CSF
    brain = rb <= 1.0
    labels[brain] = GM
    labels[brain & (rb < 0.80 + 0.06 * fold)] = WM
    sulcus = 0.75 - 0.15 * atrophy - 0.3 * hot_weight(grid, hot)
    labels[brain & (rb > 0.9) & (fold > sulcus)] = CSF  # sulci
    vent = 1.0 + 0.35 * atrophy
    for sx in (-10.0, 10.0):
        labels[_ellipsoid(x, y, z, (sx, 5.0, 10.0), (6.0 * vent, 20.0, 8.0 * vent)) <= 1] = CSF
    rc = _ellipsoid(x, y, z, *CEREBELLUM)
    labels[brain & (rc <= 1)] = CB_GM
    labels[brain & (rc <= 0.55)] = CB_WM
    return labels


def case_labels(grid: Grid, seed: int, tracer: str, atrophy: float,
                hot: Sequence[HotRegion]) -> np.ndarray:
    """Labels of the case made with `seed` (hot regions thin the cortex for amyloid only)."""
    coupled = hot if tracer == "amyloid" else []
    return paint_labels(grid, np.random.default_rng(seed), atrophy, coupled)


def _mr_stored(labels: np.ndarray, grid: Grid, rng: np.random.Generator, atrophy: float = 0.0,
               hot: Sequence[HotRegion] = ()) -> np.ndarray:
    """T1 intensities, partial volume blur, 0.9..1.1 bias field, Rician noise; int16.

    Grey matter is brightened (lower grey/white contrast) by 6% x `atrophy` everywhere and by
    20% x the uptake increase inside hot regions: the learnable MR side of amyloid here.
    """
    gain = rng.uniform(0.9, 1.1)  # scanner gain (removed by the z-score) ...
    lut = np.zeros(8, np.float32)
    for k, v in T1.items():  # ... and small per-tissue variation
        lut[k] = v * gain * rng.uniform(0.98, 1.02) if v else 0.0
    img = lut[labels]
    gm = labels == GM
    img[gm] *= 1.0 + 0.06 * atrophy + 0.2 * hot_weight(grid, hot)[gm]
    img = gaussian_filter(img, 0.6)
    z, y, x = _coords(grid)
    c = rng.uniform(-1, 1, 4)
    field_ = (c[0] * x / HEAD_SEMI[0] + c[1] * y / HEAD_SEMI[1] + c[2] * z / HEAD_SEMI[2]
              + c[3] * (x / HEAD_SEMI[0]) * (y / HEAD_SEMI[1]))
    field_ = field_ / max(float(np.abs(field_).max()), 1e-6)
    img = img * (1.0 + 0.1 * field_)
    sigma = float(rng.uniform(2.0, 5.0))
    n1 = rng.standard_normal(img.shape, dtype=np.float32) * sigma
    n2 = rng.standard_normal(img.shape, dtype=np.float32) * sigma
    img = np.sqrt((img + n1) ** 2 + n2**2)
    return np.clip(np.round(img), 0, 32000).astype(np.int16)


def _draw_uptake(labels: np.ndarray, grid: Grid, tracer: str, rng: np.random.Generator
                 ) -> tuple[dict[int, float], list[HotRegion], float]:
    """Tissue SUVRs, hot cortical regions (on `labels`' cortex) and the case's atrophy."""
    u = rng.uniform
    positive = tracer == "amyloid" and rng.random() < 0.5
    if tracer == "amyloid":
        gm = u(1.3, 1.6) if positive else u(1.0, 1.15)  # positive or negative scan
        vals = {SKIN: 0.4, SKULL: 0.3, CSF: 0.3, GM: gm, WM: u(1.6, 2.0), CB_GM: 1.0,
                CB_WM: u(1.4, 1.7)}
        hot_range = (0.4, 1.0)
    else:
        vals = {SKIN: 0.15, SKULL: 0.2, CSF: 0.1, GM: u(1.05, 1.25), WM: u(0.3, 0.4),
                CB_GM: 1.0, CB_WM: 0.35}
        hot_range = (0.5, 1.5)
    z, y, x = _coords(grid)
    cortex = np.argwhere(labels == GM)
    hot: list[HotRegion] = []
    for _ in range(int(rng.integers(1, 5)) if cortex.size else 0):
        iz, iy, ix = cortex[rng.integers(len(cortex))]
        centre = (float(x[0, 0, ix]), float(y[0, iy, 0]), float(z[iz, 0, 0]))
        radius, inc = float(u(8.0, 30.0)), float(u(*hot_range))
        hot.append(HotRegion(tuple(round(c, 2) for c in centre), round(radius, 2), round(inc, 3)))
    atrophy = round(float(u(0.7, 1.0)), 3) if positive else 0.0
    return vals, hot, atrophy


def _suvr_map(labels: np.ndarray, grid: Grid, vals: dict[int, float], hot: list[HotRegion]
              ) -> np.ndarray:
    """Noise-free SUVR on the MR grid, mean 1 over the cerebellar reference region."""
    lut = np.zeros(8, np.float32)
    for k, v in vals.items():
        lut[k] = v
    suvr = lut[labels] + hot_weight(grid, hot) * (labels == GM)
    ref = BrainCaseInfo.reference_mask(grid)
    if ref.any():
        suvr = suvr / float(suvr[ref].mean())
    return suvr.astype(np.float32)


def _to_pet_grid(suvr: np.ndarray, grid: Grid, fwhm_mm: float) -> np.ndarray:
    """Blur with the PET resolution, then average 2x2x2 blocks onto the PET grid."""
    sig = [fwhm_mm / 2.3548 / s for s in (grid.spacing[2], grid.spacing[1], grid.spacing[0])]
    act = gaussian_filter(suvr, sig, mode="constant")
    nz, ny, nx = (s // 2 for s in suvr.shape)
    return act[: 2 * nz, : 2 * ny, : 2 * nx].reshape(nz, 2, ny, 2, nx, 2).mean(axis=(1, 3, 5))


def _pet_headers(tracer: str, weight: float, dose: float, inj: dt.datetime, n: int,
                 frame: int) -> dict:
    """Series attributes of one PET frame: Bq/ml, ATTN+DECY, decay corrected to series START."""
    meaning, code_value, scheme, _, _ = TRACERS[tracer]
    item = Dataset()
    item.Radiopharmaceutical = meaning.replace("^", "").replace(" F18", "")
    item.RadiopharmaceuticalStartTime = inj.strftime("%H%M%S")
    item.RadiopharmaceuticalStartDateTime = inj.strftime("%Y%m%d%H%M%S")
    item.RadionuclideTotalDose = f"{dose:.0f}"
    item.RadionuclideHalfLife = f"{F18_HALF_LIFE_S}"
    item.RadionuclidePositronFraction = "0.9673"
    nuclide = Dataset()
    nuclide.CodeValue, nuclide.CodingSchemeDesignator = "77004003", "SCT"
    nuclide.CodeMeaning = "^18^F"
    item.RadionuclideCodeSequence = [nuclide]
    drug = Dataset()
    drug.CodeValue, drug.CodingSchemeDesignator, drug.CodeMeaning = code_value, scheme, meaning
    item.RadiopharmaceuticalCodeSequence = [drug]
    start = dt.datetime.strptime(DATE + PET_TIME, "%Y%m%d%H%M%S")
    acq = (start + dt.timedelta(milliseconds=frame * FRAME_MS)).strftime("%H%M%S")
    return {
        "SeriesTime": PET_TIME, "AcquisitionTime": acq, "ContentTime": acq,
        "Units": "BQML", "CountsSource": "EMISSION", "SeriesType": ["STATIC", "IMAGE"],
        "CorrectedImage": ["NORM", "DTIM", "ATTN", "SCAT", "DECY", "RAN"],
        "DecayCorrection": "START", "DecayFactor": "1",
        "FrameReferenceTime": f"{frame * FRAME_MS + FRAME_MS / 2:.0f}",
        "ActualFrameDuration": FRAME_MS, "NumberOfSlices": n, "RandomsCorrectionMethod": "DLYD",
        "AttenuationCorrectionMethod": "CTAC", "ReconstructionMethod": "OSEM",
        "CollimatorType": "NONE", "RadiopharmaceuticalInformationSequence": [item],
        "PatientOrientationCodeSequence": [], "PatientGantryRelationshipCodeSequence": [],
        "PatientPosition": None, "ImageType": ["ORIGINAL", "PRIMARY"],
    }


def make_brain_case(out_dir: Path, seed: int, *, shape: tuple[int, int, int] = (256, 256, 256),
                    fov_mm: float = 256.0, tracer: str = "amyloid", pet_fwhm_mm: float = 6.0
                    ) -> BrainCaseInfo:
    """Write MR (`out_dir/MR`) and two PET frames (`out_dir/PT1`, `PT2`); return ground truth.

    MR spacing is `fov_mm / shape` (1 mm at the default 256^3), PET spacing twice that.
    """
    if tracer not in TRACERS:
        raise ValueError(f"unknown tracer {tracer!r}; known: {sorted(TRACERS)}")
    if any(s % 2 for s in shape):
        raise ValueError(f"MR shape must be even on every axis, got {shape}")
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    nz, ny, nx = shape
    sp = (fov_mm / nx, fov_mm / ny, fov_mm / nz)
    mr = Grid(tuple(-(n - 1) / 2 * s for n, s in zip((nx, ny, nz), sp, strict=True)), sp, shape)
    vals, hot, atrophy = _draw_uptake(paint_labels(mr, rng), mr, tracer, rng)
    coupled = hot if tracer == "amyloid" else []  # MR correlate of amyloid only
    labels = case_labels(mr, seed, tracer, atrophy, hot)
    weight = round(float(rng.uniform(50, 100)), 1)
    study = StudyInfo(patient_id=f"BRAIN-{seed:06d}", patient_weight_kg=weight, study_date=DATE,
                      study_time=MR_TIME, accession_number=f"BRN{seed:06d}",
                      study_instance_uid=generate_uid(entropy_srcs=[f"vpet-brain-study-{seed}"]),
                      frame_of_reference_uid=generate_uid(entropy_srcs=[f"vpet-brain-for-{seed}"]),
                      body_part="HEAD")
    mr_stored = _mr_stored(labels, mr, rng, atrophy, coupled)
    mr_paths = write_series(mr_stored, mr.spacing, mr.origin, out_dir / "MR",
                            modality="MR", study=study, series_number=1,
                            series_description="Phantom T1 MPRAGE")
    suvr = _suvr_map(labels, mr, vals, hot)
    del labels
    pet_sp = tuple(2 * s for s in sp)
    pet_origin = tuple(o + s / 2 for o, s in zip(mr.origin, sp, strict=True))
    _, _, _, dose_mbq, ref_range = TRACERS[tracer]
    ref_suv = round(float(rng.uniform(*ref_range)), 3)
    dose = round(dose_mbq * 1e6 * float(rng.uniform(0.9, 1.1)), -5)
    inj = dt.datetime.strptime(DATE + PET_TIME, "%Y%m%d%H%M%S") - dt.timedelta(minutes=50)
    delay = 50 * 60.0
    bq_per_suv = dose * 2.0 ** (-delay / F18_HALF_LIFE_S) / (weight * 1000.0)
    base = _to_pet_grid(suvr, mr, pet_fwhm_mm)
    pet_dirs, pet_paths, scales = [], [], []
    for frame in range(2):
        scale = 1.0 + 0.08 * frame  # specific binding keeps rising a little over time
        frame_suvr = 1.0 + (base - 1.0) * scale
        k = float(rng.uniform(0.005, 0.015))
        noisy = frame_suvr + np.sqrt(np.maximum(frame_suvr, 0) * k) * rng.standard_normal(
            frame_suvr.shape).astype(np.float32)
        bqml = np.maximum(noisy, 0) * ref_suv * bq_per_suv
        slopes = [max(float(s.max()), 1.0) / 32000.0 for s in bqml]
        stored = np.stack([np.round(s / q) for s, q in zip(bqml, slopes, strict=True)])
        folder = out_dir / f"PT{frame + 1}"
        pet_paths.append(write_series(
            stored.astype(np.int16), pet_sp, pet_origin, folder, modality="PT", study=study,
            series_number=2 + frame, rescale=[(q, 0.0) for q in slopes],
            series_description=f"Phantom {tracer} PET frame {frame + 1} (Bq/ml)",
            extra=_pet_headers(tracer, weight, dose, inj, stored.shape[0], frame),
            extra_per_slice=[{"ImageIndex": i + 1} for i in range(stored.shape[0])]))
        pet_dirs.append(folder)
        scales.append(scale)
    log.info("brain phantom %d: MR %s @ %.2f mm, %s, %d hot regions", seed, shape, sp[0],
             tracer, len(hot))
    return BrainCaseInfo(seed, out_dir / "MR", pet_dirs, mr_paths, pet_paths,
                         study.study_instance_uid, tracer, hot, ref_suv, scales, atrophy)
