"""Synthetic paired abdomen FDG PET/CT studies written as real DICOM.

Why: no pretrained weights and no patient data ship with the product, so the demonstration
model is trained and tested on phantoms that go through the same DICOM path as clinical data:
CT on a fine grid, PET on its own coarse grid with an offset origin, blurred and noisy, stored
in Bq/ml with the radiopharmaceutical headers so SUV has to be computed, not assumed.

Generality (a model is judged on phantoms this project did not make): body habitus, organ
sizes/positions and liver shape vary (anatomy.py), so do contrast phase (non-contrast or portal
venous), CT noise, slice thickness, field of view, PET grid and PET resolution. About a fifth of
the cases have no lesion at all.

Lesion kinds and what a CT-only model can see:
- "hypodense": FDG-avid, 15-35 HU below liver with a faint enhancing rim.
- "isodense": FDG-avid and close to liver density (within ~12 HU), but NOT invisible: a lesion
  with no CT signal at all cannot be found by any CT -> PET model, so iso-dense here means a
  faint hypodense core (liver - 5..12 HU) with a thin rim 10-18 HU above liver, i.e. a subtle
  but real CT signature, as subtle lesions have on real portal-venous CT.
- "cyst": the paper's confounder, a benign hypodense region with low uptake (SUV 0.3-1.2):
  water density (-5..10 HU), homogeneous, sharp margin, no rim.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset
from scipy.ndimage import gaussian_filter

from training.ct_noise import correlated
from training.phantoms import anatomy as A
from training.phantoms.dicom_writer import StudyInfo, write_series

log = logging.getLogger(__name__)

F18_HALF_LIFE_S = 6586.2
KINDS = ("hypodense", "isodense", "cyst")
KIND_P = (0.5, 0.2, 0.3)
CT_NOISE_HU = (5.0, 18.0)  # CT noise sigma range (HU) a case draws from
PET_GRIDS = ((4.07, 4.07, 3.27), (4.0, 4.0, 4.0), (3.65, 3.65, 3.27), (5.47, 5.47, 3.27),
             (3.0, 3.0, 2.0))
CT_TIME, PET_TIME, DATE = "140100", "140500", "20260101"
LIVER_MASK = "liver_mask.nii.gz"


@dataclass
class PhantomLesion:
    """One liver lesion: centre (x, y, z) mm LPS, diameter mm, true (unblurred) peak SUV, kind."""

    centre_mm: tuple[float, float, float]
    diameter_mm: float
    suv_max: float
    kind: str  # "hypodense" | "isodense" (both FDG-avid) | "cyst" (benign, low uptake)
    hu: float
    rim: bool = True  # malignant kinds: the CT profile has its rim (False: a flat sphere)

    @property
    def hot(self) -> bool:
        return self.kind != "cyst"


@dataclass
class CaseInfo:
    """Where a phantom study was written and what it contains (ground truth for tests/metrics)."""

    seed: int
    ct_dir: Path
    pet_dir: Path | None
    ct_paths: list[Path]
    pet_paths: list[Path]
    lesions: list[PhantomLesion]
    study_uid: str
    frame_of_reference_uid: str
    patient_weight_kg: float
    injected_dose_bq: float
    liver_point_mm: tuple[float, float, float]
    liver_mask: Path | None = None  # NIfTI label of the liver on the CT grid (paired studies)

    def to_json(self) -> dict:
        """JSON-friendly summary (paths as strings, no file lists; the liver mask relative to
        the folder holding the study folder, where `cases.json` is written)."""
        mask = (f"{self.liver_mask.parent.name}/{self.liver_mask.name}"
                if self.liver_mask else None)
        return {"seed": self.seed, "ct_dir": str(self.ct_dir),
                "pet_dir": str(self.pet_dir) if self.pet_dir else None,
                "lesions": [asdict(x) for x in self.lesions], "study_uid": self.study_uid,
                "liver_point_mm": list(self.liver_point_mm),
                "patient_weight_kg": self.patient_weight_kg, "liver_mask": mask}


def _luts(rng: np.random.Generator, contrast: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-case HU and SUV per tissue label (REFERENCE.md phantom values); `contrast`: portal
    venous phase (enhanced liver, spleen, kidneys and blood)."""
    u = rng.uniform
    hu = {A.AIR: -1000, A.FAT: u(-110, -70), A.MUSCLE: u(10, 40), A.VFAT: u(-110, -80),
          A.BOWEL: u(10, 40), A.LIVER: u(45, 65), A.SPLEEN: u(35, 55), A.KIDNEY: u(20, 40),
          A.CANCELLOUS: u(120, 250), A.CORTICAL: u(700, 1200), A.CSF: u(0, 15),
          A.BLOOD: u(40, 55), A.LUNG: u(-850, -700), A.DISC: u(70, 100)}
    if contrast:
        hu.update({A.LIVER: u(90, 120), A.SPLEEN: u(100, 130), A.KIDNEY: u(150, 200),
                   A.BLOOD: u(140, 190), A.BOWEL: u(20, 60)})
    suv = {A.AIR: 0.0, A.FAT: u(0.3, 0.5), A.MUSCLE: u(0.6, 0.8), A.VFAT: u(0.3, 0.5),
           A.BOWEL: u(0.9, 1.6), A.LIVER: u(1.7, 2.1), A.SPLEEN: u(1.6, 2.0),
           A.KIDNEY: u(3.0, 7.0), A.CANCELLOUS: u(0.9, 1.1), A.CORTICAL: u(0.3, 0.5),
           A.CSF: 0.3, A.BLOOD: u(1.4, 2.2), A.LUNG: u(0.6, 0.8), A.DISC: 0.5}
    hu_lut, suv_lut = np.zeros(256, np.float32), np.zeros(256, np.float32)
    for k, value in hu.items():
        hu_lut[k], suv_lut[k] = value, suv[k]
    return hu_lut, suv_lut


