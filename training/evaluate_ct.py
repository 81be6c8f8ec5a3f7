"""`vpet evaluate` for CT -> PET packages: the comparison of seed paper 000 (FCN, cGAN, blend).

Why: the paper's claim is about lesions (24/26 found at SUVmax > 2.5, 0.25 false positives per
case) and about picture quality; this measures both on any folder of paired studies, per case and
overall, and for a blended package also for each member alone, so the blend's benefit is visible.

Lesions (ground truth), by what the data offer: phantom spheres from `cases.json` (with lesion
kinds, so benign cysts are tracked), else the autoPET SEG mask's connected components, else the
hot regions (> threshold) of the real PET. A lesion counts when the real PET is > threshold in it
and is found when the virtual PET is > threshold there too. A false positive is a virtual hot
region of at least `min_volume_ml`, in the body (CT > -500 HU), touching no hot voxel of the real
PET. The paper tests "detection of malignant tumors in the liver region" and its false positives
are hypodense liver regions, so where a liver mask is known (phantom `cases.json` "liver_mask")
`false_positives` counts the regions that overlap the liver (dilated by one voxel), as the paper
does; `false_positives_body` always counts them over the whole body and is reported beside it.
Phantom lesions also carry `ct_snr`, the CT's evidence for them (training.detectability), and
the overall rows give the TPR over the lesions the CT shows (`lesion_tpr_ct_detectable`) beside
the TPR over all that the real PET shows. Image metrics are in SUV over body voxels; PSNR uses
the case's real SUVmax as peak; SSIM is the 2-D SSIM map (per slice, as the networks work)
averaged over body voxels.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from skimage.metrics import structural_similarity

from pipeline.models.package import BLEND, ModelPackage, load_package
from pipeline.models.predictors import blend_members, predict_members
from training.detectability import DETECTABLE_SNR, ct_snr
from training.intervals import poisson_rate, rounded, wilson
from training.metrics import BODY_HU, _sphere_mask
from training.pairs import Pair, Skipped, load_pairs, why_skipped
from training.phantoms.abdomen import PhantomLesion
from training.report_ct import write_markdown, write_montage

log = logging.getLogger(__name__)



class TruthLesion(NamedTuple):
    """One ground-truth lesion on the pair grid; `ct_snr`: the CT's evidence for it
    (training.detectability), known for phantom lesions where a liver mask is."""

    mask: np.ndarray
    kind: str
    ct_snr: float | None = None


Truth = list[TruthLesion]


def predictions(pkg: ModelPackage, ct: np.ndarray) -> dict[str, np.ndarray]:
    """{"fcn", "cgan", "blend"} for a blended package (members run once), else {arch: pred}."""
    arch = pkg.manifest["architecture"]
    if arch["name"] != BLEND:
        return {arch["name"]: pkg.predict(ct)}
    out = predict_members(pkg.network, ct, pkg.manifest, pkg.device)
    out["blend"] = blend_members(out, pkg.manifest)
    return out


def ground_truth(pair: Pair, phantom: list[PhantomLesion] | None, threshold: float,
                 liver: np.ndarray | None = None) -> Truth:
    """Lesion masks on the pair grid; phantom lesions with their CT evidence where `liver`."""
    if phantom is not None:
        def evidence(les: PhantomLesion) -> float | None:
            if liver is None or les.kind == "cyst":
                return None
            return ct_snr(pair.ct, pair.origin, pair.spacing, liver, les, phantom)
        return [TruthLesion(m, les.kind, evidence(les)) for les in phantom
                if (m := _sphere_mask(pair, les)).any()]
    source = pair.seg > 0 if pair.seg is not None else pair.suv > threshold
    labels, n = ndimage.label(source)
    kind = "seg" if pair.seg is not None else "pet_hot_region"
    return [TruthLesion(labels == k, kind) for k in range(1, n + 1)]


def _ssim_body(pred: np.ndarray, real: np.ndarray, body: np.ndarray, peak: float) -> float:
    h, w = real.shape[1:]
    win = min(7, h - (1 - h % 2), w - (1 - w % 2))
    if win < 3:
        return float("nan")
    maps = [structural_similarity(real[k], pred[k], data_range=peak, win_size=win, full=True)[1]
            for k in range(real.shape[0])]
    return float(np.stack(maps)[body].mean())


def _fp_regions(pred: np.ndarray, pair: Pair, truth: Truth, threshold: float,
                min_volume_ml: float, liver: np.ndarray | None,
                members: dict[str, np.ndarray] | None = None) -> list[dict]:
    """Virtual hot regions (>= min_volume_ml, in the body) touching no real hot voxel, each with
    where it sits (in the liver? on a benign cyst?), what CT and real PET show there and, for a
    blend, each member network's SUVmax there (which network made the false positive)."""
    body = pair.ct > BODY_HU
    regions, n = ndimage.label((pred > threshold) & body)
    if not n:
        return []
    voxel_ml = float(np.prod(pair.spacing)) / 1e3
    sizes = np.bincount(regions.ravel(), minlength=n + 1) * voxel_ml
    real_hot = ndimage.binary_dilation(pair.suv > threshold, iterations=1)
    touched = np.zeros(n + 1, bool)
    touched[np.unique(regions[real_hot & (regions > 0)])] = True
    cysts = np.zeros(pair.ct.shape, bool)
    for les in truth:
        if les.kind == "cyst":
            cysts |= les.mask
    near_liver = ndimage.binary_dilation(liver, iterations=1) if liver is not None else None
    out = []
    for k in np.nonzero((sizes >= min_volume_ml) & ~touched)[0]:
        if k == 0:
            continue
        m = regions == k
        out.append({"ml": round(float(sizes[k]), 2), "suvmax": round(float(pred[m].max()), 2),
                    "ct_hu": round(float(pair.ct[m].mean()), 1),
                    "real_suv": round(float(pair.suv[m].mean()), 2),
                    "in_liver": None if near_liver is None else bool((m & near_liver).any()),
                    "on_cyst": bool((m & cysts).any()),
                    **{f"{name}_suvmax": round(float(net[m].max()), 2)
                       for name, net in (members or {}).items()}})
    return out


