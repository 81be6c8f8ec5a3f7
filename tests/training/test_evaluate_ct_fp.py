"""False positives counted like paper 000 (in the liver region) beside the whole-body count,
and the phantom liver mask that makes this possible."""

from __future__ import annotations

import numpy as np

from training.evaluate_ct import TruthLesion, _phantom_cases, case_metrics, mask_on_grid
from training.pairs import Pair, load_pairs
from training.phantoms.make import make_phantoms


def _pair() -> tuple[Pair, np.ndarray]:
    ct = np.full((8, 40, 40), 50.0, np.float32)
    suv = np.full((8, 40, 40), 1.9, np.float32)
    liver = np.zeros(ct.shape, bool)
    liver[:, 5:25, 5:25] = True
    return Pair(ct, suv, (0.0, 0.0, 0.0), (3.0, 3.0, 3.0), "uid"), liver


def test_false_positives_in_liver_and_in_body():
    pair, liver = _pair()
    pred = pair.suv.copy()
    pred[3:5, 10:13, 10:13] = 4.0  # hot, in the liver, nothing in the real PET
    pred[3:5, 30:33, 30:33] = 4.0  # hot, outside the liver
    row = case_metrics(pred, pair, [], 2.5, 0.1, liver)
    assert (row["false_positives"], row["false_positives_body"]) == (1, 2)
    assert row["fp_scope"] == "liver"
    assert sorted(f["in_liver"] for f in row["fp_regions"]) == [False, True]
    body = case_metrics(pred, pair, [], 2.5, 0.1)
    assert (body["false_positives"], body["false_positives_body"], body["fp_scope"]) == \
        (2, 2, "body")
    fcn, cgan = pred.copy(), pair.suv.copy()
    cgan[3:5, 30:33, 30:33] = 6.0
    named = case_metrics(pred, pair, [], 2.5, 0.1, liver, {"fcn": fcn, "cgan": cgan})
    by_place = {f["in_liver"]: f for f in named["fp_regions"]}
    assert (by_place[True]["fcn_suvmax"], by_place[True]["cgan_suvmax"]) == (4.0, 1.9)
    assert by_place[False]["cgan_suvmax"] == 6.0  # which network made each false positive
    pair.suv[3:5, 10:13, 10:13] = 5.0  # the real PET is hot there too: not a false positive
    assert case_metrics(pred, pair, [], 2.5, 0.1, liver)["false_positives"] == 0


def test_each_networks_value_at_each_lesion_of_a_blend():
    pair, liver = _pair()
    mask = np.zeros(pair.ct.shape, bool)
    mask[3:5, 10:13, 10:13] = True
    pair.suv[mask] = 6.0
    fcn, cgan = pair.suv.copy(), pair.suv.copy()
    fcn[mask], cgan[mask] = 2.2, 7.5  # the cGAN sees it, the FCN does not: a blend misses it
    blend = fcn.copy()
    row = case_metrics(blend, pair, [TruthLesion(mask, "hypodense")], 2.5, 0.1, liver,
                       {"fcn": fcn, "cgan": cgan})
    (lesion,) = row["lesions"]
    assert not lesion["found"] and (lesion["fcn_suvmax"], lesion["cgan_suvmax"]) == (2.2, 7.5)
    alone = case_metrics(fcn, pair, [TruthLesion(mask, "hypodense")], 2.5, 0.1, liver)
    assert "cgan_suvmax" not in alone["lesions"][0]


def test_phantom_liver_mask_lands_on_the_liver(tmp_path):
    infos = make_phantoms(tmp_path, 1, seed=7, ct_shape=(16, 64, 64), n_lesions=1,
                          kinds=("hypodense",), diameter_range_mm=(18, 22))
    lesions, livers = _phantom_cases(tmp_path)
    uid = infos[0].study_uid
    assert livers[uid] == tmp_path / "case_000" / "liver_mask.nii.gz"
    pair = load_pairs(tmp_path, (6.0, 6.0, 6.0))[0]
    liver = mask_on_grid(livers[uid], pair)
    assert liver.shape == pair.ct.shape and 0.02 < liver.mean() < 0.5
    assert liver[pair.index_of(infos[0].liver_point_mm)]
    assert liver[pair.index_of(lesions[uid][0].centre_mm)]
    assert 40 < float(np.median(pair.ct[liver])) < 130  # liver HU (plain or portal venous)
