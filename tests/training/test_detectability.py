"""The CT's evidence for a phantom lesion (matched-filter SNR): high where the lesion is painted,
near zero where only noise is, unmeasurable outside the liver; and evaluate's use of it."""

from __future__ import annotations

import numpy as np

from training.detectability import DETECTABLE_SNR, ct_snr
from training.evaluate_ct import _phantom_cases, ground_truth, mask_on_grid, overall
from training.pairs import Pair, load_pairs
from training.phantoms.abdomen import PhantomLesion, lesion_ct_hu
from training.phantoms.make import make_phantoms

SPACING = (2.0, 2.0, 2.0)
LIVER_HU = 55.0


def _liver_volume(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ct = np.full((40, 80, 80), -80.0, np.float32)  # fat around a liver block
    liver = np.zeros(ct.shape, bool)
    liver[4:36, 8:72, 8:72] = True
    ct[liver] = LIVER_HU
    return ct + rng.normal(0, 10, ct.shape).astype(np.float32), liver


def _paint(ct: np.ndarray, lesion: PhantomLesion) -> np.ndarray:
    z, y, x = np.meshgrid(*(np.arange(n) * 2.0 for n in ct.shape), indexing="ij")
    cx, cy, cz = lesion.centre_mm
    rn = np.sqrt((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (lesion.diameter_mm / 2)
    out = ct.copy()
    out[rn <= 1] += (np.broadcast_to(lesion_ct_hu(lesion, rn, LIVER_HU), rn.shape)[rn <= 1]
                     - LIVER_HU)
    return out


def test_painted_lesion_has_evidence_and_noise_has_none():
    ct, liver = _liver_volume(0)
    hypo = PhantomLesion((60.0, 60.0, 40.0), 14.0, 8.0, "hypodense", LIVER_HU - 25)
    faint = PhantomLesion((100.0, 100.0, 40.0), 6.0, 8.0, "cyst", LIVER_HU - 4)  # flat, 4 HU
    lesions = [hypo, faint]
    painted = _paint(_paint(ct, hypo), faint)
    assert ct_snr(painted, (0, 0, 0), SPACING, liver, hypo, lesions) > 3 * DETECTABLE_SNR
    assert ct_snr(painted, (0, 0, 0), SPACING, liver, faint, lesions) < DETECTABLE_SNR
    unpainted = ct_snr(ct, (0, 0, 0), SPACING, liver, hypo, lesions)
    assert abs(unpainted) < 4.0  # only noise where the lesion is said to be


def test_no_evidence_measured_outside_the_liver_or_volume():
    ct, liver = _liver_volume(1)
    outside = PhantomLesion((4.0, 4.0, 40.0), 6.0, 8.0, "hypodense", 30.0)  # in the fat
    beyond = PhantomLesion((500.0, 60.0, 40.0), 10.0, 8.0, "hypodense", 30.0)
    assert ct_snr(ct, (0, 0, 0), SPACING, liver, outside, [outside]) is None
    assert ct_snr(ct, (0, 0, 0), SPACING, liver, beyond, [beyond]) is None


def test_phantom_truth_carries_ct_evidence_into_the_overall_rates(tmp_path):
    infos = make_phantoms(tmp_path, 1, seed=11, ct_shape=(24, 96, 96), n_lesions=1,
                          kinds=("hypodense",), diameter_range_mm=(22, 26))
    lesions, livers = _phantom_cases(tmp_path)
    pair: Pair = load_pairs(tmp_path, (4.0, 4.0, 4.0))[0]
    liver = mask_on_grid(livers[infos[0].study_uid], pair)
    truth = ground_truth(pair, lesions[infos[0].study_uid], 2.5, liver)
    assert len(truth) == 1 and truth[0].ct_snr is not None and truth[0].ct_snr > DETECTABLE_SNR
    assert ground_truth(pair, lesions[infos[0].study_uid], 2.5)[0].ct_snr is None  # no liver
    case = {"lesions": [{"found": True, "suvmax_error": 0.0, "ct_snr": 9.0},
                        {"found": False, "suvmax_error": -2.0, "ct_snr": 1.0}],
            "lesions_hot": 2, "found": 1, "false_positives": 0, "cysts": 0,
            "cysts_predicted_hot": 0, "mae": 0.1, "rmse": 0.1, "psnr": 30.0, "ssim": 0.9}
    row = overall([case])
    assert (row["lesion_tpr"], row["lesions_ct_detectable"], row["lesion_tpr_ct_detectable"]) == \
        (0.5, 1, 1.0)
