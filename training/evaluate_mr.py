"""`vpet evaluate` for MR -> PET packages: the paper's metrics and its Fig. 7 histogram.

Why: seed paper 003 reports PSNR, SSIM and RMSE on SUVR in a -10..1000 value range and shows
the intensity histogram of generated vs real PET; the same numbers and picture, computed on
held-out paired studies, tell whether a package is worth shipping. Pairs come from a folder of
MR/PET DICOM studies (PET -> SUV -> SUVR, resampled to the package's model grid) or from .npz
caches written by the trainer.
"""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline.models.package import load_package
from pipeline.models.unet3d import predict_mr_to_pet
from training.ganbert.data import BrainPair, find_brain_studies, pair_from_dicom
from training.ganbert.metrics import VALUE_RANGE, image_metrics
from training.pairs import Skipped, attempt, left_out, why_skipped
from training.phantoms.anatomy import Grid
from training.phantoms.brain import CSF, GM, WM, BrainCaseInfo, case_labels, hot_weight

log = logging.getLogger(__name__)

HIST_RANGE = (0.0, 3.0)  # SUVR shown in the histogram (amyloid/FDG brain values)
HIST_BINS = 60


def load_pairs(data: Path, spacing_mm: tuple[float, ...], reference: str = "phantom",
               skipped: list[Skipped] | None = None) -> list[BrainPair]:
    """Paired studies under `data`: .npz caches if any, else MR/PET DICOM studies.

    `reference` "phantom" divides PET by the phantoms' cerebellar reference mean (SUVR);
    "none" keeps PET as stored/SUV (data already in SUVR).
    """
    caches = sorted(Path(data).rglob("*.npz"))
    if caches:
        return [BrainPair.load(p) for p in caches]
    ref = BrainCaseInfo.reference_mask if reference == "phantom" else None
    skipped = [] if skipped is None else skipped  # a study that cannot be paired: left out
    pairs = [attempt(partial(pair_from_dicom, mr, pets, spacing_mm, ref),
                     str(Path(mr[0]).parent), skipped) for mr, pets in find_brain_studies(data)]
    pairs = [p for p in pairs if p is not None]
    if not pairs:
        raise ValueError(f"{data}: no paired MR/PET studies and no .npz pairs found"
                         f"{why_skipped(skipped)}")
    return pairs


def head_mask(pair: BrainPair) -> np.ndarray:
    """Voxels inside the head (MR above 10% of its 99th percentile): where histograms count."""
    return pair.mr > 0.1 * float(np.percentile(pair.mr, 99))


