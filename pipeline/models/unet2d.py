"""A small 2.5-D U-Net: adjacent slices as channels in, one SUV slice out.

The demonstration model's network: cheap enough to train on a CPU in minutes. The faithful
architectures of the seed papers live in their own modules.
"""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet2D(nn.Module):
    """U-Net with `depth` poolings; output is non-negative (softplus) in units of `output_scale`."""

    def __init__(self, in_channels: int = 3, base: int = 16, depth: int = 3) -> None:
        super().__init__()
        self.depth = depth
        chans = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = in_channels
        for c in chans:
            self.down.append(_block(cin, c))
            cin = c
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.upconv = nn.ModuleList()
        for i in range(depth, 0, -1):
            self.upconv.append(nn.ConvTranspose2d(chans[i], chans[i - 1], 2, stride=2))
            self.up.append(_block(chans[i - 1] * 2, chans[i - 1]))
        self.head = nn.Conv2d(chans[0], 1, 1)

    @property
    def multiple(self) -> int:
        """Height and width must be multiples of this."""
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < self.depth:
                skips.append(x)
                x = self.pool(x)
        for upconv, block in zip(self.upconv, self.up, strict=True):
            x = upconv(x)
            x = block(torch.cat([x, skips.pop()], dim=1))
        return nn.functional.softplus(self.head(x))
