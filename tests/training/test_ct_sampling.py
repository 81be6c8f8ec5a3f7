"""Lesion-centred sampling and augmentation of the CT trainers (`training.ct_trainers.sampling`)."""

from __future__ import annotations

import numpy as np
import torch

from training.ct_trainers.sampling import Augment, PatchSampler, hot_regions, patch_batch
from training.pairs import Pair
from training.slices import SliceSet


def _pair(seed: int = 0) -> Pair:
    """CT 40 HU liver with a 20 HU lesion (SUV 6) at (z 5, y 40, x 50), a 1-voxel PET noise
    speck (SUV 2.7) elsewhere, and a big hot kidney-like block."""
    z, y, x = np.mgrid[:10, :64, :80]
    lesion = (z - 5) ** 2 + (y - 40) ** 2 + (x - 50) ** 2 <= 9
    ct = np.where(lesion, 20.0, 40.0).astype(np.float32)
    suv = np.where(lesion, 6.0, 1.9).astype(np.float32)
    suv[2, 5, 5] = 2.7
    suv[:, 50:60, 5:15] = 4.0
    ct[:, 50:60, 5:15] = 30.0
    return Pair(ct, suv, (0.0, 0.0, 0.0), (3.0, 3.0, 3.0), f"uid{seed}")


def test_hot_regions_skip_single_voxel_noise():
    regions = hot_regions([_pair()])
    sizes = sorted(len(v) for _, v in regions)
    assert len(regions) == 2 and sizes[0] == int(((np.mgrid[-3:4, -3:4, -3:4] ** 2).sum(0)
                                                  <= 9).sum())
    assert len(hot_regions([_pair()], min_voxels=1)) == 3


def test_lesion_centred_crops_contain_the_lesion():
    pair = _pair()
    slices = SliceSet([pair], context=3, multiple=8)
    regions = [r for r in hot_regions([pair]) if len(r[1]) < 200]  # the lesion only
    gen = torch.Generator().manual_seed(0)
    items = list(PatchSampler(slices, regions, 32, 1.0, 24, 0.0, gen))
    _, y = patch_batch(slices, items, 24, None, gen)
    assert y.shape == (32, 1, 24, 24)
    assert (y.amax((1, 2, 3)) > 5.0).all()  # every crop shows the lesion
    items = list(PatchSampler(slices, regions, 64, 0.0, 24, 0.0, gen))
    _, y = patch_batch(slices, items, 24, None, gen)
    assert (y.amax((1, 2, 3)) > 5.0).float().mean() < 0.5  # random crops mostly miss it


def test_hot_slices_drawn_boost_plus_one_times_as_often():
    z, y, x = np.mgrid[:12, :32, :32]
    suv = np.where((z < 3) & ((y - 16) ** 2 + (x - 16) ** 2 <= 16), 6.0, 1.0).astype(np.float32)
    pair = Pair(np.full(suv.shape, 40.0, np.float32), suv, (0.0,) * 3, (3.0,) * 3, "uid")
    slices = SliceSet([pair], context=1, multiple=8)
    hot = slices.hot.numpy()
    assert 0 < hot.sum() < len(hot)
    items = list(PatchSampler(slices, [], 6000, 0.0, 16, 2.0, torch.Generator().manual_seed(3)))
    share = np.mean([hot[i] for i, _, _ in items])
    expected = 3 * hot.sum() / (3 * hot.sum() + (~hot).sum())
    assert abs(share - expected) < 0.03
    assert all(cy == -1 and cx == -1 for _, cy, cx in items)  # random crops, no centre


def test_augmented_crops_keep_ct_and_pet_aligned():
    pair = _pair()
    slices = SliceSet([pair], context=3, multiple=8)
    gen = torch.Generator().manual_seed(1)
    items = [(slices.index.index((0, 5)), 40, 50)] * 16
    aug = Augment(zoom=0.2, rotate_deg=20, hu_shift=0.0, noise_hu=0.0)
    x, y = patch_batch(slices, items, 32, aug, gen)
    hot = y[:, 0] > 4.0
    centre = x[:, 1]  # the middle context slice is the target's slice
    assert hot.any(1).any(1).all()
    assert float(centre[hot].mean()) < float(centre[~hot & (y[:, 0] < 2.0)].mean()) - 0.05


def test_intensity_augmentation_shifts_and_adds_noise_within_window():
    pair = _pair()
    slices = SliceSet([pair], context=3, multiple=8)
    gen = torch.Generator().manual_seed(2)
    items = [(slices.index.index((0, 5)), 20, 20)] * 8
    plain, _ = patch_batch(slices, items, 16, None, gen)
    noisy, _ = patch_batch(slices, items, 16, Augment(0, 0, 15.0, 12.0), gen)
    assert torch.equal(plain[0], plain[1])  # no augmentation: identical crops
    assert noisy.min() >= -1.0 and noisy.max() <= 1.0
    assert float((noisy - plain).abs().mean()) > 0.005  # > 1 HU on average
    assert float((noisy - plain).abs().mean()) < 0.2


def _lag1(noise: torch.Tensor) -> float:
    """Correlation of in-plane neighbours (along x) of a noise stack."""
    a, b = noise[..., :-1].flatten(), noise[..., 1:].flatten()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def test_grain_augmentation_adds_correlated_noise_at_the_drawn_sigma():
    """--aug-noise-grain: the added noise correlates with its neighbours (white does not),
    and stays inside the window at the same per-sample sigma range."""
    pair = _pair()
    slices = SliceSet([pair], context=3, multiple=8)
    items = [(slices.index.index((0, 5)), 20, 20)] * 32
    plain, _ = patch_batch(slices, items, 32, None, torch.Generator().manual_seed(0))
    added = {}
    for grain in (0.0, 6.0):
        aug = Augment(0, 0, 0.0, 12.0, noise_grain_px=grain)
        noisy, _ = patch_batch(slices, items, 32, aug, torch.Generator().manual_seed(3))
        assert noisy.min() >= -1.0 and noisy.max() <= 1.0
        added[grain] = noisy - plain
    assert abs(_lag1(added[0.0])) < 0.1
    assert _lag1(added[6.0]) > 0.4  # FWHM drawn in [0, 6] px: most samples well correlated
    ratio = float(added[6.0].std() / added[0.0].std())
    assert 0.7 < ratio < 1.3  # the same sigma draws, only the texture differs
