"""Online hard-negative mining: crops centred where the network itself paints false hot spots.

Why: held-out false positives of the paper-000 networks sit on the benign hypodense regions
(cysts) the paper names as its confounder, and on a few organ edges. Random crops show a cyst
now and then; lesion-centred crops never do, and the SUV-weighted loss makes a missed lesion
cost far more than a hot cyst, so the network learns "hypodense = hot". Each epoch the current
network predicts every training study and the regions it paints over the detection threshold
where the real PET is cold become extra crop centres (`negative_p` of the crops). Nothing here
knows what a cyst is: it works the same on real PET/CT pairs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy import ndimage

from training.ct_trainers.sampling import HOT_SUV
from training.pairs import Pair

log = logging.getLogger(__name__)


def false_hot_regions(predict: Callable[[np.ndarray], np.ndarray], pairs: Sequence[Pair],
                      threshold: float = HOT_SUV, min_voxels: int = 2
                      ) -> list[tuple[int, np.ndarray]]:
    """(pair index, voxel indices (n, 3) z/y/x) of each predicted hot region that touches no
    real hot voxel (real PET dilated by one voxel, so a lesion's blurred border is not a
    "false" region); the same format as `sampling.hot_regions`."""
    out: list[tuple[int, np.ndarray]] = []
    for p, pair in enumerate(pairs):
        pred = predict(pair.ct)
        real = ndimage.binary_dilation(pair.suv > threshold)
        labels, n = ndimage.label(pred > threshold)
        if not n:
            continue
        touches = np.zeros(n + 1, bool)
        touches[np.unique(labels[real])] = True
        for k, box in enumerate(ndimage.find_objects(labels), start=1):
            if touches[k] or box is None:
                continue
            voxels = np.argwhere(labels[box] == k)
            if len(voxels) >= min_voxels:
                out.append((p, voxels + np.array([s.start for s in box])))
    log.info("hard negatives: %d false hot regions in %d training studies", len(out), len(pairs))
    return out


def mine_negatives(predict: Callable[[np.ndarray], np.ndarray], pairs: Sequence[Pair],
                   studies: int | None, generator: torch.Generator
                   ) -> list[tuple[int, np.ndarray]]:
    """`false_hot_regions` of a random subset of `studies` pairs (all when None), with pair
    indices into `pairs`. Why: predicting every study costs as much as a third of an epoch
    once the training set reaches a few hundred studies; a fresh subset each epoch still
    reaches every study over a few epochs."""
    if studies is None or studies >= len(pairs):
        return false_hot_regions(predict, pairs)
    chosen = sorted(torch.randperm(len(pairs), generator=generator)[:studies].tolist())
    regions = false_hot_regions(predict, [pairs[i] for i in chosen])
    return [(chosen[p], voxels) for p, voxels in regions]
