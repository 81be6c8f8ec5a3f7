"""Hard-example mining (false hot and missed hot regions) and detection validation of the CT
trainers (`training.ct_trainers.hard_examples`, `training.ct_trainers.data.validate`)."""

from __future__ import annotations

import numpy as np
import torch

from training.ct_trainers.data import validate
from training.ct_trainers.hard_examples import mine_hard_examples
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


def _negatives(predict, pairs, studies=None, gen=None):
    """The false hot regions alone, as the trainer mines them."""
    return mine_hard_examples(predict, pairs, [], studies, gen or torch.Generator())[0]


def _hypodense_is_hot(ct: np.ndarray) -> np.ndarray:
    """The failure the mining targets: every hypodense spot painted hot."""
    return np.where(ct < 30.0, 5.0, 1.8).astype(np.float32)


def test_false_hot_regions_are_predicted_hot_and_really_cold():
    pair = _pair()
    regions = _negatives(_hypodense_is_hot, [pair])
    assert len(regions) == 1  # the cyst; the lesion's hot region is a true one
    p, voxels = regions[0]
    assert p == 0
    assert np.abs(voxels.mean(0) - np.array([5, 20, 20])).max() < 0.5
    assert (pair.suv[tuple(voxels.T)] < 1.0).all()
    assert _negatives(lambda ct: np.full(ct.shape, 1.0, np.float32), [pair]) == []


def test_negative_crops_show_the_false_hot_region():
    pair = _pair()
    slices = SliceSet([pair], context=3, multiple=8)
    gen = torch.Generator().manual_seed(0)
    sampler = PatchSampler(slices, hot_regions([pair]), 48, 0.0, 16, 0.0, gen, negative_p=1.0)
    random_items = list(sampler)  # nothing mined yet: random crops only
    assert all(cy == -1 for _, cy, _ in random_items)
    sampler.negatives = _negatives(_hypodense_is_hot, [pair])
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
        regions = _negatives(predict, pairs, 2, torch.Generator().manual_seed(seed))
        assert len(predicted) == 2  # only the subset is predicted
        seen |= {p for p, _ in regions}
    assert seen == {2}  # pair 2 was drawn in some epoch, and kept its index
    everything = _negatives(predict, pairs)
    assert [p for p, _ in everything] == [2]


def _blind(ct: np.ndarray) -> np.ndarray:
    """A network that finds nothing: liver SUV everywhere."""
    return np.full(ct.shape, 1.9, np.float32)


def test_missed_hot_regions_are_the_real_lesions_left_cold():
    pair = _pair()
    hot = hot_regions([pair])
    assert len(hot) == 1
    negatives, positives = mine_hard_examples(_blind, [pair], hot, None, torch.Generator())
    assert negatives == []
    assert len(positives) == 1 and positives[0][0] == 0
    assert (pair.suv[tuple(positives[0][1].T)] > 2.5).all()
    # a network that paints every hypodense spot hot finds the lesion and errs on the cyst
    negatives, positives = mine_hard_examples(_hypodense_is_hot, [pair], hot, None,
                                              torch.Generator())
    assert positives == [] and len(negatives) == 1


def _two_lesions() -> Pair:
    """A hypodense lesion (SUV 6, 10 HU) at (5, 16, 16) and a faint one (SUV 8, 45 HU) at
    (5, 48, 64) in 50 HU liver: `_hypodense_is_hot` finds the first and misses the second."""
    z, y, x = np.mgrid[:10, :64, :80]
    plain = (z - 5) ** 2 + (y - 16) ** 2 + (x - 16) ** 2 <= 9
    faint = (z - 5) ** 2 + (y - 48) ** 2 + (x - 64) ** 2 <= 9
    ct = np.where(plain, 10.0, np.where(faint, 45.0, 50.0)).astype(np.float32)
    suv = np.where(plain, 6.0, np.where(faint, 8.0, 1.9)).astype(np.float32)
    return Pair(ct, suv, (0.0, 0.0, 0.0), (3.0, 3.0, 3.0), "two")


def test_positive_crops_show_the_missed_lesion_and_fall_back_to_any_hot_region():
    pair = _two_lesions()
    slices = SliceSet([pair], context=3, multiple=8)
    gen = torch.Generator().manual_seed(1)
    hot = hot_regions([pair])
    assert len(hot) == 2
    sampler = PatchSampler(slices, hot, 64, 0.0, 16, 0.0, gen, positive_p=1.0)
    _, y = patch_batch(slices, list(sampler), 16, None, gen)  # nothing mined: both lesions
    assert {6.0, 8.0} <= {float(v) for v in y.flatten(1).amax(1)}
    sampler.positives = mine_hard_examples(_hypodense_is_hot, [pair], hot, None, gen)[1]
    assert len(sampler.positives) == 1
    _, y = patch_batch(slices, list(sampler), 16, None, gen)
    assert bool((y.flatten(1).amax(1) == 8.0).all())  # every crop holds the missed lesion


def test_validation_reports_found_lesions_and_false_hot_regions():
    pair = _pair()
    blind = validate(_blind, [pair])
    assert blind["val_hot_found"] == 0.0 and blind["val_false_hot"] == 0.0
    greedy = validate(_hypodense_is_hot, [pair])
    assert greedy["val_hot_found"] == 1.0 and greedy["val_false_hot"] == 1.0
