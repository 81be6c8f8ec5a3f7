"""Markdown table and PNG montage of a CT -> PET evaluation (`training.evaluate_ct`).

Why apart: the numbers are computed in evaluate_ct; how they are shown to a reader (one table
row per method, one montage row per case: CT | real PET | FCN | cGAN | blended) is separate.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from training.detectability import DETECTABLE_SNR
from training.pairs import left_out

log = logging.getLogger(__name__)

COLUMNS = ("lesion_tpr", "lesion_tpr_ci95", "lesions_found", "lesions_hot_in_pet",
           "lesion_tpr_ct_detectable", "lesion_tpr_ct_detectable_ci95", "lesions_ct_detectable",
           "false_positives_per_case", "false_positives_per_case_ci95",
           "false_positives_per_case_body", "cysts_predicted_hot", "suvmax_error_mean", "mae",
           "rmse", "psnr", "ssim")
SUV_DISPLAY_MAX = 6.0
TILE = 160


def write_markdown(report: dict, path: Path) -> None:
    """Overall table (one row per method) and a per-case table of the last method."""
    lines = [f"# CT -> PET evaluation: {report['model']['name']} {report['model']['version']}",
             "", (f"Data: `{report['data']}`; lesion truth: {report['lesion_truth']}; "
             f"threshold SUVmax > {report['threshold_suv']}; false positive = virtual hot "
             f"region >= {report['min_volume_ml']} ml touching no real hot voxel, counted in "
             "the liver region like the paper where a liver mask is known "
             "(`false_positives_per_case`), and over the whole body "
             "(`false_positives_per_case_body`). Phantom lesions carry `ct_snr`, the CT's "
             "evidence for them (matched-filter SNR on the model grid, "
             "training.detectability); `lesion_tpr_ct_detectable` counts those with "
             f"ct_snr >= {DETECTABLE_SNR:g}, the lesions a CT -> PET model can be asked to find. "
             "`_ci95`: 95% interval (Wilson for a TPR, exact Poisson for false positives per "
             "case; the paper's 24 of 26 is 0.76-0.98, its 2 in 8 cases 0.03-0.90)."),
             "",
             "| method | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, row in report["overall"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(row.get(c)) for c in COLUMNS) + " |")
    if report.get("skipped"):
        lines += ["", left_out(report["skipped"])]
    lines += _missed_lesions(report)
    lines += _false_positives(report)
    for name, cases in report["per_case"].items():
        lines += ["", f"## Per case: {name}", "",
                  "| case | found/hot | FP | FP body | cysts hot | MAE | RMSE | PSNR | SSIM |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {c['case']} | {c['found']}/{c['lesions_hot']} | {c['false_positives']} | "
                  f"{c.get('false_positives_body', c['false_positives'])} | "
                  f"{c['cysts_predicted_hot']}/{c['cysts']} | {c['mae']} | {c['rmse']} | "
                  f"{c['psnr']} | {c['ssim']} |" for c in cases]
    path.write_text("\n".join(lines) + "\n")


def _cell(value) -> str:
    """A table cell; an interval [low, high] as low-high."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return f"{value[0]:g}-{value[1]:g}"
    return str(value)


def _missed_lesions(report: dict) -> list[str]:
    """The lesions the last method (the blend, for a blended package) missed, with the CT's
    evidence for each where known: what a reader needs to see why a target is not reached."""
    name, cases = list(report["per_case"].items())[-1]
    missed = [(c["case"], les) for c in cases for les in c["lesions"] if not les["found"]]
    lines = ["", f"## Lesions missed by {name} ({len(missed)})", ""]
    if not missed:
        return lines + ["None."]
    nets = _member_names(les for _, les in missed)
    lines += ["| case | kind | diameter mm | real SUVmax | virtual SUVmax | CT evidence (SNR) | "
              + "".join(f"{n} SUVmax | " for n in nets), "|---" * (6 + len(nets)) + "|"]
    return lines + [f"| {case} | {les['kind']} | {les['diameter_mm']} | {les['suvmax_real']} | "
                    f"{les['suvmax_virtual']} | {les.get('ct_snr', 'n/a')} | "
                    + "".join(f"{les.get(n + '_suvmax', '')} | " for n in nets)
                    for case, les in missed]


def _member_names(rows) -> list[str]:
    """The member networks read at a blend's lesions or false positives (`<name>_suvmax`)."""
    return sorted({k[:-len("_suvmax")] for row in rows for k in row if k.endswith("_suvmax")})


def _false_positives(report: dict) -> list[str]:
    """The last method's false positives in scope (the liver where known), with what CT, real
    PET and, for a blend, each network show there: where to look to bring the count down."""
    name, cases = list(report["per_case"].items())[-1]
    fps = [(c["case"], f) for c in cases for f in c.get("fp_regions", [])
           if f.get("in_liver") is not False]
    lines = ["", f"## False positives of {name} ({len(fps)})", ""]
    if not fps:
        return lines + ["None."]
    nets = _member_names(f for _, f in fps)
    lines += ["| case | ml | SUVmax | CT HU | real SUV | on cyst | "
              + "".join(f"{n} SUVmax | " for n in nets),
              "|---" * (6 + len(nets)) + "|"]
    return lines + [f"| {case} | {f['ml']} | {f['suvmax']} | {f['ct_hu']} | {f['real_suv']} | "
                    f"{'yes' if f['on_cyst'] else 'no'} | "
                    + "".join(f"{f.get(n + '_suvmax', '')} | " for n in nets) for case, f in fps]


def _grey(img: np.ndarray, low: float, high: float) -> Image.Image:
    u8 = (np.clip((img - low) / (high - low), 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(u8).convert("RGB")


def _hot(img: np.ndarray) -> Image.Image:
    """'Hot' colour map (black - red - yellow - white) over 0..SUV_DISPLAY_MAX."""
    t = np.clip(img / SUV_DISPLAY_MAX, 0, 1)
    rgb = np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)], -1)
    return Image.fromarray((rgb * 255).astype(np.uint8))


def _slice_index(pair, truth, threshold: float) -> int:
    """The slice through the hottest ground-truth lesion, else the middle slice."""
    best, best_val = pair.ct.shape[0] // 2, -1.0
    for les in truth:
        val = float(pair.suv[les.mask].max())
        if val > max(best_val, threshold):
            zs = np.nonzero(les.mask.any(axis=(1, 2)))[0]
            best, best_val = int(zs[len(zs) // 2]), val
    return best


def write_montage(rows: list, path: Path, threshold: float) -> None:
    """One row per case: CT | real PET | each prediction (PIL, labelled tiles)."""
    if not rows:
        return
    names = list(rows[0][1])
    cols = ["CT", "real PET", *names]
    sheet = Image.new("RGB", (TILE * len(cols), (TILE + 14) * len(rows) + 14), "black")
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(cols):
        draw.text((c * TILE + 4, 1), label, fill="white")
    for r, (pair, preds, truth) in enumerate(rows):
        k = _slice_index(pair, truth, threshold)
        tiles = [_grey(pair.ct[k], -160, 240), _hot(pair.suv[k])]
        tiles += [_hot(preds[n][k]) for n in names]
        y = 14 + r * (TILE + 14)
        for c, tile in enumerate(tiles):
            sheet.paste(tile.resize((TILE, TILE), Image.Resampling.BILINEAR), (c * TILE, y))
        draw.text((4, y + TILE), f"case {r} slice {k} (SUV 0-{SUV_DISPLAY_MAX:g})", fill="grey")
    sheet.save(path)
