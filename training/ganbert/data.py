"""Paired MR / PET(time-steps) volumes on one model grid, from DICOM folders or an .npz cache.

Why: the generator maps MR voxels to PET voxels, so each PET frame is converted to SUV from its
headers, resampled onto the MR model grid and divided by the reference-region mean (SUVR).
Arrays are cached as .npz so later epochs do no DICOM parsing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pydicom
import pydicom.errors
import SimpleITK as sitk
import torch
from torch.utils.data import Dataset

from pipeline.resample import resample_onto, resample_to_spacing
from pipeline.series import load_series
from pipeline.suv import to_suv
from training.ganbert.normalization import MrStats, normalize_mr, normalize_pet
from training.pairs import Skipped, attempt, save_npz_atomic, why_skipped
from training.phantoms.anatomy import Grid
from training.phantoms.brain import BrainCaseInfo, make_brain_case

log = logging.getLogger(__name__)

ReferenceFn = Callable[[Grid], np.ndarray]


@dataclass
class BrainPair:
    """MR (z, y, x) raw intensities and PET (T, z, y, x) SUVR on one grid (x, y, z mm)."""

    mr: np.ndarray
    pet: np.ndarray
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    study_uid: str

    def save(self, path: Path) -> Path:
        """Written to a temporary name and renamed: torchrun ranks cache the same studies side
        by side, and a rank must never load a half-written pair another rank is saving."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return save_npz_atomic(path, compressed=True, mr=self.mr, pet=self.pet,
                               origin=self.origin, spacing=self.spacing,
                               study_uid=self.study_uid)

    @classmethod
    def load(cls, path: Path) -> BrainPair:
        with np.load(path) as z:
            return cls(z["mr"], z["pet"], tuple(z["origin"].tolist()),
                       tuple(z["spacing"].tolist()), str(z["study_uid"]))


def pair_from_dicom(mr_files: Sequence[Path], pet_frames: Sequence[Sequence[Path]],
                    spacing_mm: Sequence[float], reference: ReferenceFn | None = None
                    ) -> BrainPair:
    """Load, convert PET to SUV (BQML) and SUVR (`reference` mask mean), resample to the MR grid.

    Without `reference` the PET values are kept as SUV (or as stored, for non-BQML series that
    already hold SUVR, e.g. preprocessed ADNI).
    """
    mr_vol = load_series(mr_files)
    mr_img = resample_to_spacing(mr_vol.image, spacing_mm, default_value=0.0)
    grid = Grid(mr_img.GetOrigin(), mr_img.GetSpacing(), sitk.GetArrayViewFromImage(mr_img).shape)
    ref = reference(grid) if reference is not None else None
    frames = []
    for files in pet_frames:
        vol = load_series(files)
        values = vol.array()
        if str(vol.datasets[0].get("Units", "")).upper() == "BQML":
            values = to_suv(vol.datasets, values)
        img = sitk.GetImageFromArray(values)
        img.CopyInformation(vol.image)
        arr = sitk.GetArrayFromImage(resample_onto(img, mr_img, 0.0))
        if ref is not None and ref.any():
            arr = arr / float(arr[ref].mean())
        frames.append(arr.astype(np.float32))
    return BrainPair(sitk.GetArrayFromImage(mr_img).astype(np.float32), np.stack(frames),
                     tuple(mr_img.GetOrigin()), tuple(mr_img.GetSpacing()), mr_vol.study_uid)


def find_brain_studies(root: Path) -> list[tuple[list[Path], list[list[Path]]]]:
    """(MR files, [PET files per time-step]) per study; PET series ordered by SeriesNumber."""
    series: dict[str, list[Path]] = defaultdict(list)
    info: dict[str, tuple[str, str, int]] = {}
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file() and p.suffix != ".npz"):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[
                "Modality", "SeriesInstanceUID", "StudyInstanceUID", "SeriesNumber"])
        except (pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError):
            log.debug("not DICOM, skipped: %s", path)  # folders hold caches and notes too
            continue
        uid = str(ds.get("SeriesInstanceUID", ""))
        if uid:
            series[uid].append(path)
            info[uid] = (str(ds.get("StudyInstanceUID", "")), str(ds.get("Modality", "")),
                         int(ds.get("SeriesNumber", 0) or 0))
    studies: dict[str, dict[str, list]] = defaultdict(lambda: {"MR": [], "PT": []})
    for uid, (study, modality, number) in info.items():
        if modality in ("MR", "PT"):
            studies[study][modality].append((number, series[uid]))
    out = []
    for study, parts in sorted(studies.items()):
        if len(parts["MR"]) != 1 or not parts["PT"]:
            log.warning("study %s skipped: %d MR and %d PET series", study, len(parts["MR"]),
                        len(parts["PT"]))
            continue
        out.append((parts["MR"][0][1], [f for _, f in sorted(parts["PT"], key=lambda t: t[0])]))
    return out


