"""95% intervals beside the evaluation's rates: textbook values, edges, and the overall row."""

from __future__ import annotations

import pytest

from training.evaluate_ct import overall
from training.intervals import poisson_rate, rounded, wilson


def test_wilson_interval_matches_textbook_values():
    assert rounded(wilson(24, 26)) == [0.759, 0.979]  # the paper's 24 of 26 lesions
    assert rounded(wilson(10, 15)) == [0.417, 0.848]
    low, high = wilson(0, 5)
    assert low == 0.0 and high == pytest.approx(0.4345, abs=1e-4)  # stays inside [0, 1]
    assert wilson(5, 5)[1] == 1.0 and wilson(3, 0) is None


def test_exact_poisson_interval_for_false_positives_per_case():
    assert rounded(poisson_rate(2, 8)) == [0.03, 0.903]  # the paper's 2 in 8 cases
    assert rounded(poisson_rate(4, 12)) == [0.091, 0.853]
    low, high = poisson_rate(0, 10)
    assert low == 0.0 and high == pytest.approx(0.3689, abs=1e-4)  # -ln(0.025) / 10
    assert poisson_rate(1, 0) is None


def test_overall_row_carries_the_intervals():
    case = {"lesions": [{"found": True, "suvmax_error": 0.0, "ct_snr": 9.0},
                        {"found": False, "suvmax_error": -2.0, "ct_snr": 1.0}],
            "lesions_hot": 2, "found": 1, "false_positives": 1, "cysts": 0,
            "cysts_predicted_hot": 0, "mae": 0.1, "rmse": 0.1, "psnr": 30.0, "ssim": 0.9}
    row = overall([case, {**case, "false_positives": 0}])
    assert row["lesion_tpr"] == 0.5 and row["lesion_tpr_ci95"] == rounded(wilson(2, 4))
    assert row["lesion_tpr_ct_detectable_ci95"] == rounded(wilson(2, 2))
    assert row["false_positives_per_case"] == 0.5
    assert row["false_positives_per_case_ci95"] == rounded(poisson_rate(1, 2))
    assert overall([])["lesion_tpr_ci95"] is None
