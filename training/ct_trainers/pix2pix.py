"""Train pix2pix (U-Net-256 + 70x70 PatchGAN) on CT -> SUV slices, as paper 000 uses it.

Why: the cGAN gives the realistic-looking half of the blended virtual PET. The step follows
junyanz's `Pix2PixModel.optimize_parameters`: D on (A, G(A)) detached and (A, B), loss halved;
then G with D frozen: BCE(D(A, G(A)), real) + lambda x pixel loss (SUV-weighted L2 here).
Targets live in tanh units: B = SUV / suv_max * 2 - 1.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from pipeline.models.pix2pix import NLayerDiscriminator, UnetGenerator
from training.ct_trainers import runtime as R
from training.ct_trainers.config import TrainConfig
from training.ct_trainers.loop import fit
from training.losses import discriminator_loss, generator_loss, suv_weights

log = logging.getLogger(__name__)

DEFAULT_LR, DEFAULT_BATCH = 2e-4, 1
D_KEYS = ("ndf", "n_layers")


def train_pix2pix(cfg: TrainConfig) -> Path:
    """Train G and D, validate G each epoch, checkpoint both; writes a `pix2pix_unet` package."""
    rt = R.setup(cfg.device, cfg.seed, cfg.threads)
    g_params = {"in_channels": cfg.context,
                **{k: v for k, v in cfg.net.items() if k not in D_KEYS}}
    d_params = {k: cfg.net[k] for k in D_KEYS if k in cfg.net}
    norm = g_params.get("norm", "batch")
    gen_net = UnetGenerator(**g_params, unit_output=False)
    disc_net = NLayerDiscriminator(cfg.context + 1, norm=norm, **d_params)
    gen, disc = R.prepare(gen_net, rt), R.prepare(disc_net, rt)
    lr = cfg.lr or DEFAULT_LR
    opt_g = torch.optim.Adam(R.param_groups(gen, cfg.input_lr_factor), lr=lr, betas=cfg.betas)
    R.set_lr(opt_g, lr)
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=cfg.betas)

    def step(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        real = y / cfg.suv_max * 2.0 - 1.0
        weight = suv_weights(y, cfg.weight_floor) if cfg.weighted else None
        with R.autocast(rt, cfg.amp):
            fake = gen(x)
        disc_net.requires_grad_(True)
        with R.autocast(rt, cfg.amp):
            d_fake = disc(torch.cat([x, fake.detach()], 1))
            d_real = disc(torch.cat([x, real], 1))
        loss_d = discriminator_loss(d_real, d_fake)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        disc_net.requires_grad_(False)  # G step: no D gradients (unwrapped D, no DDP hooks)
        with R.autocast(rt, cfg.amp):
            d_fake = disc_net(torch.cat([x, fake], 1))
        loss_g, parts = generator_loss(d_fake, fake, real, weight, cfg.lam, cfg.loss)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        disc_net.requires_grad_(True)
        return {"loss_d": float(loss_d.detach()), "loss_g": float(loss_g.detach()), **parts}

    def train_mode(on: bool) -> None:
        gen.train(on)
        disc.train(on)
        gen_net.unit_output = not on  # validation/export: (tanh + 1) / 2, times scale = SUV

    params = {k: v for k, v in g_params.items() if k != "unit_output"}  # G only: package holds G
    return fit(cfg, rt, "pix2pix_unet", params, gen_net,
               {"net": gen, "disc": disc}, {"opt_g": opt_g, "opt_d": opt_d}, step,
               {"opt_g": lr, "opt_d": lr}, cfg.batch_size or DEFAULT_BATCH,
               gen_net.multiple, train_mode)

