"""The Markdown report names each missed lesion with the CT's evidence for it, and each
false positive with what each network says there."""

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
    report = _report(found=False)  # a blend's miss names what each network put there
    report["per_case"]["blend"][0]["lesions"][0].update(fcn_suvmax=2.07, cgan_suvmax=5.3)
    write_markdown(report, tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    assert "| CT evidence (SNR) | cgan SUVmax | fcn SUVmax |" in text
    assert "| 3 | isodense | 14.2 | 6.1 | 2.07 | 3.4 | 5.3 | 2.07 |" in text


def test_false_positives_listed_with_each_networks_value(tmp_path):
    report = _report(found=True)
    report["per_case"]["blend"][0]["fp_regions"] = [
        {"ml": 0.4, "suvmax": 2.9, "ct_hu": 37.4, "real_suv": 1.9, "in_liver": True,
         "on_cyst": True, "fcn_suvmax": 2.45, "cgan_suvmax": 7.4},
        {"ml": 3.0, "suvmax": 4.0, "ct_hu": 30.0, "real_suv": 1.2, "in_liver": False,
         "on_cyst": False, "fcn_suvmax": 4.1, "cgan_suvmax": 1.0}]
    write_markdown(report, tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    assert "## False positives of blend (1)" in text  # the one outside the liver is out of scope
    assert "| case | ml | SUVmax | CT HU | real SUV | on cyst | cgan SUVmax | fcn SUVmax |" in text
    assert "| 3 | 0.4 | 2.9 | 37.4 | 1.9 | yes | 7.4 | 2.45 |" in text
    write_markdown(_report(found=True), tmp_path / "r.md")
    assert "## False positives of blend (0)\n\nNone." in (tmp_path / "r.md").read_text()


def test_overall_table_shows_intervals_as_low_high(tmp_path):
    report = _report(found=True)
    report["overall"] = {"blend": {"lesion_tpr": 0.667, "lesion_tpr_ci95": [0.417, 0.848],
                                   "false_positives_per_case": 0.333,
                                   "false_positives_per_case_ci95": [0.091, 0.853]}}
    write_markdown(report, tmp_path / "r.md")
    row = next(line for line in (tmp_path / "r.md").read_text().splitlines()
               if line.startswith("| blend |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:3] == ["0.667", "0.417-0.848"]
    assert "0.333" in cells and "0.091-0.853" in cells