def phantom_pairs(root: Path, count: int, seed: int, shape: tuple[int, int, int],
                  spacing_mm: Sequence[float], tracer: str = "amyloid") -> list[BrainPair]:
    """Make (or reuse) `count` brain phantoms under `root` and return their cached pairs."""
    pairs = []
    for i in range(count):
        cache = root / ".pairs-cache" / f"brain_{seed + i}_{'x'.join(map(str, shape))}.npz"
        if cache.is_file():
            pairs.append(BrainPair.load(cache))
            continue
        case = make_brain_case(root / f"case_{seed + i:06d}", seed + i, shape=shape, tracer=tracer)
        pair = pair_from_dicom(case.mr_paths, case.pet_paths, spacing_mm,
                               BrainCaseInfo.reference_mask)
        pairs.append(pair)
        pair.save(cache)
    return pairs


def pad_to_multiple(a: np.ndarray, m: int) -> np.ndarray:
    """Edge-pad the last three axes up to multiples of `m`."""
    pads = [(0, 0)] * (a.ndim - 3) + [(0, (-s) % m) for s in a.shape[-3:]]
    return np.pad(a, pads, mode="edge")


class PairDataset(Dataset):
    """Normalized (MR (1, D, H, W), PET (T, D, H, W)) tensors; random cubic crops if `crop`."""

    def __init__(self, pairs: Sequence[BrainPair], multiple: int, crop: int | None = None,
                 seed: int = 0) -> None:
        self.pairs, self.multiple, self.crop = list(pairs), multiple, crop
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.pairs[i]
        stats = MrStats.of(p.mr)
        mr = pad_to_multiple(normalize_mr(p.mr, stats)[None], self.multiple)
        pet = pad_to_multiple(normalize_pet(p.pet, stats), self.multiple)
        if self.crop is not None:
            c = self.crop
            starts = [int(self.rng.integers(0, max(s - c, 0) + 1)) for s in mr.shape[1:]]
            box = tuple(slice(s, s + c) for s in starts)
            mr, pet = mr[(slice(None), *box)], pet[(slice(None), *box)]
        return torch.from_numpy(np.ascontiguousarray(mr)), torch.from_numpy(
            np.ascontiguousarray(pet))


def _pair_and_save(mr: list[Path], pets: list[list[Path]], spacing_mm: Sequence[float],
                   reference: ReferenceFn | None, path: Path) -> Path:
    return pair_from_dicom(mr, pets, spacing_mm, reference).save(path)


def cache_pairs(data: Path, out: Path, spacing_mm: Sequence[float],
                reference: ReferenceFn | None = BrainCaseInfo.reference_mask) -> Path:
    """A folder of .npz pairs for `data`: `data` itself when it holds .npz caches, else every
    MR/PET DICOM study under it paired at `spacing_mm` and cached to `out` (reused if present).
    """
    if any(Path(data).rglob("*.npz")):
        return Path(data)
    out = Path(out)
    studies = find_brain_studies(data)
    if not studies:
        raise ValueError(f"{data}: no paired MR/PET DICOM studies and no .npz pairs")
    skipped: list[Skipped] = []  # a study that cannot be paired is left out, with its reason
    for i, (mr, pets) in enumerate(studies):
        path = out / f"pair_{i:04d}.npz"
        if not path.is_file():
            attempt(partial(_pair_and_save, mr, pets, spacing_mm, reference, path),
                    str(Path(mr[0]).parent), skipped)
    if len(skipped) == len(studies):
        raise ValueError(f"{data}: no MR/PET study could be paired{why_skipped(skipped)}")
    log.info("%d pairs cached in %s", len(studies) - len(skipped), out)
    return out
