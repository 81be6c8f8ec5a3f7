"""Hard-negative mining of the CT trainers (`training.ct_trainers.hard_negatives`)."""

from __future__ import annotations

import numpy as np
import torch

from training.ct_trainers.hard_negatives import false_hot_regions, mine_negatives
from training.ct_trainers.sampling import PatchSampler, hot_regions, patch_batch
from training.pairs import Pair
from training.slices import SliceSet


def _pair() -> Pair:
    """A real lesion (SUV 6) at (5, 40, 50) and a cold cyst-like spot at (5, 20, 20)."""
    z, y, x = np.mgrid[:10, :64, :80]
    lesion = (z - 5) ** 2 + (y - 40) ** 2 + (x - 50) ** 2 <= 9
    cyst = (z - 5) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 <= 9
    ct = np.where(lesion | cyst, 10.0, 50.0).astype(np.float32)
    suv = np.where(lesion, 6.0, np.where(cyst, 0.5, 1.9)).astype(np.float32)
    return Pair(ct, suv, (0.0, 0.0, 0.0), (3.0, 3.0, 3.0), "uid")


def _hypodense_is_hot(ct: np.ndarray) -> np.ndarray:
    """The failure the mining targets: every hypodense spot painted hot."""
    return np.where(ct < 30.0, 5.0, 1.8).astype(np.float32)


def test_false_hot_regions_are_predicted_hot_and_really_cold():
    pair = _pair()
    regions = false_hot_regions(_hypodense_is_hot, [pair])
    assert len(regions) == 1  # the cyst; the lesion's hot region is a true one
    p, voxels = regions[0]
    assert p == 0
    assert np.abs(voxels.mean(0) - np.array([5, 20, 20])).max() < 0.5
    assert (pair.suv[tuple(voxels.T)] < 1.0).all()
    assert false_hot_regions(lambda ct: np.full(ct.shape, 1.0, np.float32), [pair]) == []


def test_negative_crops_show_the_false_hot_region():
    pair = _pair()
    slices = SliceSet([pair], context=3, multiple=8)
    gen = torch.Generator().manual_seed(0)
    sampler = PatchSampler(slices, hot_regions([pair]), 48, 0.0, 16, 0.0, gen, negative_p=1.0)
    random_items = list(sampler)  # nothing mined yet: random crops only
    assert all(cy == -1 for _, cy, _ in random_items)
    sampler.negatives = false_hot_regions(_hypodense_is_hot, [pair])
    items = list(sampler)
    x, y = patch_batch(slices, items, 16, None, gen)
    cyst_in_crop = (x[:, 1] < -0.1).flatten(1).any(1)  # 10 HU -> -0.15, 50 HU -> 0.05
    assert bool(cyst_in_crop.all())
    assert float(y.max()) < 6.0  # never the lesion: 16-voxel crops around (20, 20)


def test_mining_a_subset_keeps_indices_into_the_whole_training_set():
    cold = Pair(np.full((10, 64, 80), 50.0, np.float32), np.full((10, 64, 80), 1.9, np.float32),
                (0.0, 0.0, 0.0), (3.0, 3.0, 3.0), "cold")
    pairs = [cold, cold, _pair(), cold, cold]  # only pair 2 has a false hot region
    seen, predicted = set(), []

    def predict(ct: np.ndarray) -> np.ndarray:
        predicted.append(ct)
        return _hypodense_is_hot(ct)

    for seed in range(12):
        predicted.clear()
        regions = mine_negatives(predict, pairs, 2, torch.Generator().manual_seed(seed))
        assert len(predicted) == 2  # only the subset is predicted
        seen |= {p for p, _ in regions}
    assert seen == {2}  # pair 2 was drawn in some epoch, and kept its index
    everything = mine_negatives(predict, pairs, None, torch.Generator())
    assert [p for p, _ in everything] == [2]
