"""The paper's normalization: MR z-score; PET scaled by the *MRI's* statistics.

Why: PET = (PET - mean_MR/10) / (std_MR/10) lets inference restore SUVR from the MR alone
(PET = y * std_MR/10 + mean_MR/10), with no PET-side statistics that do not exist at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NORMALIZATION = {"kind": "mr_zscore_paper", "pet_divisor": 10.0}
PET_DIVISOR = 10.0


@dataclass(frozen=True)
class MrStats:
    """Mean and standard deviation of one MR volume (the only statistics used anywhere)."""

    mean: float
    std: float

    @classmethod
    def of(cls, mr: np.ndarray) -> MrStats:
        return cls(float(mr.mean()), float(mr.std()) or 1.0)


def normalize_mr(mr: np.ndarray, stats: MrStats) -> np.ndarray:
    return ((mr - stats.mean) / stats.std).astype(np.float32)


def normalize_pet(pet: np.ndarray, stats: MrStats) -> np.ndarray:
    return ((pet - stats.mean / PET_DIVISOR) / (stats.std / PET_DIVISOR)).astype(np.float32)


def restore_pet(y: np.ndarray, stats: MrStats) -> np.ndarray:
    """Inverse of `normalize_pet`: network output -> SUVR."""
    return (y * (stats.std / PET_DIVISOR) + stats.mean / PET_DIVISOR).astype(np.float32)