def histogram_png(real: np.ndarray, generated: np.ndarray, path: Path,
                  size: tuple[int, int] = (640, 400)) -> Path:
    """Fig. 7 of the paper: voxel-count histograms of real and generated PET (PIL, no pyplot)."""
    lo, hi = HIST_RANGE
    edges = np.linspace(lo, hi, HIST_BINS + 1)
    counts = {"real PET": np.histogram(real, edges)[0],
              "generated PET": np.histogram(generated, edges)[0]}
    w, h = size
    left, right, top, bottom = 50, w - 10, 30, h - 40
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle([left, top, right, bottom], outline=(120, 120, 120))
    peak = max(int(c.max()) for c in counts.values()) or 1
    for (name, c), colour, dy in zip(counts.items(), [(31, 119, 180), (214, 39, 40)], (0, 14),
                                     strict=True):
        xs = left + (right - left) * (edges[:-1] + edges[1:] - 2 * lo) / (2 * (hi - lo))
        ys = bottom - (bottom - top) * c / peak
        draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=colour, width=2)
        draw.text((right - 150, top + 6 + dy), name, fill=colour)
    for v in np.linspace(lo, hi, 7):
        x = left + (right - left) * (v - lo) / (hi - lo)
        draw.text((x - 8, bottom + 6), f"{v:.1f}", fill=(0, 0, 0))
    draw.text((left, 8), f"Intensity histogram (SUVR, voxels in head), peak {peak} voxels",
              fill=(0, 0, 0))
    draw.text((w // 2 - 20, h - 18), "SUVR", fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def phantom_truth(data: Path) -> dict[str, dict]:
    """cases.json records of a `vpet phantoms make --kind brain` folder, by study UID."""
    path = Path(data) / "cases.json"
    if not path.is_file():
        return {}
    return {c["study_uid"]: c for c in json.loads(path.read_text()) if "study_uid" in c}


def regional_suvr(pair: BrainPair, pred: np.ndarray, record: dict) -> dict[str, float]:
    """Mean last-frame SUVR, true and predicted, per phantom region (labels at voxel centres).

    Why: PSNR/SSIM over a whole head hide whether the cortical pattern is there; the
    regions the phantom defines (cortex, hot cortex, white matter, CSF, cerebellar
    reference) show it directly.
    """
    seed, tracer, atrophy, hot = BrainCaseInfo.truth_from_json(record)
    grid = Grid(pair.origin, pair.spacing, pair.mr.shape)
    labels = case_labels(grid, seed, tracer, atrophy, hot)
    hw = hot_weight(grid, hot)
    masks = {"cortex": (labels == GM) & (hw == 0), "hot_cortex": (labels == GM) & (hw > 0),
             "wm": labels == WM, "csf": labels == CSF,
             "cerebellum": BrainCaseInfo.reference_mask(grid)}
    row: dict[str, float] = {"seed": seed, "atrophy": atrophy}
    for name, m in masks.items():
        if m.sum() >= 5:
            row[f"{name}_true"] = round(float(pair.pet[-1][m].mean()), 3)
            row[f"{name}_pred"] = round(float(pred[-1][m].mean()), 3)
    return row


def montage_png(pairs: list[BrainPair], preds: list[np.ndarray], path: Path,
                cases: int = 3) -> Path:
    """MR | real PET | generated PET (last frame, 0..2.5 SUVR), three axial slices per case."""
    rows = []
    for pair, pred in list(zip(pairs, preds, strict=True))[:cases]:
        mr_hi = float(np.percentile(pair.mr, 99.5)) or 1.0
        for f in (0.45, 0.55, 0.68):
            z = int(f * pair.mr.shape[0])
            rows.append(np.concatenate([np.clip(pair.mr[z] / mr_hi, 0, 1),
                                        np.clip(pair.pet[-1][z] / 2.5, 0, 1),
                                        np.clip(pred[-1][z] / 2.5, 0, 1)], axis=1))
    img = Image.fromarray((np.concatenate(rows) * 255).astype(np.uint8)[::-1])
    img = img.resize((img.width * 3, img.height * 3), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


REGIONS = ("cortex", "hot_cortex", "wm", "csf", "cerebellum")


def _regional_markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    head = " | ".join(f"{r} true / pred" for r in REGIONS)
    lines = ["## Regional SUVR (last frame, phantom labels)", "", f"| seed | atrophy | {head} |",
             "| --- | --- |" + " --- |" * len(REGIONS)]
    for r in rows:
        cells = " | ".join(f"{r.get(k + '_true', '-')} / {r.get(k + '_pred', '-')}"
                           for k in REGIONS)
        lines.append(f"| {r['seed']} | {r['atrophy']} | {cells} |")
    return [*lines, "", "![MR | real PET | generated PET](montage.png)", ""]


def _markdown(report: dict) -> str:
    rows = [f"| {c['case']} | {c['psnr']} | {c['ssim']} | {c['rmse']} | {c['mae_head_suvr']} |"
            for c in report["cases"]]
    m = report["mean"]
    return "\n".join([
        f"# MR -> PET evaluation: {report['model']} {report['version']}", "",
        (f"Data: `{report['data']}` ({len(report['cases'])} paired studies). Metrics as seed "
        f"paper 003: SUVR clipped to {VALUE_RANGE[0]:g}..{VALUE_RANGE[1]:g} (data range "
        f"{VALUE_RANGE[1] - VALUE_RANGE[0]:g}), mean over the PET time-steps; MAE in SUVR "
        "inside the head for a plainer number."), "",
        "| case | PSNR dB | SSIM | RMSE | MAE (head, SUVR) |", "| --- | --- | --- | --- | --- |",
        *rows, f"| **mean** | {m['psnr']} | {m['ssim']} | {m['rmse']} | {m['mae_head_suvr']} |", "",
        *([left_out(report["skipped"]), ""] if report.get("skipped") else []),
        "![histogram](histogram.png)", "",
        "Paper (AV45, real ADNI data): GANBERT PSNR 57.58, SSIM 0.27, RMSE 0.80.", "",
        *_regional_markdown(report.get("regional_suvr", []))])


def evaluate_mr(model: Path, data: Path, out: Path, *, device: str = "cpu",
                reference: str = "phantom") -> dict:
    """Evaluate an MR package on every pair under `data`; write report.json/.md, histogram.png."""
    package = load_package(model, device)
    if package.modality != "MR":
        raise ValueError(f"{model} takes {package.modality} input; evaluate_mr needs an MR model")
    skipped: list[Skipped] = []
    pairs = load_pairs(data, package.spacing_mm, reference, skipped)
    truth = phantom_truth(data)
    cases, real_all, gen_all, regional, preds = [], [], [], [], []
    for i, pair in enumerate(pairs):
        pred = predict_mr_to_pet(package.network, pair.mr, device)
        preds.append(pred)
        if pair.study_uid in truth:
            regional.append(regional_suvr(pair, pred, truth[pair.study_uid]))
        row = image_metrics(pred, pair.pet)
        mask = head_mask(pair)
        row["mae_head_suvr"] = round(float(np.abs(pred - pair.pet)[:, mask].mean()), 4)
        cases.append({"case": pair.study_uid or str(i), **row})
        real_all.append(pair.pet[-1][mask])
        gen_all.append(pred[-1][mask])
        log.info("case %d: %s", i, row)
    keys = ("psnr", "ssim", "rmse", "mae_head_suvr")
    mean = {k: round(float(np.mean([c[k] for c in cases])), 4) for k in keys}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    histogram_png(np.concatenate(real_all), np.concatenate(gen_all), out / "histogram.png")
    montage_png(pairs, preds, out / "montage.png")
    report = {"model": package.name, "version": package.version, "data": str(data),
              "value_range": list(VALUE_RANGE), "cases": cases, "mean": mean,
              "histogram": "histogram.png", "montage": "montage.png",
              "skipped": [s._asdict() for s in skipped]}
    if regional:
        report["regional_suvr"] = regional
        keys = dict.fromkeys(k for r in regional for k in r if k.endswith(("_true", "_pred")))
        report["regional_mean"] = {k: round(float(np.mean([r[k] for r in regional if k in r])), 3)
                                   for k in keys}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(_markdown(report))
    return report
