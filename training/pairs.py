"""Training pairs (CT in HU, PET in SUV) on the model grid, built from folders of PET/CT DICOM.

Why: the network learns CT -> SUV voxel by voxel, so both must sit on one grid in one patient
space. CT is resampled to the model spacing exactly as the pipeline does at inference
(`pipeline.resample`), PET is converted to SUV from its headers and resampled onto that grid.
Arrays are cached as .npz, so later epochs and later runs do no DICOM parsing.

NIfTI pairs in the autoPET layout (one folder per case with CTres.nii.gz, SUV.nii.gz and
optionally SEG.nii.gz) are read with SimpleITK (no extra dependency), put on the same model
grid (SEG by nearest neighbour) and cached the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from pipeline.errors import InputError
from pipeline.resample import CT_DEFAULT, SUV_DEFAULT, resample_onto, resample_to_spacing
from pipeline.series import load_series
from pipeline.suv import to_suv

log = logging.getLogger(__name__)
T = TypeVar("T")

SUV_CLIP = (0.0, 20.0)


@dataclass
class Pair:
    """CT (HU) and PET (SUVbw) on one grid, (z, y, x) float32; origin/spacing (x, y, z) mm."""

    ct: np.ndarray
    suv: np.ndarray
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    study_uid: str
    seg: np.ndarray | None = None  # lesion mask (autoPET SEG) on the same grid, when known

    def compact(self) -> Pair:
        """The same pair in half the memory: CT as whole HU (int16), SUV as float16. Why: the
        trainers hold every training study in memory, and at 2 mm a few hundred studies
        overflow 24 GB in float32; rounding is far below CT noise and PET precision."""
        ct = np.clip(np.rint(self.ct), -32768, 32767).astype(np.int16)
        return replace(self, ct=ct, suv=self.suv.astype(np.float16))

    def index_of(self, point_mm: Sequence[float]) -> tuple[int, int, int]:
        """(z, y, x) voxel index of a patient point (model grids are axis-aligned in LPS,
        see pipeline.resample)."""
        idx = [round((point_mm[i] - self.origin[i]) / self.spacing[i]) for i in range(3)]
        return idx[2], idx[1], idx[0]


def _files(root: Path) -> list[Path]:
    """Every file under `root`, through symlinked folders too (a training set is often links
    to studies kept elsewhere); each real folder once, so a link loop ends."""
    seen: set[str] = set()
    files = []
    for folder, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        files += [Path(folder) / n for n in names if (Path(folder) / n).is_file()]
    return sorted(files)


def find_studies(root: Path) -> list[tuple[list[Path], list[Path]]]:
    """(CT files, PT files) per study under `root`, paired by Study UID and Frame of Reference."""
    series: dict[str, list[Path]] = defaultdict(list)
    info: dict[str, tuple[str, str, str]] = {}
    for path in _files(Path(root)):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True,
                                 specific_tags=["Modality", "SeriesInstanceUID",
                                                "StudyInstanceUID", "FrameOfReferenceUID"])
        except (InvalidDicomError, OSError, ValueError, EOFError):
            log.debug("skipping %s: not DICOM", path)  # folders hold caches and notes too
            continue
        uid = str(ds.get("SeriesInstanceUID", ""))
        if not uid:
            continue
        series[uid].append(path)
        info[uid] = (str(ds.get("Modality", "")), str(ds.get("StudyInstanceUID", "")),
                     str(ds.get("FrameOfReferenceUID", "")))
    by_key: dict[tuple[str, str], dict[str, list[Path]]] = defaultdict(dict)
    for uid, (modality, study, frame) in info.items():
        if modality in ("CT", "PT"):
            by_key[(study, frame)].setdefault(modality, series[uid])
    studies = [(v["CT"], v["PT"]) for _, v in sorted(by_key.items()) if "CT" in v and "PT" in v]
    log.info("found %d paired PET/CT studies under %s", len(studies), root)
    return studies


def build_pair(ct_files: Sequence[Path], pt_files: Sequence[Path],
               spacing_mm: Sequence[float], antialiased: bool = False) -> Pair:
    """Load one CT + PET series, convert PET to SUV and put both on the model grid."""
    ct = load_series(ct_files)
    pt = load_series(pt_files)
    if ct.frame_of_reference_uid != pt.frame_of_reference_uid:
        raise InputError("CT and PET have different FrameOfReferenceUID (0020,0052): "
                         "no shared patient space")
    suv_img = sitk.GetImageFromArray(to_suv(pt.datasets, pt.array()))
    suv_img.CopyInformation(pt.image)
    ct_model = resample_to_spacing(ct.image, spacing_mm, CT_DEFAULT, antialiased=antialiased)
    suv_model = resample_onto(suv_img, ct_model, SUV_DEFAULT)
    suv = np.clip(sitk.GetArrayFromImage(suv_model), *SUV_CLIP).astype(np.float32)
    return Pair(sitk.GetArrayFromImage(ct_model).astype(np.float32), suv,
                tuple(ct_model.GetOrigin()), tuple(ct_model.GetSpacing()), ct.study_uid)


def _cache_path(cache_dir: Path, study_uid: str, spacing_mm: Sequence[float],
                antialiased: bool = False) -> Path:
    grid = f"{study_uid}/{list(map(float, spacing_mm))}" + ("/antialiased" if antialiased else "")
    grid += "/lps"  # model grids became axis-aligned in LPS: caches made before are rebuilt
    key = hashlib.sha1(grid.encode()).hexdigest()[:16]
    return cache_dir / f"pair_{key}.npz"


def save_npz_atomic(path: Path, compressed: bool = False, **arrays) -> Path:
    """Write a .npz to a temporary name, then rename it: runs sharing a cache (--cache-dir,
    worker processes, torchrun ranks) and a run killed mid-write never leave a half-written
    file for another reader."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        (np.savez_compressed if compressed else np.savez)(f, **arrays)
    os.replace(tmp, path)
    return path


