"""Pairs land CT (HU) and PET (SUV) on one model grid; lesions are hot in the target."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.pairs import Pair, build_pair, find_studies, load_pairs
from training.phantoms.abdomen import make_case
from training.slices import SliceSet

SPACING = (6.0, 6.0, 6.0)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("studies")
    info = make_case(root / "a", 21, ct_shape=(16, 64, 64), n_lesions=1, kinds=("hypodense",),
                     diameter_range_mm=(20, 24))
    make_case(root / "b", 22, ct_shape=(8, 48, 48), n_lesions=0)
    return root, info


def test_find_studies_pairs_ct_and_pet(root):
    studies = find_studies(root[0])
    assert len(studies) == 2
    for ct, pt in studies:
        assert ct and pt and ct[0].parent.name == "CT" and pt[0].parent.name == "PT"


def test_studies_found_through_symlinked_folders_and_link_loops(root, tmp_path):
    linked = tmp_path / "linked"
    linked.mkdir()
    for name in ("a", "b"):
        (linked / name).symlink_to(root[0] / name, target_is_directory=True)
    (linked / "loop").symlink_to(linked, target_is_directory=True)
    assert len(find_studies(linked)) == 2


def test_pair_on_one_grid_with_hot_lesion(root):
    _, info = root
    pair = build_pair(info.ct_paths, info.pet_paths, SPACING)
    assert pair.ct.shape == pair.suv.shape
    assert pair.spacing == pytest.approx(SPACING)
    assert 0.0 <= pair.suv.min() and pair.suv.max() <= 20.0
    lesion = info.lesions[0]
    z, y, x = pair.index_of(lesion.centre_mm)
    lz, ly, lx = pair.index_of(info.liver_point_mm)
    assert pair.suv[z, y, x] > 2.5
    assert pair.suv[z, y, x] > pair.suv[lz, ly, lx] + 0.5
    assert 40 < pair.ct[lz, ly, lx] < 75  # liver HU survives resampling


def test_cache_skips_dicom(root, tmp_path, monkeypatch):
    folder, _ = root
    first = load_pairs(folder, SPACING, tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2

    def boom(*args, **kwargs):
        raise AssertionError("DICOM parsed despite the cache")

    monkeypatch.setattr("training.pairs.build_pair", boom)
    second = load_pairs(folder, SPACING, tmp_path)
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a.suv, b.suv) and a.origin == pytest.approx(b.origin)


def test_cache_built_in_worker_processes_matches(root, tmp_path):
    folder, _ = root
    serial = load_pairs(folder, SPACING, tmp_path / "serial")
    parallel = load_pairs(folder, SPACING, tmp_path / "parallel", workers=2)
    assert len(list((tmp_path / "parallel").glob("*.npz"))) == 2
    assert not list((tmp_path / "parallel").glob("*.tmp"))  # written aside, then renamed
    for a, b in zip(serial, parallel, strict=True):
        assert a.study_uid == b.study_uid
        assert np.array_equal(a.ct, b.ct) and np.array_equal(a.suv, b.suv)


def test_compact_pair_halves_memory_and_keeps_values():
    rng = np.random.default_rng(0)
    ct = rng.uniform(-1000, 1500, (6, 20, 24)).astype(np.float32)
    suv = rng.uniform(0, 20, (6, 20, 24)).astype(np.float32)
    pair = Pair(ct, suv, (0.0, 0.0, 0.0), (2.0, 2.0, 3.0), "uid")
    small = pair.compact()
    assert small.ct.nbytes + small.suv.nbytes == (ct.nbytes + suv.nbytes) // 2
    assert np.abs(small.ct - ct).max() <= 0.5
    assert np.abs(small.suv.astype(np.float32) - suv).max() <= 0.01
    slices = SliceSet([small], context=3, multiple=8)
    assert slices.inputs[0].dtype == torch.float16
    x, y = slices.batch([2, 3])
    assert x.dtype == y.dtype == torch.float32
    assert np.abs(y[0, 0, :20, :24].numpy() - suv[2]).max() <= 0.01
