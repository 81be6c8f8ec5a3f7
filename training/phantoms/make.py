"""`vpet phantoms make`: a folder of synthetic PET/CT studies plus their ground truth.

Why: one call produces training/validation data for the trainer and test data for the node,
with a `cases.json` describing each study's lesions (what the metrics compare against).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

from training.phantoms.abdomen import CaseInfo, make_case

log = logging.getLogger(__name__)


def make_phantoms(out: Path, cases: int, seed: int, kind: str = "abdomen", *,
                  ct_shape: tuple[int, int, int] = (80, 256, 256), workers: int = 1,
                  **kwargs) -> list[CaseInfo]:
    """Write `cases` studies to `out/case_NNN` (seeds seed, seed+1, ...) and `out/cases.json`.

    `workers` > 1 writes abdomen cases in that many processes; each case depends only on its
    own seed, so the files are the same as with one.
    """
    if kind == "brain":  # paired T1 MR + two-frame amyloid/FDG PET (GANBERT, seed paper 003)
        from training.phantoms.brain import make_brain_case

        out = Path(out)
        brains = [make_brain_case(out / f"case_{i:03d}", seed + i, **kwargs) for i in range(cases)]
        (out / "cases.json").write_text(json.dumps([c.to_json() for c in brains], indent=1) + "\n")
        log.info("wrote %d brain phantom studies to %s", cases, out)
        return brains
    if kind != "abdomen":
        raise ValueError(f"unknown phantom kind {kind!r}; known: abdomen, brain")
    out = Path(out)
    dirs = [out / f"case_{i:03d}" for i in range(cases)]
    seeds = [seed + i for i in range(cases)]
    one = partial(make_case, ct_shape=ct_shape, **kwargs)
    if workers > 1 and cases > 1:
        with ProcessPoolExecutor(min(workers, cases)) as pool:
            infos = list(pool.map(one, dirs, seeds))
    else:
        infos = list(map(one, dirs, seeds))
    (out / "cases.json").write_text(json.dumps([c.to_json() for c in infos], indent=1) + "\n")
    log.info("wrote %d %s phantom studies to %s", cases, kind, out)
    return infos
