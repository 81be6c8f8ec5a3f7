"""The Markdown report names each missed lesion with the CT's evidence for it."""

from __future__ import annotations

from training.report_ct import write_markdown


def _report(found: bool) -> dict:
    lesion = {"kind": "isodense", "diameter_mm": 14.2, "suvmax_real": 6.1,
              "suvmax_virtual": 2.07, "found": found, "ct_snr": 3.4, "suvmax_error": -4.0}
    case = {"case": 3, "lesions": [lesion], "lesions_hot": 1, "found": int(found),
            "false_positives": 0, "cysts": 0, "cysts_predicted_hot": 0, "mae": 0.1,
            "rmse": 0.2, "psnr": 30.0, "ssim": 0.9}
    return {"model": {"name": "m", "version": "1"}, "data": "D", "lesion_truth": "phantom",
            "threshold_suv": 2.5, "min_volume_ml": 0.1, "overall": {"blend": {}},
            "per_case": {"fcn": [dict(case, found=1, lesions=[dict(lesion, found=True)])],
                         "blend": [case]}}


def test_missed_lesions_listed_with_ct_evidence(tmp_path):
    write_markdown(_report(found=False), tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    assert "## Lesions missed by blend (1)" in text
    assert "| 3 | isodense | 14.2 | 6.1 | 2.07 | 3.4 |" in text
    write_markdown(_report(found=True), tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    assert "## Lesions missed by blend (0)" in text and "| 3 | isodense" not in text