def case_metrics(pred: np.ndarray, pair: Pair, truth: Truth, threshold: float,
                 min_volume_ml: float, liver: np.ndarray | None = None,
                 members: dict[str, np.ndarray] | None = None) -> dict:
    """Lesion and image metrics of one prediction against one real PET; `liver` (a mask on the
    pair grid) limits `false_positives` to the liver region as the paper counts them;
    `members` (a blend's networks) are read at each lesion and each false positive."""
    body = pair.ct > BODY_HU
    diff = (pred - pair.suv)[body].astype(np.float64)
    rmse = float(np.sqrt(np.mean(diff**2))) if diff.size else float("nan")
    peak = max(float(pair.suv[body].max(initial=0.0)), 1e-6)
    lesions, cysts_hot = [], 0
    for les in truth:
        p_max, t_max = float(pred[les.mask].max()), float(pair.suv[les.mask].max())
        if les.kind == "cyst":
            cysts_hot += p_max > threshold
            continue
        if t_max > threshold:
            row = {"kind": les.kind, "suvmax_real": round(t_max, 3),
                   "suvmax_virtual": round(p_max, 3), "suvmax_error": round(p_max - t_max, 3),
                   "diameter_mm": round(_diameter_mm(les.mask, pair), 1),
                   "found": bool(p_max > threshold)}
            if les.ct_snr is not None:
                row["ct_snr"] = round(les.ct_snr, 1)
            for name, net in (members or {}).items():  # which network missed (or found) it
                row[f"{name}_suvmax"] = round(float(net[les.mask].max()), 3)
            lesions.append(row)
    fps = _fp_regions(pred, pair, truth, threshold, min_volume_ml, liver, members)
    in_scope = [f for f in fps if f["in_liver"] is not False]
    return {"lesions": lesions, "lesions_hot": len(lesions),
            "found": sum(les["found"] for les in lesions), "false_positives": len(in_scope),
            "false_positives_body": len(fps), "fp_scope": "body" if liver is None else "liver",
            "fp_regions": fps,
            "cysts": sum(les.kind == "cyst" for les in truth), "cysts_predicted_hot": int(cysts_hot),
            "mae": round(float(np.abs(diff).mean()) if diff.size else float("nan"), 4),
            "rmse": round(rmse, 4), "psnr": round(20 * np.log10(peak / max(rmse, 1e-9)), 3),
            "ssim": round(_ssim_body(pred, pair.suv, body, peak), 4)}


def _diameter_mm(mask: np.ndarray, pair: Pair) -> float:
    """Equivalent-sphere diameter of a truth mask (phantom spheres carry a 1.5 mm margin)."""
    volume = float(mask.sum()) * float(np.prod(pair.spacing))
    return (6.0 * volume / np.pi) ** (1.0 / 3.0)


def overall(cases: list[dict]) -> dict:
    """Pooled lesion counts (TPR, FP per case, each with its 95% interval) and mean image
    metrics over cases."""
    hot = sum(c["lesions_hot"] for c in cases)
    found = sum(c["found"] for c in cases)
    errors = [les["suvmax_error"] for c in cases for les in c["lesions"]]
    shown = [les for c in cases for les in c["lesions"]
             if les.get("ct_snr", -np.inf) >= DETECTABLE_SNR]
    measured = any("ct_snr" in les for c in cases for les in c["lesions"])
    mean = {k: round(float(np.nanmean([c[k] for c in cases])), 4)
            for k in ("mae", "rmse", "psnr", "ssim")} if cases else {}
    fps = sum(c["false_positives"] for c in cases)
    found_shown = sum(les["found"] for les in shown)
    return {"cases": len(cases), "lesions_hot_in_pet": hot, "lesions_found": found,
            "lesion_tpr": round(found / hot, 4) if hot else None,
            "lesion_tpr_ci95": rounded(wilson(found, hot)),
            "false_positives_per_case": round(fps / max(len(cases), 1), 3),
            "false_positives_per_case_ci95": rounded(poisson_rate(fps, len(cases))),
            "false_positives_per_case_body": round(
                sum(c.get("false_positives_body", c["false_positives"]) for c in cases)
                / max(len(cases), 1), 3),
            "fp_scope": "liver" if cases and all(c.get("fp_scope") == "liver" for c in cases)
            else "body",
            "lesions_ct_detectable": len(shown) if measured else None,
            "lesion_tpr_ct_detectable": round(found_shown / len(shown), 4) if shown else None,
            "lesion_tpr_ct_detectable_ci95": rounded(wilson(found_shown, len(shown))),
            "cysts": sum(c["cysts"] for c in cases),
            "cysts_predicted_hot": sum(c["cysts_predicted_hot"] for c in cases),
            "suvmax_error_mean": round(float(np.mean(errors)), 3) if errors else None,
            "suvmax_abs_error_mean": round(float(np.mean(np.abs(errors))), 3) if errors else None,
            **mean}


