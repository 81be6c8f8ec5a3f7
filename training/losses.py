"""Losses of the CT -> PET paper (000): SUV-weighted pixel loss and the pix2pix cGAN objective.

Why: malignant lesions are few hot pixels among many cold ones; the paper weights every pixel's
loss by the target SUV so the networks attend to them (section 2.4). The cGAN objective is
pix2pix's: vanilla GAN (BCE with logits) + lambda (100) x the pixel loss, with the paper's
weighted L2 in place of pix2pix's L1; the discriminator loss is halved, 0.5 (real + fake).
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch.nn import functional as F

log = logging.getLogger(__name__)

Kind = Literal["l2", "l1"]


def suv_weights(target_suv: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    """Per-pixel weight = target SUV (the paper); `floor` > 0 keeps cold pixels in the loss."""
    return target_suv.clamp(min=floor)


def pixel_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
               kind: Kind = "l2") -> torch.Tensor:
    """mean(weight * err) with err = (pred - target)^2 (l2) or |pred - target| (l1).

    `pred`/`target` may be in network units (SUV / 20, tanh range) while `weight` stays in SUV.
    weight None = the plain (unweighted) loss. Computed in float32 under autocast.
    """
    diff = pred.float() - target.float()
    err = diff.square() if kind == "l2" else diff.abs()
    if weight is not None:
        err = err * weight.float()
    return err.mean()


def gan_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Vanilla GAN loss: BCE with logits against an all-ones (real) or all-zeros target."""
    logits = logits.float()
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """pix2pix D loss: 0.5 * (BCE(real, 1) + BCE(fake, 0)); halved to slow D relative to G."""
    return 0.5 * (gan_loss(d_real, True) + gan_loss(d_fake, False))


def generator_loss(d_fake: torch.Tensor, pred: torch.Tensor, target: torch.Tensor,
                   weight: torch.Tensor | None = None, lam: float = 100.0, kind: Kind = "l2"
                   ) -> tuple[torch.Tensor, dict[str, float]]:
    """pix2pix G loss: BCE(D(A, G(A)), 1) + lam * pixel loss; returns (total, parts for logs)."""
    adv = gan_loss(d_fake, True)
    pix = pixel_loss(pred, target, weight, kind)
    total = adv + lam * pix
    return total, {"g_gan": float(adv.detach()), "g_pixel": float(pix.detach())}
