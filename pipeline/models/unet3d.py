"""3D U-Net generator of GANBERT (seed paper 003): T1 MR in, PET time-steps out.

Why: the paper's generator maps a whole MR volume to an N-time-step PET volume with a
`tanhshrink` output (x - tanh x) instead of pix2pix's `tanh`, so values are not squashed into
[-1, 1] and the wide, zero-centred SUVR range can be reproduced. The bottleneck features are
exposed because the BERT discriminator adds them to the MRI summary.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

log = logging.getLogger(__name__)

ACTIVATIONS = ("tanhshrink", "tanh", "none")


def _block(cin: int, cout: int, norm: str) -> nn.Sequential:
    def _norm(c: int) -> nn.Module:
        if norm == "instance":
            return nn.InstanceNorm3d(c, affine=True)
        if norm == "batch":
            return nn.BatchNorm3d(c)
        return nn.Identity()

    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1, bias=norm == "none"), _norm(cout),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv3d(cout, cout, 3, padding=1, bias=norm == "none"), _norm(cout),
        nn.LeakyReLU(0.2, inplace=True),
    )


class UNet3D(nn.Module):
    """U-Net with `depth` poolings; channels `base * 2**level`; `out_channels` PET time-steps."""

    def __init__(self, in_channels: int = 1, out_channels: int = 2, base: int = 16,
                 depth: int = 4, activation: str = "tanhshrink", norm: str = "instance",
                 checkpointing: bool = False, tile: int | None = None) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if tile is not None and tile % 2**depth:
            raise ValueError(f"tile {tile} must be a multiple of {2**depth}")
        self.depth, self.activation, self.checkpointing = depth, activation, checkpointing
        # Inference window (None = whole volume): a network trained on random crops with
        # instance norm should see crop-sized windows at inference too (same norm statistics).
        self.tile = tile
        self.out_channels = out_channels
        chans = [base * 2**i for i in range(depth + 1)]
        self.bottleneck_channels = chans[-1]
        self.down = nn.ModuleList()
        cin = in_channels
        for c in chans:
            self.down.append(_block(cin, c, norm))
            cin = c
        self.pool = nn.MaxPool3d(2)
        self.upconv = nn.ModuleList()
        self.up = nn.ModuleList()
        for i in range(depth, 0, -1):
            self.upconv.append(nn.ConvTranspose3d(chans[i], chans[i - 1], 2, stride=2))
            self.up.append(_block(chans[i - 1] * 2, chans[i - 1], norm))
        self.head = nn.Conv3d(chans[0], out_channels, 1)

    @property
    def multiple(self) -> int:
        """Each spatial size must be a multiple of this."""
        return 2**self.depth

    def _run(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.checkpointing and self.training and x.requires_grad:
            return checkpoint(block, x, use_reentrant=False)
        return block(x)

    def forward(self, x: torch.Tensor, return_bottleneck: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B, in, D, H, W) -> (B, out_channels, D, H, W) [, bottleneck (B, C, D/m, H/m, W/m)]."""
        skips = []
        for i, block in enumerate(self.down):
            x = self._run(block, x)
            if i < self.depth:
                skips.append(x)
                x = self.pool(x)
        bottleneck = x
        for upconv, block in zip(self.upconv, self.up, strict=True):
            x = upconv(x)
            x = self._run(block, torch.cat([x, skips.pop()], dim=1))
        y = self.head(x)
        if self.activation == "tanhshrink":
            y = nn.functional.tanhshrink(y)
        elif self.activation == "tanh":
            y = torch.tanh(y)
        return (y, bottleneck) if return_bottleneck else y


def build_unet3d(params: dict) -> nn.Module:
    """Rebuild the generator from a manifest's `architecture.params` (for package loading)."""
    return UNet3D(**params)


def predict_mr_to_pet(network: nn.Module, mr: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Raw MR (z, y, x) on the model grid -> PET SUVR (T, z, y, x), paper normalization undone.

    MR is z-scored; the network's output is in PET units scaled by the MRI statistics
    (PET = y * std/10 + mean/10), so SUVR comes back without any PET-side statistics.
    """
    mr = mr.astype(np.float32)
    mean, std = float(mr.mean()), float(mr.std()) or 1.0
    x = (mr - mean) / std
    m = int(getattr(network, "multiple", 1))
    pads = [(-s) % m for s in x.shape]
    xp = np.pad(x, [(0, p) for p in pads], mode="edge")
    use_amp = device.startswith("cuda")
    with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, enabled=use_amp):
        t = torch.from_numpy(xp)[None, None].to(device)
        tile = getattr(network, "tile", None)
        y = (_tiled(network, t, tile) if tile else network(t))[0].float().cpu().numpy()
    y = y[:, : x.shape[0], : x.shape[1], : x.shape[2]]
    return (y * (std / 10.0) + mean / 10.0).astype(np.float32)


def _starts(size: int, tile: int) -> list[int]:
    """Window starts covering `size` with half-overlapping windows of `tile` (one if smaller)."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile + 1, tile // 2))
    return starts if starts[-1] == size - tile else [*starts, size - tile]


def _tiled(network: nn.Module, x: torch.Tensor, tile: int) -> torch.Tensor:
    """Overlapping `tile`^3 windows blended with a raised-sine weight (no seams)."""
    shape = x.shape[2:]
    sizes = [min(tile, s) for s in shape]
    ramps = [0.05 + torch.sin(torch.pi * (torch.arange(n, device=x.device) + 0.5) / n)
             for n in sizes]
    weight = ramps[0][:, None, None] * ramps[1][None, :, None] * ramps[2][None, None, :]
    acc = norm = None
    for z in _starts(shape[0], tile):
        for yy in _starts(shape[1], tile):
            for xx in _starts(shape[2], tile):
                box = (slice(z, z + sizes[0]), slice(yy, yy + sizes[1]), slice(xx, xx + sizes[2]))
                out = network(x[(slice(None), slice(None), *box)]).float()
                if acc is None:
                    acc = torch.zeros((*out.shape[:2], *shape), device=x.device)
                    norm = torch.zeros(shape, device=x.device)
                acc[(slice(None), slice(None), *box)] += out * weight
                norm[box] += weight
    return acc / norm
