"""Online hard-example mining: crops centred where the network itself is wrong.

Why: held-out false positives of the paper-000 networks sit on the benign hypodense regions
(cysts) the paper names as its confounder, and on a few organ edges. Random crops show a cyst
now and then; lesion-centred crops never do, and the SUV-weighted loss makes a missed lesion
cost far more than a hot cyst, so the network learns "hypodense = hot". Each epoch the current
network predicts training studies and the regions it paints over the detection threshold
where the real PET is cold become extra crop centres (`negative_p` of the crops).

Hard positives are the mirror image: held-out misses are the subtle lesions (iso-dense, small),
a minority of the hot regions that lesion-centred crops visit no more often than a kidney. Real
hot regions the network leaves under the threshold become crop centres of their own
(`positive_p`). Nothing here knows what a cyst or a lesion kind is: it works the same on real
PET/CT pairs.
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

Regions = list[tuple[int, np.ndarray]]  # (pair index, voxel indices (n, 3) z/y/x)


def false_hot_in(pred: np.ndarray, suv: np.ndarray, threshold: float = HOT_SUV,
                 min_voxels: int = 2) -> list[np.ndarray]:
    """Voxel indices of each predicted hot region that touches no real hot voxel (real PET
    dilated by one voxel, so a lesion's blurred border is not a "false" region)."""
    real = ndimage.binary_dilation(suv > threshold)
    labels, n = ndimage.label(pred > threshold)
    if not n:
        return []
    touches = np.zeros(n + 1, bool)
    touches[np.unique(labels[real])] = True
    out = []
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if touches[k] or box is None:
            continue
        voxels = np.argwhere(labels[box] == k)
        if len(voxels) >= min_voxels:
            out.append(voxels + np.array([s.start for s in box]))
    return out


def missed(pred: np.ndarray, regions: Sequence[np.ndarray], threshold: float = HOT_SUV
           ) -> list[np.ndarray]:
    """The real hot regions (voxel indices) whose predicted maximum stays at or under the
    threshold: lesions the network does not find."""
    return [v for v in regions if float(pred[tuple(v.T)].max()) <= threshold]


def mine_hard_examples(predict: Callable[[np.ndarray], np.ndarray], pairs: Sequence[Pair],
                       hot: Regions, studies: int | None, generator: torch.Generator
                       ) -> tuple[Regions, Regions]:
    """(false hot regions, missed real hot regions among `hot`) of a random subset of `studies`
    pairs (all when None), one prediction per study, pair indices into `pairs`. Why a subset:
    predicting every study costs as much as a third of an epoch once the training set reaches
    a few hundred studies; a fresh subset each epoch still reaches every study over a few."""
    if studies is None or studies >= len(pairs):
        chosen = list(range(len(pairs)))
    else:
        chosen = sorted(torch.randperm(len(pairs), generator=generator)[:studies].tolist())
    by_pair: dict[int, list[np.ndarray]] = {}
    for p, voxels in hot:
        by_pair.setdefault(p, []).append(voxels)
    negatives: Regions = []
    positives: Regions = []
    for p in chosen:
        pred = predict(pairs[p].ct)
        negatives += [(p, v) for v in false_hot_in(pred, pairs[p].suv)]
        positives += [(p, v) for v in missed(pred, by_pair.get(p, []))]
    log.info("hard examples in %d studies: %d false hot regions, %d missed hot regions of %d",
             len(chosen), len(negatives), len(positives),
             sum(len(by_pair.get(p, [])) for p in chosen))
    return negatives, positives

