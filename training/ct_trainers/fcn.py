"""Train FCN-4s (VGG-16 backbone) on CT -> SUV slices with the SUV-weighted L2 loss (paper 000).

Why: the FCN is the half of the paper's system that answers lesions; it regresses SUV / suv_max
linearly, from scratch or from a user-provided VGG-16 weights file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from pipeline.models.fcn import FCN4s, load_vgg16_weights
from training.ct_trainers import runtime as R
from training.ct_trainers.config import TrainConfig
from training.ct_trainers.loop import fit
from training.losses import pixel_loss, suv_weights

log = logging.getLogger(__name__)

DEFAULT_LR, DEFAULT_BATCH = 1e-4, 8


def train_fcn(cfg: TrainConfig) -> Path:
    """Train, validate each epoch, checkpoint; writes an `fcn4s` package to `cfg.out`."""
    rt = R.setup(cfg.device, cfg.seed, cfg.threads)
    params = {"in_channels": cfg.context, **cfg.net}
    net = FCN4s(**params)
    if cfg.vgg_weights is not None:
        load_vgg16_weights(net, cfg.vgg_weights)
    model = R.prepare(net, rt)
    lr = cfg.lr or DEFAULT_LR
    opt = torch.optim.Adam(R.param_groups(model, cfg.input_lr_factor), lr=lr, betas=cfg.betas)
    R.set_lr(opt, lr)

    def step(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        with R.autocast(rt, cfg.amp):
            pred = model(x)
        weight = suv_weights(y, cfg.weight_floor) if cfg.weighted else None
        loss = pixel_loss(pred, y / cfg.suv_max, weight, cfg.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach())}

    return fit(cfg, rt, "fcn4s", params, net, {"net": model}, {"opt": opt}, step, {"opt": lr},
               cfg.batch_size or DEFAULT_BATCH, FCN4s.multiple, model.train)
