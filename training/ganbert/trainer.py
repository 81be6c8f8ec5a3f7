"""`train(config) -> metrics`: GANBERT (3D U-Net + BERT D [+ PatchGAN]) or pix2pix-3D.

Why one loop for both: the paper's Table 1 compares pix2pix-3D (tanh / tanhshrink), GANBERT and
GANBERT + CNN-D on the same data; only the losses differ. Separate Adam optimizers (1e-4) with
5% linear warm-up, gradient accumulation x2, bf16 autocast on CUDA only, resumable checkpoints,
DDP under torchrun, validation PSNR/SSIM/RMSE, a loss-curve PNG and a loadable model package.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress
from safetensors.torch import save_file
from torch.nn import functional as F
from torch.utils.data import DataLoader, DistributedSampler

from pipeline.models.bert_discriminator import BertConfig, BertDiscriminator
from pipeline.models.patchgan3d import PatchGAN3D
from pipeline.models.unet3d import UNet3D, predict_mr_to_pet
from training.ct_trainers.runtime import leave_process_group
from training.ganbert import runtime as R
from training.ganbert import steps as St
from training.ganbert.curves import plot_curves
from training.ganbert.data import BrainPair, PairDataset, phantom_pairs
from training.ganbert.metrics import image_metrics
from training.ganbert.normalization import NORMALIZATION

log = logging.getLogger(__name__)
METHODS = ("ganbert", "ganbert_cnn", "pix2pix3d")


@dataclass
class TrainConfig:
    """Knobs of a run; `tiny=True` shrinks data and networks so a CPU finishes in seconds."""

    out: Path = Path("runs/ganbert")
    method: str = "ganbert"
    data: Path | None = None  # folder of .npz BrainPair caches; None = make phantoms in out/data
    tiny: bool = False
    steps: int = 1000
    cases: int = 8
    val_cases: int = 2
    shape: tuple[int, int, int] = (128, 128, 128)
    spacing_mm: tuple[float, float, float] = (2.0, 2.0, 2.0)
    tracer: str = "amyloid"
    base: int = 16
    depth: int = 4
    activation: str = "tanhshrink"
    bert: str = "base"
    batch_size: int = 2
    accum: int = 2
    lr: float = 1e-4
    warmup: float = 0.05
    crop: int | None = None
    checkpointing: bool = True
    weights: St.LossWeights = field(default_factory=St.LossWeights)
    val_every: int = 200
    seed: int = 0
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    resume: bool = True
    progress: bool = True
    # Start the generator at the mean normalized PET: tanhshrink's slope is ~0 at 0, so from a
    # zero output the L1 gradient barely reaches the network (see `init_output_bias`).
    init_output_bias: bool = True
    # Export the generator of the validation with the lowest RMSE, not the last one: the
    # adversarial terms (20 NSP) can pull a short run away from its best L1 fit.
    keep_best: bool = True
    # Optional L1-only warm start of the generator (not in the paper): a CPU-length run cannot
    # afford to learn the anatomy under the adversarial terms; 0 = the paper's recipe as is.
    l1_warmup_steps: int = 0
    l1_warmup_lr: float | None = None  # None = `lr`

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.tiny:
            self.shape, self.spacing_mm = (32, 32, 32), (8.0, 8.0, 8.0)
            self.cases, self.val_cases, self.base, self.depth = 2, 1, 4, 2
            self.bert, self.batch_size, self.checkpointing = "tiny", 1, False
            self.val_every = max(self.steps, 1)


def _pairs(cfg: TrainConfig) -> tuple[list[BrainPair], list[BrainPair]]:
    if cfg.data is not None:
        pairs = [BrainPair.load(p) for p in sorted(Path(cfg.data).rglob("*.npz"))]
        if len(pairs) < 2:
            raise ValueError(f"{cfg.data}: need at least 2 .npz pairs, found {len(pairs)}")
        n_val = min(cfg.val_cases, len(pairs) - 1)
        return pairs[n_val:], pairs[:n_val]
    root = Path(cfg.out) / "data"
    train = phantom_pairs(root, cfg.cases, cfg.seed * 1000, cfg.shape, cfg.spacing_mm, cfg.tracer)
    val = phantom_pairs(root, cfg.val_cases, cfg.seed * 1000 + 100_000, cfg.shape,
                        cfg.spacing_mm, cfg.tracer)
    return train, val


def _models(cfg: TrainConfig, time_steps: int) -> dict[str, torch.nn.Module]:
    mods: dict[str, torch.nn.Module] = {"g": UNet3D(1, time_steps, cfg.base, cfg.depth,
                                                    cfg.activation,
                                                    checkpointing=cfg.checkpointing,
                                                    tile=cfg.crop)}
    if cfg.method != "pix2pix3d":
        mods["bert"] = BertDiscriminator(BertConfig.preset(cfg.bert,
                                                           checkpointing=cfg.checkpointing))
    if cfg.method in ("ganbert_cnn", "pix2pix3d"):
        mods["cnn"] = PatchGAN3D(1 + time_steps, base=max(cfg.base, 8))
    return mods


def inverse_activation(t: float, activation: str) -> float:
    """x with act(x) = t; tanhshrink is increasing, so bisection finds it."""
    if activation == "tanh":
        return float(np.arctanh(np.clip(t, -0.95, 0.95)))
    if activation == "none":
        return t
    lo, hi = -50.0, 50.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid - np.tanh(mid) < t else (lo, mid)
    return (lo + hi) / 2


def init_output_bias(g: UNet3D, ds: PairDataset) -> None:
    """Set the head bias so the untrained generator outputs each time-step's mean target."""
    means = np.mean([ds[i][1].mean(dim=(1, 2, 3)).numpy() for i in range(len(ds))], axis=0)
    with torch.no_grad():
        for c, t in enumerate(means):
            g.head.bias[c] = inverse_activation(float(t), g.activation)
    log.info("generator output bias set for mean targets %s", np.round(means, 3).tolist())


