"""One micro-batch of GANBERT or pix2pix-3D: discriminator losses, then generator losses.

Why separate from the loop: the paper's objective (20 NSP + 1 MLM + 20 L1, BERT as the
discriminator through next-sentence prediction) is the part that must be faithful and testable.
NSP labels follow BERT: 0 = "IsNext" = real PET, 1 = generated PET. Every sample contributes one
real and one generated sequence, so the discriminator sees them exactly 50/50.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.models import summarize as S

REAL, FAKE = 0, 1


@dataclass
class LossWeights:
    nsp: float = 20.0
    mlm: float = 1.0
    l1: float = 20.0
    cnn: float = 1.0  # GANBERT + CNN-D: weight of the PatchGAN term
    mri_mask: float = 0.05
    pet_mask: float = 0.25


def _sequences(mr: torch.Tensor, bottleneck: torch.Tensor, real: torch.Tensor,
               fake: torch.Tensor, soft: bool, end: str
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real and generated token sequences, segments, and the MLM targets (real ids)."""
    q = S.soft_quantize if soft else (lambda v: S.quantize(v).float())
    mri = q(S.combine_bottleneck(S.summarize(mr), bottleneck))
    real_tok = S.quantize(S.summarize(real)).float()
    fake_tok = q(S.summarize(fake))
    real_seq, seg = S.build_sequence(mri.detach().round(), real_tok, end)
    fake_seq, _ = S.build_sequence(mri, fake_tok, end)
    return real_seq, fake_seq, seg, real_seq.round().long()


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits.float(),
                                                                              target))


def ganbert_d_loss(bert: nn.Module, mr, real, fake, bottleneck, w: LossWeights,
                   gen: torch.Generator | None = None, end: str = "sep") -> dict[str, torch.Tensor]:
    """BERT loss on detached generator outputs: 20 NSP (real vs generated) + 1 MLM."""
    real_seq, fake_seq, seg, target = _sequences(mr, bottleneck.detach(), real, fake.detach(),
                                                 False, end)
    values = torch.cat([real_seq, fake_seq])
    masked, labels = S.mask_tokens(values, torch.cat([target, target]), w.mri_mask,
                                   w.pet_mask, gen)
    b = real.shape[0]
    nsp_target = torch.tensor([REAL] * b + [FAKE] * b, device=mr.device)
    out = bert(masked, torch.cat([seg, seg]), labels)
    nsp = F.cross_entropy(out["nsp_logits"].float(), nsp_target)
    acc = (out["nsp_logits"].argmax(1) == nsp_target).float().mean()
    return {"loss": w.nsp * nsp + w.mlm * out["mlm_loss"], "d_nsp": nsp,
            "d_mlm": out["mlm_loss"], "d_nsp_acc": acc}


def ganbert_g_loss(bert: nn.Module, mr, real, fake, bottleneck, w: LossWeights,
                   gen: torch.Generator | None = None, end: str = "sep",
                   cnn: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Generator loss: 20 NSP (fool BERT: "real") + 1 MLM (real ids from generated) + 20 L1."""
    _, fake_seq, seg, target = _sequences(mr, bottleneck, real, fake, True, end)
    masked, labels = S.mask_tokens(fake_seq, target, w.mri_mask, w.pet_mask, gen)
    out = bert(masked, seg, labels)
    nsp = F.cross_entropy(out["nsp_logits"].float(),
                          torch.full((real.shape[0],), REAL, device=mr.device))
    l1 = F.l1_loss(fake.float(), real.float())
    loss = w.nsp * nsp + w.mlm * out["mlm_loss"] + w.l1 * l1
    parts = {"g_nsp": nsp, "g_mlm": out["mlm_loss"], "l1": l1}
    if cnn is not None:
        adv = _bce(cnn(mr, fake), 1.0)
        loss = loss + w.cnn * adv
        parts["g_cnn"] = adv
    return {"loss": loss, **parts}


def patch_d_loss(cnn: nn.Module, mr, real, fake) -> dict[str, torch.Tensor]:
    """PatchGAN-3D: 0.5 (BCE(real, 1) + BCE(generated, 0))."""
    loss = 0.5 * (_bce(cnn(mr, real), 1.0) + _bce(cnn(mr, fake.detach()), 0.0))
    return {"loss": loss, "d_cnn": loss}


def pix2pix_g_loss(cnn: nn.Module, mr, real, fake, l1_weight: float = 100.0
                   ) -> dict[str, torch.Tensor]:
    """pix2pix: BCE(D(generated), 1) + 100 L1."""
    adv = _bce(cnn(mr, fake), 1.0)
    l1 = F.l1_loss(fake.float(), real.float())
    return {"loss": adv + l1_weight * l1, "g_cnn": adv, "l1": l1}
