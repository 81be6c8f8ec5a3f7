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
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline.models.package import load_package
from pipeline.models.unet3d import predict_mr_to_pet
from training.ganbert.data import BrainPair, find_brain_studies, pair_from_dicom
from training.ganbert.metrics import VALUE_RANGE, image_metrics
from training.phantoms.brain import BrainCaseInfo

log = logging.getLogger(__name__)

HIST_RANGE = (0.0, 3.0)  # SUVR shown in the histogram (amyloid/FDG brain values)
HIST_BINS = 60


def load_pairs(data: Path, spacing_mm: tuple[float, ...], reference: str = "phantom"
               ) -> list[BrainPair]:
    """Paired studies under `data`: .npz caches if any, else MR/PET DICOM studies.

    `reference` "phantom" divides PET by the phantoms' cerebellar reference mean (SUVR);
    "none" keeps PET as stored/SUV (data already in SUVR).
    """
    caches = sorted(Path(data).rglob("*.npz"))
    if caches:
        return [BrainPair.load(p) for p in caches]
    ref = BrainCaseInfo.reference_mask if reference == "phantom" else None
    pairs = [pair_from_dicom(mr, pets, spacing_mm, ref) for mr, pets in find_brain_studies(data)]
    if not pairs:
        raise ValueError(f"{data}: no paired MR/PET studies and no .npz pairs found")
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
        "![histogram](histogram.png)", "",
        "Paper (AV45, real ADNI data): GANBERT PSNR 57.58, SSIM 0.27, RMSE 0.80.", ""])


def evaluate_mr(model: Path, data: Path, out: Path, *, device: str = "cpu",
                reference: str = "phantom") -> dict:
    """Evaluate an MR package on every pair under `data`; write report.json/.md, histogram.png."""
    package = load_package(model, device)
    if package.modality != "MR":
        raise ValueError(f"{model} takes {package.modality} input; evaluate_mr needs an MR model")
    pairs = load_pairs(data, package.spacing_mm, reference)
    cases, real_all, gen_all = [], [], []
    for i, pair in enumerate(pairs):
        pred = predict_mr_to_pet(package.network, pair.mr, device)
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
    report = {"model": package.name, "version": package.version, "data": str(data),
              "value_range": list(VALUE_RANGE), "cases": cases, "mean": mean,
              "histogram": "histogram.png"}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(_markdown(report))
    return report