def _sphere(grid: A.Grid, lesion: PhantomLesion) -> tuple[tuple[slice, ...], np.ndarray]:
    """Bounding box and normalized radius r/R (r <= 1 inside) of a lesion on `grid`."""
    r = lesion.diameter_mm / 2
    shape = A.Shape(0, lesion.centre_mm, (r, r, r))
    box, _ = A.shape_mask(shape, grid)
    c = lesion.centre_mm
    d2 = [((grid.axis(i)[box[2 - i]] - c[i]) / r) ** 2 for i in range(3)]
    rn = np.sqrt(d2[2][:, None, None] + d2[1][None, :, None] + d2[0][None, None, :])
    return box, rn


def _place_lesions(rng, liver: A.Shape, labels: np.ndarray, grid: A.Grid, n: int,
                   kinds: Sequence[str], diam: tuple[float, float], liver_hu: float,
                   kind_p: Sequence[float] | None = None, rims: bool = True
                   ) -> list[PhantomLesion]:
    """Lesion centres inside the liver, within the CT z range, not overlapping each other."""
    z_ax = grid.axis(2)
    out: list[PhantomLesion] = []
    for _ in range(n * 40):
        if len(out) == n:
            break
        d = float(rng.uniform(*diam))
        u = rng.normal(size=3)
        u *= rng.uniform(0, 0.65) / np.linalg.norm(u)
        c = np.array(liver.centre) + u * np.array(liver.semi)
        c[2] = np.clip(c[2], z_ax[0] + d / 3, z_ax[-1] - d / 3)
        idx = [round(float((c[i] - grid.origin[i]) / grid.spacing[i])) for i in (2, 1, 0)]
        if not all(0 <= v < s for v, s in zip(idx, grid.shape, strict=True)):
            continue
        if labels[tuple(idx)] != A.LIVER:
            continue
        if any(np.linalg.norm(c - np.array(o.centre_mm)) < (d + o.diameter_mm) / 2 + 4
               for o in out):
            continue
        kind = str(rng.choice(list(kinds), p=_kind_p(kinds, kind_p)))
        if kind == "cyst":
            suv, hu = float(rng.uniform(0.3, 1.2)), float(rng.uniform(-5, 10))  # water density
        else:
            suv = float(rng.uniform(3, 15))
            hu = (max(liver_hu - rng.uniform(15, 35), 20.0) if kind == "hypodense"
                  else liver_hu - rng.uniform(5, 12))
        out.append(PhantomLesion(tuple(round(float(v), 2) for v in c), round(d, 2),
                                 round(suv, 3), kind, round(float(hu), 1), rims))
    return out


