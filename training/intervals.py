"""95% confidence intervals for the evaluation's counts.

Why: the targets (TPR >= 0.95, <= 0.25 false positives per case) and the paper's result (24 of
26, 0.25 per case) are judged on a few dozen lesions and cases, where one lesion moves a TPR by
several points. An interval beside each rate says whether two figures differ at all.
"""

from __future__ import annotations

import math

from scipy.stats import chi2

Z95 = 1.959963984540054


def wilson(successes: int, trials: int) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (good at the small counts and rates near 0 or 1
    that lesion TPRs are; the normal approximation would leave [0, 1])."""
    if trials <= 0:
        return None
    p = successes / trials
    centre = (p + Z95 ** 2 / (2 * trials)) / (1 + Z95 ** 2 / trials)
    half = (Z95 / (1 + Z95 ** 2 / trials)) * math.sqrt(
        p * (1 - p) / trials + Z95 ** 2 / (4 * trials ** 2))
    return max(0.0, centre - half), min(1.0, centre + half)


def poisson_rate(events: int, cases: int) -> tuple[float, float] | None:
    """Exact (Garwood) interval of a rate of `events` over `cases` (false positives per case)."""
    if cases <= 0:
        return None
    low = chi2.ppf(0.025, 2 * events) / 2 if events else 0.0
    high = chi2.ppf(0.975, 2 * events + 2) / 2
    return low / cases, high / cases


def rounded(interval: tuple[float, float] | None, digits: int = 3) -> list[float] | None:
    """The interval as a JSON-friendly [low, high]."""
    return None if interval is None else [round(float(v), digits) for v in interval]
