"""BERT in plain torch, used as GANBERT's discriminator (seed paper 003, section 4.2).

Why: the paper trains BERT-base (12 layers, 768 hidden, 12 heads) on quantized MRI/PET
summaries with two heads: next-sentence prediction acts as the GAN discriminator (label 0 =
real PET, "IsNext"; 1 = generated) and masked-token prediction pushes the generator towards the
real intensity distribution. Written here without `transformers` so no extra dependency ships.
Inputs are float token positions (see `summarize`): an integer is a plain embedding lookup, a
fraction interpolates two neighbours so gradients reach the generator.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from pipeline.models.summarize import IGNORE, SEQ_LEN, VOCAB_SIZE

log = logging.getLogger(__name__)


@dataclass
class BertConfig:
    """Sizes of the discriminator; `preset("base")` is the paper's, `preset("tiny")` for tests."""

    vocab_size: int = VOCAB_SIZE
    hidden: int = 768
    layers: int = 12
    heads: int = 12
    intermediate: int = 3072
    max_positions: int = SEQ_LEN
    type_vocab: int = 2
    dropout: float = 0.1
    ln_eps: float = 1e-12
    checkpointing: bool = False

    @classmethod
    def preset(cls, name: str, **overrides) -> BertConfig:
        sizes = {"base": {}, "small": {"hidden": 256, "layers": 4, "heads": 4,
                                       "intermediate": 1024},
                 "tiny": {"hidden": 32, "layers": 2, "heads": 2, "intermediate": 64}}
        if name not in sizes:
            raise ValueError(f"unknown BERT preset {name!r}; known: {sorted(sizes)}")
        return cls(**{**sizes[name], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


class Embeddings(nn.Module):
    """Token (interpolated for fractional positions) + position + segment, LayerNorm, dropout."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.word = nn.Embedding(cfg.vocab_size, cfg.hidden)
        self.position = nn.Embedding(cfg.max_positions, cfg.hidden)
        self.segment = nn.Embedding(cfg.type_vocab, cfg.hidden)
        self.norm = nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, values: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        v = values.float().clamp(0, self.word.num_embeddings - 1)
        lo = v.detach().floor().long().clamp(max=self.word.num_embeddings - 2)
        frac = (v - lo.float()).unsqueeze(-1)
        tok = self.word(lo) * (1 - frac) + self.word(lo + 1) * frac
        pos = self.position(torch.arange(values.shape[1], device=values.device))[None]
        return self.drop(self.norm(tok + pos + self.segment(segments)))


class EncoderLayer(nn.Module):
    """Post-LN transformer layer as in BERT: attention, add & norm, GELU MLP, add & norm."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        if cfg.hidden % cfg.heads:
            raise ValueError(f"hidden {cfg.hidden} not divisible by heads {cfg.heads}")
        self.heads, self.p = cfg.heads, cfg.dropout
        self.qkv = nn.Linear(cfg.hidden, 3 * cfg.hidden)
        self.out = nn.Linear(cfg.hidden, cfg.hidden)
        self.norm1 = nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps)
        self.ff = nn.Sequential(nn.Linear(cfg.hidden, cfg.intermediate), nn.GELU(),
                                nn.Linear(cfg.intermediate, cfg.hidden))
        self.norm2 = nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, h = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, dropout_p=self.p if self.training else 0.0)
        x = self.norm1(x + self.drop(self.out(att.transpose(1, 2).reshape(b, n, h))))
        return self.norm2(x + self.drop(self.ff(x)))


class BertDiscriminator(nn.Module):
    """BERT encoder with NSP (real vs generated) and MLM (token id) heads; MLM tied to embeddings."""

    def __init__(self, cfg: BertConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or BertConfig()
        self.embeddings = Embeddings(cfg)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.layers))
        self.pooler = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.Tanh())
        self.nsp = nn.Linear(cfg.hidden, 2)
        self.mlm_transform = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(),
                                           nn.LayerNorm(cfg.hidden, eps=cfg.ln_eps))
        self.mlm_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def encode(self, values: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(values, segments)
        for layer in self.layers:
            if self.cfg.checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(layer, x, use_reentrant=False)
            else:
                x = layer(x)
        return x

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.mlm_transform(hidden) @ self.embeddings.word.weight.T + self.mlm_bias

    def forward(self, values: torch.Tensor, segments: torch.Tensor,
                mlm_labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """NSP logits (B, 2); with `mlm_labels`: MLM logits at labelled positions and the loss."""
        hidden = self.encode(values, segments)
        out = {"nsp_logits": self.nsp(self.pooler(hidden[:, 0]))}
        if mlm_labels is not None:
            pick = mlm_labels != IGNORE
            logits = self.mlm_logits(hidden[pick])
            out["mlm_logits"] = logits
            out["mlm_loss"] = (F.cross_entropy(logits.float(), mlm_labels[pick])
                               if logits.shape[0] else hidden.sum() * 0.0)
        return out