def validate(g: torch.nn.Module, pairs: list[BrainPair], device: str) -> dict[str, float]:
    """Mean PSNR/SSIM/RMSE over validation pairs, on restored SUVR."""
    g.eval()
    rows = [image_metrics(predict_mr_to_pet(g, p.mr, device), p.pet) for p in pairs]
    g.train()
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]} if rows else {}


def train(cfg: TrainConfig) -> dict:
    """Run (or resume) training; write checkpoint, curves and a model package; return metrics."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    rank, world = R.init_distributed(cfg.device)
    R.seed_everything(cfg.seed + rank)
    train_pairs, val_pairs = _pairs(cfg)
    time_steps = train_pairs[0].pet.shape[0]
    mods = {k: m.to(cfg.device) for k, m in _models(cfg, time_steps).items()}
    multiple = mods["g"].multiple
    ds = PairDataset(train_pairs, multiple, cfg.crop, cfg.seed + rank)
    sampler = DistributedSampler(ds, world, rank, seed=cfg.seed) if world > 1 else None
    loader = DataLoader(ds, cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                        drop_last=False)
    betas = (0.5, 0.999) if cfg.method == "pix2pix3d" else (0.9, 0.999)
    opts = {k: torch.optim.Adam(m.parameters(), lr=cfg.lr, betas=betas) for k, m in mods.items()}
    scheds = {k: torch.optim.lr_scheduler.LambdaLR(o, R.warmup_linear(cfg.steps, cfg.warmup))
              for k, o in opts.items()}
    ckpt = out / "checkpoint.pt"
    step, history, t0 = 0, {}, time.time()
    if cfg.resume and ckpt.is_file():
        step, history = R.load_checkpoint(ckpt, mods, opts, scheds)
    else:
        if cfg.init_output_bias:
            init_output_bias(mods["g"], ds)
        if cfg.l1_warmup_steps > 0 and rank == 0:  # DDP below broadcasts rank 0's weights
            history["warm_l1"] = l1_warm_start(mods["g"], loader, cfg)
    mods = {k: R.wrap_ddp(m, cfg.device, world) for k, m in mods.items()}
    gen = torch.Generator().manual_seed(cfg.seed + 7919 * rank)
    val: dict = {}
    best: tuple[float, int, dict] | None = None
    with Progress(disable=not cfg.progress or rank != 0, transient=True) as bar:
        task = bar.add_task(cfg.method, total=cfg.steps, completed=step)
        batches = iter(())
        epoch = 0
        while step < cfg.steps:
            logs: dict[str, float] = {}
            for _ in range(cfg.accum):
                try:
                    mr, pet = next(batches)
                except StopIteration:
                    if sampler is not None:
                        sampler.set_epoch(epoch)
                    epoch += 1
                    batches = iter(loader)
                    mr, pet = next(batches)
                parts = _micro_step(cfg, mods, mr.to(cfg.device), pet.to(cfg.device), gen)
                for k, v in parts.items():
                    logs[k] = logs.get(k, 0.0) + v / cfg.accum
            for k, opt in opts.items():
                opt.step()
                opt.zero_grad(set_to_none=True)
                scheds[k].step()
            step += 1
            for k, v in logs.items():
                history.setdefault(k, []).append(round(v, 6))
            bar.update(task, advance=1, description=f"{cfg.method} l1={logs.get('l1', 0):.4f}")
            if rank == 0 and (step % cfg.val_every == 0 or step == cfg.steps):
                val = validate(R.unwrap(mods["g"]), val_pairs, cfg.device)
                log.info("step %d: %s val %s", step, logs, val)
                if val and (best is None or val["rmse"] < best[0]):
                    best = (val["rmse"], step, {k: v.detach().cpu().clone() for k, v in
                                                R.unwrap(mods["g"]).state_dict().items()})
                R.save_checkpoint(ckpt, step, mods, opts, scheds, history)
    if rank != 0:
        leave_process_group(world)
        return {}
    plot_curves(history, out / "loss_curves.png")
    metrics = {"steps": step, "processes": world,
               "l1_warmup_steps": len(history.get("warm_l1", [])),
               "seconds": round(time.time() - t0, 2), "validation": val,
               "final_losses": {k: v[-1] for k, v in history.items() if v}}
    g = R.unwrap(mods["g"])
    if cfg.keep_best and best is not None and best[1] != step:
        g.load_state_dict(best[2])
        metrics["validation_last"] = val
        metrics["validation"] = validate(g, val_pairs, cfg.device)
        metrics["exported_step"] = best[1]
        log.info("exporting the generator of step %d (best validation RMSE)", best[1])
    export_package(out / "package", g, cfg, metrics, time_steps)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    leave_process_group(world)
    return metrics


def l1_warm_start(g: torch.nn.Module, loader: DataLoader, cfg: TrainConfig) -> list[float]:
    """`cfg.l1_warmup_steps` generator-only L1 steps (own Adam, constant lr); L1 per step.

    Why: at CPU length the 20 x NSP term dominates before the generator has learnt the
    anatomy; starting the adversarial phase from an L1 fit is the usual pix2pix-style remedy.
    """
    opt = torch.optim.Adam(g.parameters(), lr=cfg.l1_warmup_lr or cfg.lr)
    losses: list[float] = []
    batches = iter(())
    while len(losses) < cfg.l1_warmup_steps:
        try:
            mr, pet = next(batches)
        except StopIteration:
            batches = iter(loader)
            mr, pet = next(batches)
        loss = F.l1_loss(g(mr.to(cfg.device)).float(), pet.to(cfg.device).float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(round(float(loss.detach()), 6))
        if len(losses) % 50 == 0:
            log.info("L1 warm start %d/%d: l1 %.5f", len(losses), cfg.l1_warmup_steps,
                     float(np.mean(losses[-50:])))
    return losses


def _micro_step(cfg: TrainConfig, mods: dict, mr: torch.Tensor, pet: torch.Tensor,
                gen: torch.Generator) -> dict[str, float]:
    """D losses then G losses for one micro-batch; gradients accumulate (divided by accum)."""
    w, amp = cfg.weights, cfg.device.startswith("cuda")
    g, bert, cnn = mods["g"], mods.get("bert"), mods.get("cnn")
    with torch.autocast("cuda", torch.bfloat16, enabled=amp):
        fake, bottleneck = g(mr, return_bottleneck=True)
        d_parts: dict[str, torch.Tensor] = {}
        d_loss = torch.zeros((), device=mr.device)
        if bert is not None:
            d_parts = St.ganbert_d_loss(bert, mr, pet, fake, bottleneck, w, gen)
            d_loss = d_loss + d_parts.pop("loss")
        if cnn is not None:
            c = St.patch_d_loss(cnn, mr, pet, fake)
            d_loss = d_loss + c.pop("loss")
            d_parts.update(c)
    (d_loss / cfg.accum).backward()
    frozen = [m for m in (bert, cnn) if m is not None]
    for m in frozen:
        m.requires_grad_(False)
    with torch.autocast("cuda", torch.bfloat16, enabled=amp):
        if bert is not None:
            g_parts = St.ganbert_g_loss(bert, mr, pet, fake, bottleneck, w, gen,
                                        cnn=cnn if cfg.method == "ganbert_cnn" else None)
        else:
            g_parts = St.pix2pix_g_loss(cnn, mr, pet, fake)
    (g_parts.pop("loss") / cfg.accum).backward()
    for m in frozen:
        m.requires_grad_(True)
    return {k: float(v.detach()) for k, v in {**d_parts, **g_parts}.items()}


def export_package(folder: Path, g: torch.nn.Module, cfg: TrainConfig, metrics: dict,
                   time_steps: int) -> Path:
    """safetensors + manifest (architecture "unet3d", MR in, SUVR out, `time_steps` frames)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in g.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    params = {"in_channels": 1, "out_channels": time_steps, "base": cfg.base,
              "depth": cfg.depth, "activation": g.activation, "norm": "instance"}
    if getattr(g, "tile", None):
        params["tile"] = g.tile  # trained on crops: infer on crop-sized windows
    manifest = {
        "name": f"{cfg.method.replace('_', '-')}-mr-pet", "version": "0.1.0",
        "demonstration": True,
        "description": ("DEMONSTRATION MODEL trained only on synthetic brain MR/PET phantoms "
                        f"({cfg.method}, seed paper 003). NOT FOR CLINICAL USE."),
        "architecture": {"name": "unet3d", "params": params},
        "input": {"modality": "MR", "normalization": dict(NORMALIZATION),
                  "spacing_mm": list(cfg.spacing_mm), "multiple": g.multiple},
        "output": {"units": "SUVR", "time_steps": time_steps,
                   "restore": "pet = y * std_mr / 10 + mean_mr / 10"},
        "training": {"method": cfg.method, "steps": metrics["steps"], "tiny": cfg.tiny,
                     "processes": metrics.get("processes", 1),
                     "l1_warmup_steps": cfg.l1_warmup_steps, "crop": cfg.crop,
                     "tracer": cfg.tracer, "loss_weights": asdict(cfg.weights),
                     "bert": cfg.bert if cfg.method != "pix2pix3d" else None},
        "metrics": metrics,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return folder