def _kind_p(kinds: Sequence[str], weights: Sequence[float] | None = None) -> list[float]:
    p = [(weights or KIND_P)[KINDS.index(k)] for k in kinds]
    return [v / sum(p) for v in p]


def _ct_volume(rng, shapes, grid: A.Grid, hu_lut, lesions,
               noise_hu: tuple[float, float] = CT_NOISE_HU,
               grain_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """CT stored values (int16, HU + 1024) and the label volume; noise sigma drawn in `noise_hu`,
    white, or with `grain_mm` > 0 correlated in-plane like a scanner's (training.ct_noise; at
    the same sigma it survives the model grid's low-pass far more than white noise does). The
    same normals are drawn either way, so a seed keeps its anatomy, lesions and PET."""
    labels = A.paint(shapes, grid)
    hu = hu_lut[labels]
    for les in lesions:
        box, rn = _sphere(grid, les)
        inside = (rn <= 1.0) & (labels[box] == A.LIVER)
        hu[box] = np.where(inside, lesion_ct_hu(les, rn, float(hu_lut[A.LIVER])), hu[box])
    sigma = float(rng.uniform(*noise_hu))
    for k in range(0, hu.shape[0], 32):  # chunked noise keeps memory flat for big volumes
        noise = rng.standard_normal(hu[k:k + 32].shape, dtype=np.float32)
        hu[k:k + 32] += correlated(noise, grain_mm / grid.spacing[0]) * sigma
    return np.clip(hu + 1024, 0, 4095).astype(np.int16), labels


def lesion_ct_hu(les: PhantomLesion, rn: np.ndarray, liver_hu: float) -> np.ndarray | float:
    """CT value inside a lesion: rims for malignant kinds (see module docstring), flat cysts;
    a lesion drawn without its rim (`les.rim` False) is a flat sphere at its core value."""
    if not les.rim:
        return les.hu
    if les.kind == "hypodense":
        return np.where(rn > 0.7, les.hu + 15.0, les.hu)
    if les.kind == "isodense":
        rim = 0.8 if les.diameter_mm > 10 else 0.65  # at least ~2 mm on small lesions
        return np.where(rn > rim, liver_hu + 14.0, les.hu)
    return les.hu


def _pet_suv(rng, shapes, pet: A.Grid, suv_lut, lesions, fwhm: float) -> np.ndarray:
    """PET SUV on `pet`: tissues and lesions on a 2x finer grid, blurred, pooled, noisy."""
    fine_sp = tuple(s / 2 for s in pet.spacing)
    fine = A.Grid(tuple(o - s / 4 for o, s in zip(pet.origin, pet.spacing, strict=True)),
                  fine_sp, tuple(2 * n for n in pet.shape))
    labels = A.paint(shapes, fine)
    act = suv_lut[labels]
    for les in lesions:
        box, rn = _sphere(fine, les)
        inside = (rn <= 1.0) & (labels[box] == A.LIVER)
        bg = suv_lut[A.LIVER]
        value = (np.full(rn.shape, les.suv_max, np.float32) if les.kind == "cyst"
                 else bg + (les.suv_max - bg) * (1 - 0.5 * rn**2))
        act[box] = np.where(inside, value, act[box])
    sig = [fwhm / 2.3548 / s for s in (fine_sp[2], fine_sp[1], fine_sp[0])]
    act = gaussian_filter(act, sig, mode="constant")
    nz, ny, nx = pet.shape
    act = act.reshape(nz, 2, ny, 2, nx, 2).mean(axis=(1, 3, 5))
    k = float(rng.uniform(0.012, 0.025))  # Poisson-like: variance proportional to activity
    act = act + np.sqrt(np.maximum(act, 0) * k) * rng.standard_normal(act.shape).astype(np.float32)
    return np.maximum(act, 0).astype(np.float32)


def _liver_point(labels: np.ndarray, grid: A.Grid, liver: A.Shape, lesions) -> tuple:
    """A liver voxel centre near the liver centre, >= 15 mm from every lesion edge and >= 6 mm
    inside the scanned z range (a safe reference region for tests and metrics)."""
    idx = np.argwhere(labels[:, ::2, ::2] == A.LIVER) * np.array([1, 2, 2])
    if idx.size == 0:
        return tuple(float(v) for v in liver.centre)
    pts = np.array(grid.origin)[::-1] + idx * np.array(grid.spacing)[::-1]  # z, y, x mm
    z_ax = grid.axis(2)
    ok = (pts[:, 0] >= z_ax[0] + 6) & (pts[:, 0] <= z_ax[-1] - 6)  # not on the end slices
    for les in lesions:
        ok &= np.linalg.norm(pts - np.array(les.centre_mm)[::-1], axis=1) > les.diameter_mm / 2 + 15
    pts = pts[ok] if ok.any() else pts
    best = pts[np.argmin(np.linalg.norm(pts - np.array(liver.centre)[::-1], axis=1))]
    return tuple(round(float(v), 2) for v in best[::-1])


def _pet_headers(weight: float, dose: float, inj: dt.datetime, n: int) -> dict:
    """Series-level PET attributes: Bq/ml, ATTN+DECY corrected, decay to START, F-18 FDG."""
    item = Dataset()
    item.Radiopharmaceutical = "Fludeoxyglucose"
    item.RadiopharmaceuticalStartTime = inj.strftime("%H%M%S")
    item.RadiopharmaceuticalStartDateTime = inj.strftime("%Y%m%d%H%M%S")
    item.RadionuclideTotalDose = f"{dose:.0f}"
    item.RadionuclideHalfLife = f"{F18_HALF_LIFE_S}"
    item.RadionuclidePositronFraction = "0.9673"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "77004003", "SCT", "^18^F"
    item.RadionuclideCodeSequence = [code]
    drug = Dataset()
    drug.CodeValue, drug.CodingSchemeDesignator = "35321007", "SCT"
    drug.CodeMeaning = "Fluorodeoxyglucose F^18^"
    item.RadiopharmaceuticalCodeSequence = [drug]
    return {
        "SeriesTime": PET_TIME, "AcquisitionTime": PET_TIME, "ContentTime": PET_TIME,
        "Units": "BQML", "CountsSource": "EMISSION", "SeriesType": ["STATIC", "IMAGE"],
        "CorrectedImage": ["NORM", "DTIM", "ATTN", "SCAT", "DECY", "RAN"],
        "DecayCorrection": "START", "DecayFactor": "1", "FrameReferenceTime": "0",
        "ActualFrameDuration": 180000, "NumberOfSlices": n, "RandomsCorrectionMethod": "DLYD",
        "AttenuationCorrectionMethod": "CTAC", "ReconstructionMethod": "OSEM",
        "CollimatorType": "NONE", "RadiopharmaceuticalInformationSequence": [item],
        "PatientOrientationCodeSequence": [], "PatientGantryRelationshipCodeSequence": [],
        "PatientPosition": None,  # must be absent when the NM/PET orientation codes are present
        "ImageType": ["ORIGINAL", "PRIMARY"],
    }


def _default_slice(nz: int) -> float:
    return float(min(3.0, max(1.5, round(360.0 / nz * 2) / 2)))


def make_case(out_dir: Path, seed: int, *, ct_shape: tuple[int, int, int] = (80, 256, 256),
              ct_slice_mm: float | None = None, ct_fov_mm: float | None = None,
              pet_spacing_mm: tuple[float, float, float] | None = None,
              pet_fwhm_mm: float | None = None, n_lesions: int | None = None,
              kinds: Sequence[str] = KINDS, diameter_range_mm: tuple[float, float] = (5.0, 30.0),
              kind_p: Sequence[float] | None = None, write_pet: bool = True,
              contrast: bool | None = None, lesion_rims: bool = True,
              ct_noise_hu: tuple[float, float] = CT_NOISE_HU,
              ct_noise_grain_mm: float = 0.0) -> CaseInfo:
    """Write one phantom study (CT in `out_dir/CT`, PET in `out_dir/PT`); returns its ground truth.

    CT in-plane spacing is the field of view (random 400-460 mm) over the matrix size, so the
    same body fits a 64x64 test matrix or a 512x512 clinical one. `kind_p` weights KINDS
    (default 0.5 hypodense, 0.2 isodense, 0.3 cyst). Unset slice thickness, PET grid and PET
    resolution are drawn per case (slice thickness around the value that covers ~360 mm);
    `contrast` forces the CT phase (None: portal venous in ~35% of cases).
    `lesion_rims` False, `ct_noise_hu` and `ct_noise_grain_mm` make phantoms this generator
    does not make by default (flat lesions, other CT noise, correlated noise) from the same
    random draws, so the same seed gives the same
    anatomy and lesions: the generality checks of a model trained on the default phantoms.
    """
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    nz, ny, nx = ct_shape
    fov = float(ct_fov_mm or rng.uniform(380, 480))
    jitter = float(rng.choice([0.8, 1.0, 1.0, 1.25, 1.5]))
    base = _default_slice(nz)  # jitter, but never past ~450 mm (keeps benchmarks comparable)
    sz = float(ct_slice_mm or min(base * jitter, max(base, 450.0 / nz)))
    sxy = fov / max(nx, ny)
    drawn = bool(rng.random() < 0.35)
    contrast = drawn if contrast is None else contrast
    pet_grid = PET_GRIDS[int(rng.integers(len(PET_GRIDS)))]
    pet_spacing_mm = pet_spacing_mm or pet_grid
    pet_fwhm_mm = float(pet_fwhm_mm or rng.uniform(5.0, 8.0))
    ct = A.Grid((-(nx - 1) / 2 * sxy, -(ny - 1) / 2 * sxy, -(nz - 1) / 2 * sz), (sxy, sxy, sz),
                (nz, ny, nx))
    shapes, marks = A.abdomen_shapes(rng)
    hu_lut, suv_lut = _luts(rng, contrast)
    ct_labels = A.paint(shapes, ct)
    if n_lesions is None:
        n_lesions = 0 if rng.random() < 0.2 else int(rng.integers(1, 5))
    lesions = _place_lesions(rng, marks["liver"], ct_labels, ct, n_lesions, kinds,
                             diameter_range_mm, float(hu_lut[A.LIVER]), kind_p, lesion_rims)
    del ct_labels
    stored, labels = _ct_volume(rng, shapes, ct, hu_lut, lesions, ct_noise_hu, ct_noise_grain_mm)
    weight = round(float(rng.uniform(50, 110)), 1)
    study = StudyInfo(patient_id=f"PHANTOM-{seed:06d}", patient_weight_kg=weight,
                      study_date=DATE, study_time=CT_TIME, accession_number=f"ACC{seed:06d}",
                      study_instance_uid=_uid(f"vpet-phantom-study-{seed}"),
                      frame_of_reference_uid=_uid(f"vpet-phantom-for-{seed}"))
    ct_paths = write_series(stored, ct.spacing, ct.origin, out_dir / "CT", modality="CT",
                            study=study, series_number=1, rescale=(1.0, -1024.0),
                            series_description="Phantom abdomen CT")
    liver_pt = _liver_point(labels, ct, marks["liver"], lesions)
    mask_path = _write_liver_mask(labels, ct, out_dir / LIVER_MASK) if write_pet else None
    del stored, labels
    dose = round(float(weight * 3.7e6 * rng.uniform(0.85, 1.15)), -5)
    pet_paths: list[Path] = []
    if write_pet:
        pet_paths = _write_pet(rng, out_dir / "PT", study, shapes, suv_lut, lesions, ct,
                               pet_spacing_mm, pet_fwhm_mm, weight, dose)
    log.info("phantom %d: CT %s @ %.2f/%.2f mm, %d lesions", seed, ct_shape, sxy, sz, len(lesions))
    return CaseInfo(seed, out_dir / "CT", out_dir / "PT" if write_pet else None, ct_paths,
                    pet_paths, lesions, study.study_instance_uid, study.frame_of_reference_uid,
                    weight, dose, liver_pt, mask_path)


def _write_liver_mask(labels: np.ndarray, grid: A.Grid, path: Path) -> Path:
    """Liver label (uint8, CT grid, LPS geometry) as NIfTI: the paper counts lesions and false
    positives in the liver region, so the evaluation needs to know where the liver is."""
    img = sitk.GetImageFromArray((labels == A.LIVER).astype(np.uint8))
    img.SetOrigin(tuple(float(v) for v in grid.origin))
    img.SetSpacing(tuple(float(v) for v in grid.spacing))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), useCompression=True)
    return path