def save_pair(path: Path, pair: Pair) -> None:
    extra = {} if pair.seg is None else {"seg": pair.seg.astype(np.uint8)}
    save_npz_atomic(path, ct=pair.ct, suv=pair.suv, origin=np.array(pair.origin),
                    spacing=np.array(pair.spacing), study_uid=np.array(pair.study_uid), **extra)


def load_pair(path: Path) -> Pair:
    with np.load(path) as z:
        return Pair(z["ct"], z["suv"], tuple(map(float, z["origin"])),
                    tuple(map(float, z["spacing"])), str(z["study_uid"]),
                    z["seg"] if "seg" in z.files else None)


NIFTI_CT, NIFTI_SUV, NIFTI_SEG = "CTres.nii.gz", "SUV.nii.gz", "SEG.nii.gz"


def find_nifti_cases(root: Path) -> list[Path]:
    """Case folders under `root` holding autoPET-style CTres.nii.gz + SUV.nii.gz."""
    return sorted(p.parent for p in Path(root).rglob(NIFTI_CT) if (p.parent / NIFTI_SUV).is_file())


def build_nifti_pair(case_dir: Path, spacing_mm: Sequence[float],
                     antialiased: bool = False) -> Pair:
    """CTres (HU) on the model grid; SUV (already SUVbw in autoPET) and SEG resampled onto it."""
    ct = sitk.ReadImage(str(case_dir / NIFTI_CT), sitk.sitkFloat32)
    ct_model = resample_to_spacing(ct, spacing_mm, CT_DEFAULT, antialiased=antialiased)
    suv = sitk.ReadImage(str(case_dir / NIFTI_SUV), sitk.sitkFloat32)
    suv_arr = sitk.GetArrayFromImage(resample_onto(suv, ct_model, SUV_DEFAULT))
    seg = None
    if (case_dir / NIFTI_SEG).is_file():
        img = sitk.ReadImage(str(case_dir / NIFTI_SEG), sitk.sitkUInt8)
        seg = sitk.GetArrayFromImage(sitk.Resample(img, ct_model, sitk.Transform(),
                                                   sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8))
    return Pair(sitk.GetArrayFromImage(ct_model).astype(np.float32),
                np.clip(suv_arr, *SUV_CLIP).astype(np.float32), tuple(ct_model.GetOrigin()),
                tuple(ct_model.GetSpacing()), _nifti_id(case_dir), seg)


def _nifti_id(case_dir: Path) -> str:
    return f"nifti:{Path(case_dir).resolve()}"


def cached_nifti_pair(cache_dir: Path, case_dir: Path, spacing_mm: Sequence[float],
                      antialiased: bool = False) -> Pair:
    """The NIfTI case from cache when present and newer than its files, else built and cached."""
    path = _cache_path(Path(cache_dir), _nifti_id(case_dir), spacing_mm, antialiased)
    newest = max(f.stat().st_mtime for f in Path(case_dir).glob("*.nii.gz"))
    if path.is_file() and path.stat().st_mtime >= newest:
        return load_pair(path)
    pair = build_nifti_pair(Path(case_dir), spacing_mm, antialiased)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_pair(path, pair)
    return pair


class Skipped(NamedTuple):
    """A study or case that could not be paired, and why (shown to the user, kept in reports)."""

    source: str
    reason: str


