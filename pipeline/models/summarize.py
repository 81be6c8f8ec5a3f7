"""GANBERT's "text-like" summaries of volumes (seed paper 003, section 4.2).

Why: BERT reads integer tokens, so each volume is max-pooled to 512 values (the signed value of
largest magnitude in each sub-volume), multiplied by 1e3 and rounded into a 1..1e4 vocabulary:
negatives become |v| mod 500 and overflow (> 1e4) becomes v mod 500 + 500, like BERT's low
"unused" vocabulary. The sequence is [CLS] MRI(512) [SEP] PET(512) [SEP] = 1027 tokens.

Choices where the paper is silent (documented in the module API):
- Token ids are the quantized values themselves (1..10000); 0 is [PAD], then [CLS], [SEP],
  [MASK], so the vocabulary has 10004 entries. A value that rounds to 0 becomes token 1.
- Sequences are carried as float "token positions" (`soft` values): an exact integer is the
  ordinary token, a fraction interpolates two neighbouring embeddings. The hard ids are the
  rounded values. This is how the generator receives NSP/MLM gradients through the rounding.
- A summary of C channels (PET time-steps) pools each channel to 512/C values and concatenates.
- The generator bottleneck (many channels) is averaged over channels, summarized to 512 values
  the same way, added to the MRI summary and divided by 2 *before* quantization.
- The final separator is [SEP] (standard BERT); `end="cls"` gives the paper's figure's [CLS].
"""

from __future__ import annotations

import logging
import math

import torch
from torch.nn import functional as F

log = logging.getLogger(__name__)

SUMMARY_LEN = 512
SCALE = 1e3
MAX_VALUE = 10_000
WRAP = 500
PAD_ID, CLS_ID, SEP_ID, MASK_ID = 0, MAX_VALUE + 1, MAX_VALUE + 2, MAX_VALUE + 3
VOCAB_SIZE = MAX_VALUE + 4
SEQ_LEN = 1 + SUMMARY_LEN + 1 + SUMMARY_LEN + 1
IGNORE = -100


def pool_grid(n: int) -> tuple[int, int, int]:
    """Near-cubic (D, H, W) grid of powers of two with n cells (512 -> 8x8x8, 256 -> 4x8x8)."""
    e = round(math.log2(n))
    if 2**e != n:
        raise ValueError(f"summary cells per channel must be a power of two, got {n}")
    sizes = sorted(2 ** (e // 3 + (1 if i < e % 3 else 0)) for i in range(3))
    return sizes[0], sizes[1], sizes[2]


def abs_max_pool(x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """(B, C, D, H, W) -> (B, C, *grid): per cell the value of largest magnitude, sign kept."""
    pos = F.adaptive_max_pool3d(x, grid)
    neg = F.adaptive_max_pool3d(-x, grid)
    return torch.where(pos >= neg, pos, -neg)


def summarize(x: torch.Tensor, length: int = SUMMARY_LEN) -> torch.Tensor:
    """(B, C, D, H, W) volume -> (B, length) float summary (C must divide length)."""
    b, c = x.shape[:2]
    if length % c:
        raise ValueError(f"{c} channels do not divide a summary of {length}")
    return abs_max_pool(x.float(), pool_grid(length // c)).reshape(b, length)


def soft_quantize(v: torch.Tensor) -> torch.Tensor:
    """Float summary -> continuous token positions in [1, 1e4] (differentiable a.e.)."""
    q = v * SCALE
    q = torch.where(q < 0, torch.remainder(-q, WRAP), q)
    q = torch.where(q > MAX_VALUE, torch.remainder(q, WRAP) + WRAP, q)
    return q.clamp(1.0, float(MAX_VALUE))


def quantize(v: torch.Tensor) -> torch.Tensor:
    """Float summary -> integer token ids 1..1e4 with the paper's rules (rounding first)."""
    q = torch.round(v * SCALE).long()
    q = torch.where(q < 0, torch.remainder(-q, WRAP), q)
    q = torch.where(q > MAX_VALUE, torch.remainder(q, WRAP) + WRAP, q)
    return q.clamp(1, MAX_VALUE)


def combine_bottleneck(mri_summary: torch.Tensor, bottleneck: torch.Tensor) -> torch.Tensor:
    """(MRI summary + summarized channel-mean bottleneck) / 2, still continuous."""
    bn = summarize(bottleneck.float().mean(dim=1, keepdim=True), mri_summary.shape[1])
    return (mri_summary + bn) / 2


def build_sequence(mri_tokens: torch.Tensor, pet_tokens: torch.Tensor, end: str = "sep"
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] MRI [SEP] PET [SEP|CLS] as float token positions, plus segment ids (0 MRI, 1 PET)."""
    b, n_mri = mri_tokens.shape
    n_pet = pet_tokens.shape[1]
    dev = mri_tokens.device

    def tok(i: int) -> torch.Tensor:
        return torch.full((b, 1), float(i), device=dev)

    last = {"sep": SEP_ID, "cls": CLS_ID}[end]
    values = torch.cat([tok(CLS_ID), mri_tokens.float(), tok(SEP_ID), pet_tokens.float(),
                        tok(last)], dim=1)
    segments = torch.zeros(b, values.shape[1], dtype=torch.long, device=dev)
    segments[:, n_mri + 2:] = 1
    assert values.shape[1] == n_mri + n_pet + 3
    return values, segments


def mri_slice(n: int = SUMMARY_LEN) -> slice:
    return slice(1, 1 + n)


def pet_slice(n: int = SUMMARY_LEN) -> slice:
    return slice(2 + n, 2 + 2 * n)


def _choose(b: int, n: int, ratio: float, gen: torch.Generator | None) -> torch.Tensor:
    """(b, n) bool with exactly round(ratio * n) True per row (at least one when ratio > 0)."""
    k = max(1, round(ratio * n)) if ratio > 0 else 0
    ranks = torch.rand(b, n, generator=gen).argsort(dim=1).argsort(dim=1)
    return ranks < k


def mask_tokens(values: torch.Tensor, target_ids: torch.Tensor, mri_ratio: float = 0.05,
                pet_ratio: float = 0.25, gen: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace 5% of MRI and 25% of PET positions by [MASK]; labels = `target_ids` there.

    `target_ids` (B, L) holds what MLM must predict (for a generated sequence: the real PET
    tokens at PET positions), -100 elsewhere. Every chosen position becomes [MASK] (no 80/10/10).
    """
    b, length = values.shape
    n = (length - 3) // 2
    chosen = torch.zeros(b, length, dtype=torch.bool)
    chosen[:, mri_slice(n)] = _choose(b, n, mri_ratio, gen)
    chosen[:, pet_slice(n)] = _choose(b, n, pet_ratio, gen)
    chosen = chosen.to(values.device)
    masked = torch.where(chosen, torch.full_like(values, float(MASK_ID)), values)
    labels = torch.where(chosen, target_ids.long(), torch.full_like(target_ids.long(), IGNORE))
    return masked, labels