def _write_pet(rng, out: Path, study: StudyInfo, shapes, suv_lut, lesions, ct: A.Grid,
               spacing, fwhm, weight, dose) -> list[Path]:
    """PET grid covering the CT field with an offset origin; SUV -> Bq/ml, per-slice slope."""
    sx, sy, sz = (float(v) for v in spacing)
    ext = [ct.spacing[i] * (ct.shape[2 - i] - 1) for i in range(3)]
    margin = 2 * sx
    origin = (ct.origin[0] - margin - rng.uniform(0, sx), ct.origin[1] - margin - rng.uniform(0, sy),
              ct.origin[2] - rng.uniform(0, sz))
    shape = (int(np.ceil((ext[2] + sz) / sz)) + 1, int(np.ceil((ext[1] + 2 * margin) / sy)) + 2,
             int(np.ceil((ext[0] + 2 * margin) / sx)) + 2)
    shape = (shape[0], max(shape[1], shape[2]), max(shape[1], shape[2]))
    pet = A.Grid(origin, (sx, sy, sz), shape)
    suv = _pet_suv(rng, shapes, pet, suv_lut, lesions, fwhm)
    inj = dt.datetime(2026, 1, 1, 14, 5, 0) - dt.timedelta(seconds=float(rng.uniform(50, 75) * 60))
    inj = inj.replace(microsecond=0)
    delay = (dt.datetime(2026, 1, 1, 14, 5, 0) - inj).total_seconds()
    bqml = suv * (dose * 2.0 ** (-delay / F18_HALF_LIFE_S) / (weight * 1000.0))
    slopes = [max(float(s.max()), 1.0) / 32000.0 for s in bqml]
    stored = np.stack([np.round(s / k) for s, k in zip(bqml, slopes, strict=True)]).astype(np.int16)
    return write_series(stored, pet.spacing, pet.origin, out, modality="PT", study=study,
                        series_number=2, series_description="Phantom FDG PET AC (Bq/ml)",
                        rescale=[(k, 0.0) for k in slopes],
                        extra=_pet_headers(weight, dose, inj, shape[0]),
                        extra_per_slice=[{"ImageIndex": k + 1} for k in range(shape[0])])


def make_ct_only(out_dir: Path, seed: int, **kwargs) -> CaseInfo:
    """Only the CT of a phantom study (what `vpet demo` sends to the node)."""
    return make_case(out_dir, seed, write_pet=False, **kwargs)


def _uid(text: str) -> str:
    from pydicom.uid import generate_uid
    return generate_uid(entropy_srcs=[text])