def load_pairs(root: Path, spacing_mm: Sequence[float], cache_dir: Path | None = None,
               antialiased: bool = False, workers: int = 0,
               skipped: list[Skipped] | None = None) -> list[Pair]:
    """All DICOM studies, then all autoPET NIfTI cases, under `root` as pairs; cached per
    study as .npz in `cache_dir`. `antialiased`: CT low-passed to the model grid first, as a
    package with `input.antialias` expects (pipeline.resample.antialias). `workers` > 1 builds
    missing cache files in that many processes first (the DICOM parsing and resampling).

    A study that cannot be paired (PET without the tags SUV needs, a broken file, mismatched
    frames of reference) is left out with a warning naming it and the cause, and appended to
    `skipped`: one bad study in a folder of hundreds must not end a training run."""
    cache_dir = Path(cache_dir or Path(root) / ".pairs-cache")
    cache_dir.mkdir(parents=True, exist_ok=True)
    skipped = [] if skipped is None else skipped
    studies = []
    for ct_files, pt_files in find_studies(root):
        uid = attempt(partial(_study_uid, ct_files[0]), str(Path(ct_files[0]).parent), skipped)
        if uid is not None:
            studies.append((uid, ct_files, pt_files))
    missing = [s for s in studies
               if not _is_fresh(_cache_path(cache_dir, s[0], spacing_mm, antialiased),
                                [*s[1], *s[2]])]
    if workers > 1 and len(missing) > 1:
        build = partial(_build_into_cache, cache_dir, spacing_mm=spacing_mm,
                        antialiased=antialiased)
        with ProcessPoolExecutor(min(workers, len(missing))) as pool:
            list(pool.map(build, *zip(*missing, strict=True)))  # failures are met again below
    pairs = [attempt(partial(cached_pair, cache_dir, study, ct_files, pt_files, spacing_mm,
                              antialiased), f"study {study}", skipped)
             for study, ct_files, pt_files in studies]
    nifti = find_nifti_cases(root)
    pairs += [attempt(partial(cached_nifti_pair, cache_dir, case, spacing_mm, antialiased),
                       str(case), skipped) for case in nifti]
    if nifti:
        log.info("found %d NIfTI (autoPET layout) cases under %s", len(nifti), root)
    return [p for p in pairs if p is not None]


def _study_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def why_skipped(skipped: Sequence[Skipped], limit: int = 3) -> str:
    """' (skipped N: source: reason; ...)' for an error message, '' when nothing was."""
    if not skipped:
        return ""
    shown = "; ".join(f"{s.source}: {s.reason}" for s in skipped[:limit])
    more = f"; and {len(skipped) - limit} more" if len(skipped) > limit else ""
    return f" (skipped {len(skipped)}: {shown}{more})"


def left_out(skipped: Sequence[dict]) -> str:
    """'Left out (N): source: reason; ...' for a report (its "skipped" entries)."""
    return f"Left out ({len(skipped)}): " + "; ".join(
        f"{s['source']}: {s['reason']}" for s in skipped)


def attempt(make: Callable[[], T], source: str, skipped: list[Skipped]) -> T | None:
    """`make()`, or None with the failure logged and recorded against `source`."""
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 - any failure of one study skips that study only
        reason = f"{type(exc).__name__}: {exc}"
        log.warning("skipping %s: %s", source, reason)
        skipped.append(Skipped(source, reason))
        return None


def _build_into_cache(cache_dir: Path, study_uid: str, ct_files: Sequence[Path],
                      pt_files: Sequence[Path], *, spacing_mm: Sequence[float],
                      antialiased: bool) -> None:
    """Build one cache file in a worker process; returns nothing, so no volume is pickled back.
    A study that fails is left uncached: the main process meets the failure and records it."""
    with contextlib.suppress(Exception):
        cached_pair(cache_dir, study_uid, ct_files, pt_files, spacing_mm, antialiased)


def _is_fresh(cache: Path, sources: Sequence[Path]) -> bool:
    """The cache file exists and is newer than every source file of the study (False when a
    file cannot be read: building the pair then meets the failure and names it)."""
    try:
        return cache.is_file() and cache.stat().st_mtime >= max(Path(f).stat().st_mtime
                                                                for f in sources)
    except OSError:
        return False


def cached_pair(cache_dir: Path, study_uid: str, ct_files: Iterable[Path],
                pt_files: Iterable[Path], spacing_mm: Sequence[float],
                antialiased: bool = False) -> Pair:
    """The pair from cache when present and newer than every file of the study (an edited or
    re-sent study is paired again), else built from DICOM and cached."""
    path = _cache_path(Path(cache_dir), study_uid, spacing_mm, antialiased)
    ct_files, pt_files = list(ct_files), list(pt_files)
    if _is_fresh(path, [*ct_files, *pt_files]):
        return load_pair(path)
    pair = build_pair(ct_files, pt_files, spacing_mm, antialiased)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_pair(path, pair)
    return pair