def _phantom_cases(data: Path) -> tuple[dict[str, list[PhantomLesion]], dict[str, Path]]:
    """study UID -> lesions and study UID -> liver mask file, from every cases.json under
    `data` (phantom ground truth; mask paths are relative to their cases.json)."""
    lesions: dict[str, list[PhantomLesion]] = {}
    livers: dict[str, Path] = {}
    for path in sorted(Path(data).rglob("cases.json")):
        for case in json.loads(path.read_text()):
            if "study_uid" in case and "lesions" in case:
                lesions[case["study_uid"]] = [
                    PhantomLesion(tuple(x["centre_mm"]), x["diameter_mm"], x["suv_max"],
                                  x["kind"], x["hu"], x.get("rim", True))
                    for x in case["lesions"]]
            if case.get("liver_mask") and (path.parent / case["liver_mask"]).is_file():
                livers[case["study_uid"]] = path.parent / case["liver_mask"]
    return lesions, livers


def mask_on_grid(path: Path, pair: Pair) -> np.ndarray:
    """A label file (NIfTI, patient geometry) resampled onto the pair's model grid (nearest)."""
    ref = sitk.Image([int(v) for v in pair.ct.shape[::-1]], sitk.sitkUInt8)
    ref.SetOrigin(tuple(float(v) for v in pair.origin))
    ref.SetSpacing(tuple(float(v) for v in pair.spacing))
    img = sitk.ReadImage(str(path), sitk.sitkUInt8)
    out = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(out) > 0


def _load_pairs(data: Path, pkg: ModelPackage, out: Path,
                skipped: list[Skipped]) -> list[Pair]:
    """The pairs on the package's grid, resampled the way the package expects."""
    try:
        return load_pairs(data, pkg.spacing_mm, antialiased=pkg.antialias, skipped=skipped)
    except OSError:  # read-only data folder: cache next to the report instead
        skipped.clear()
        return load_pairs(data, pkg.spacing_mm, out / "pairs-cache", pkg.antialias,
                          skipped=skipped)


def evaluate_ct(model: Path, data: Path, out: Path, device: str = "cpu",
                threshold: float = 2.5, min_volume_ml: float = 0.1) -> dict:
    """Evaluate a CT package on paired studies; writes report.json, report.md, montage.png."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pkg = load_package(model, device)
    skipped: list[Skipped] = []
    pairs = _load_pairs(Path(data), pkg, out, skipped)
    if not pairs:
        raise ValueError(f"no paired PET/CT studies or NIfTI cases under {data}"
                         f"{why_skipped(skipped)}")
    phantoms, livers = _phantom_cases(Path(data))
    per_case: dict[str, list[dict]] = {}
    montage_rows = []
    for i, pair in enumerate(pairs):
        liver = mask_on_grid(livers[pair.study_uid], pair) if pair.study_uid in livers else None
        truth = ground_truth(pair, phantoms.get(pair.study_uid), threshold, liver)
        preds = predictions(pkg, pair.ct)
        members = {k: v for k, v in preds.items() if k != "blend"} if "blend" in preds else None
        for name, pred in preds.items():
            row = case_metrics(pred, pair, truth, threshold, min_volume_ml, liver,
                               members if name == "blend" else None)
            per_case.setdefault(name, []).append({"case": i, "study_uid": pair.study_uid, **row})
        if len(montage_rows) < 4:
            montage_rows.append((pair, preds, truth))
        log.info("case %d/%d evaluated", i + 1, len(pairs))
    report = {"model": {"path": str(model), "name": pkg.name, "version": pkg.version,
                        "architecture": pkg.manifest["architecture"]["name"]},
              "data": str(data), "threshold_suv": threshold, "min_volume_ml": min_volume_ml,
              "lesion_truth": "phantom cases.json" if phantoms else "SEG or real PET hot regions",
              "skipped": [s._asdict() for s in skipped],
              "overall": {name: overall(rows) for name, rows in per_case.items()},
              "per_case": per_case}
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    write_markdown(report, out / "report.md")
    write_montage(montage_rows, out / "montage.png", threshold)
    log.info("CT evaluation written to %s", out)
    return report
