"""The paper's Table 1 on phantoms: pix2pix-3D (tanh, tanhshrink), GANBERT, GANBERT + CNN-D.

Why: the seed paper's claim is a comparison on the same data and budget; this trains the four
variants with identical data, steps and seeds and reports their held-out PSNR/SSIM/RMSE.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from training.ganbert.data import phantom_pairs
from training.ganbert.trainer import TrainConfig, train

log = logging.getLogger(__name__)

VARIANTS = (  # (row label, method, activation)
    ("pix2pix-3D (tanh)", "pix2pix3d", "tanh"),
    ("pix2pix-3D (tanhshrink)", "pix2pix3d", "tanhshrink"),
    ("GANBERT", "ganbert", "tanhshrink"),
    ("GANBERT + CNN-D", "ganbert_cnn", "tanhshrink"),
)
PAPER = {"pix2pix-3D (tanh)": (50.41, 0.0, 1.85), "GANBERT": (57.58, 0.27, 0.80)}


@dataclass
class TableConfig:
    out: Path
    data: Path | None = None  # folder of .npz pairs; None = brain phantoms made in out/data
    steps: int = 60
    cases: int = 4
    val_cases: int = 2
    tiny: bool = True
    lr: float = 1e-3
    seed: int = 0
    device: str = "cpu"


def _data(cfg: TableConfig) -> Path:
    if cfg.data is not None:
        return cfg.data
    root = Path(cfg.out) / "data"
    probe = TrainConfig(tiny=cfg.tiny, steps=cfg.steps)  # the tiny grid, if tiny
    phantom_pairs(root, cfg.val_cases, 100_000, probe.shape, probe.spacing_mm)
    phantom_pairs(root, cfg.cases, 0, probe.shape, probe.spacing_mm)
    return root


def run_table(cfg: TableConfig) -> dict:
    """Train and validate every variant; write table.json and table.md under `cfg.out`."""
    data = _data(cfg)
    rows = []
    for label, method, activation in VARIANTS:
        t0 = time.time()
        tc = TrainConfig(out=Path(cfg.out) / method / activation, method=method, data=data,
                         tiny=cfg.tiny, steps=cfg.steps, activation=activation, lr=cfg.lr,
                         val_cases=cfg.val_cases, seed=cfg.seed, device=cfg.device,
                         resume=False, progress=False)
        metrics = train(tc)
        rows.append({"method": label, **metrics["validation"],
                     "seconds": round(time.time() - t0, 1)})
        log.info("%s: %s", label, rows[-1])
    result = {"steps": cfg.steps, "tiny": cfg.tiny, "lr": cfg.lr, "data": str(data),
              "rows": rows}
    out = Path(cfg.out)
    (out / "table.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "table.md").write_text(markdown(result))
    return result


def markdown(result: dict) -> str:
    lines = ["# Table 1 on brain phantoms (held-out cases)", "",
             (f"{result['steps']} steps each, tiny={result['tiny']}, lr={result['lr']}, "
             f"data `{result['data']}`. Metrics on SUVR clipped to -10..1000 as in the paper."),
             "", "| method | PSNR dB | SSIM | RMSE | train s | paper PSNR / SSIM / RMSE |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        paper = PAPER.get(r["method"])
        ref = " / ".join(f"{v:g}" for v in paper) if paper else "-"
        lines.append(f"| {r['method']} | {r.get('psnr')} | {r.get('ssim')} | {r.get('rmse')} | "
                     f"{r['seconds']} | {ref} |")
    return "\n".join(lines) + "\n"
