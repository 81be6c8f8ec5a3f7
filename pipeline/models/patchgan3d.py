"""3D PatchGAN discriminator: the pix2pix-3D baseline and GANBERT's optional "CNN-D".

Why: the paper's Table 1 compares GANBERT with and without an extra CNN discriminator and
against 3D pix2pix; all of them judge (MR, PET) pairs patch by patch, conditioned on the MR.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchGAN3D(nn.Module):
    """Conditional discriminator: cat(MR, PET time-steps) -> per-patch real/fake logits."""

    def __init__(self, in_channels: int = 3, base: int = 16, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv3d(in_channels, base, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        c = base
        for i in range(1, layers):
            nxt = base * min(2**i, 8)
            stride = 2 if i < layers - 1 else 1
            kernel = 4 if stride == 2 else 3  # odd kernel keeps the size at stride 1
            mods += [nn.Conv3d(c, nxt, kernel, stride, 1, bias=False),
                     nn.InstanceNorm3d(nxt, affine=True), nn.LeakyReLU(0.2, True)]
            c = nxt
        mods.append(nn.Conv3d(c, 1, 3, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, mr: torch.Tensor, pet: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([mr, pet], dim=1))
