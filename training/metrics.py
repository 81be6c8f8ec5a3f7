"""Held-out metrics for CT -> SUV models on phantom pairs.

Why: the manifest must say what the model does on data it never saw: voxel error in the body,
and the product's task, hot lesions at SUVmax > 2.5 (TPR, false-positive regions per case),
measured the way the CT->PET paper reports them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

from training.pairs import Pair
from training.phantoms.abdomen import PhantomLesion

BODY_HU = -500.0


def _sphere_mask(pair: Pair, lesion: PhantomLesion, margin_mm: float = 1.5) -> np.ndarray:
    axes = [pair.origin[i] + pair.spacing[i] * np.arange(pair.ct.shape[2 - i]) for i in range(3)]
    d2 = [(axes[i] - lesion.centre_mm[i]) ** 2 for i in range(3)]
    dist2 = d2[2][:, None, None] + d2[1][None, :, None] + d2[0][None, None, :]
    return dist2 <= (lesion.diameter_mm / 2 + margin_mm) ** 2


def evaluate(predict: Callable[[np.ndarray], np.ndarray], pairs: Sequence[Pair],
             lesions: Sequence[Sequence[PhantomLesion]], threshold: float = 2.5,
             min_volume_ml: float = 0.1) -> dict:
    """MAE/RMSE (SUV, body voxels), lesion TPR at SUVmax > threshold, false positives per case.

    A lesion counts when the real PET shows it (target SUVmax in its sphere > threshold); it is
    detected when the prediction's max there is > threshold too. A false positive is a predicted
    hot region (> threshold, in the body, at least `min_volume_ml` like the pipeline's lesion
    detector) touching no hot region of the real PET.
    """
    abs_err, sq_err, n_vox = 0.0, 0.0, 0
    hot = found = visible = visible_found = fp = cysts_hot = 0
    for pair, case_lesions in zip(pairs, lesions, strict=True):
        pred = predict(pair.ct)
        body = pair.ct > BODY_HU
        diff = (pred - pair.suv)[body]
        abs_err += float(np.abs(diff).sum())
        sq_err += float((diff.astype(np.float64) ** 2).sum())
        n_vox += int(body.sum())
        for les in case_lesions:
            mask = _sphere_mask(pair, les)
            if not mask.any():
                continue
            p_max = float(pred[mask].max())
            if les.kind == "cyst":
                cysts_hot += p_max > threshold
                continue
            if float(pair.suv[mask].max()) <= threshold:
                continue
            hot += 1
            found += p_max > threshold
            if les.kind == "hypodense":
                visible += 1
                visible_found += p_max > threshold
        target_hot = ndimage.binary_dilation(pair.suv > threshold, iterations=1)
        regions, n = ndimage.label((pred > threshold) & body)
        if n:
            voxel_ml = float(np.prod(pair.spacing)) / 1000.0
            sizes = np.bincount(regions.ravel(), minlength=n + 1) * voxel_ml
            touched = np.zeros(n + 1, bool)
            touched[np.unique(regions[target_hot & (regions > 0)])] = True
            fp += int(((sizes >= min_volume_ml) & ~touched)[1:].sum())
    cases = max(len(pairs), 1)
    return {
        "cases": len(pairs),
        "mae_suv_body": round(abs_err / max(n_vox, 1), 4),
        "rmse_suv_body": round(float(np.sqrt(sq_err / max(n_vox, 1))), 4),
        "lesions_hot_in_pet": hot,
        "lesion_tpr": round(found / hot, 4) if hot else None,
        "lesions_ct_visible": visible,
        "lesion_tpr_ct_visible": round(visible_found / visible, 4) if visible else None,
        "false_positives_per_case": round(fp / cases, 3),
        "cysts_predicted_hot": int(cysts_hot),
        "threshold_suv": threshold,
    }
