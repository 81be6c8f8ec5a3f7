"""pix2pix as published (junyanz/pytorch-CycleGAN-and-pix2pix, models/networks.py).

Why: the seed paper's cGAN is pix2pix unchanged - a U-Net-256 generator and a 70x70 PatchGAN.
The blocks are written out as flat lists instead of the recursive `UnetSkipConnectionBlock`, so
tests can count them, but every layer, order, bias and init rule follows that file:

- down block i: LeakyReLU(0.2) -> Conv 4x4 s2 p1 -> norm (outermost: conv only; innermost: no norm)
- up block i:   ReLU -> ConvTranspose 4x4 s2 p1 -> norm [-> Dropout(0.5)]
  (outermost: ReLU -> ConvTranspose (with bias) -> Tanh), skips concatenate channels
- dropout in the `num_downs - 5` intermediate ngf*8 blocks, i.e. the 3 ngf*8 up blocks right
  outside the innermost one for unet_256 (the innermost block itself has none, as in the code)
- conv bias only with InstanceNorm; init N(0, 0.02), norm weight N(1, 0.02), biases 0.

Output: tanh in [-1, 1]. The product maps it to SUV as SUV = (y + 1) / 2 * suv_max (suv_max 20,
the paper's clip range); `build_pix2pix_unet` returns a generator whose forward already gives
(y + 1) / 2, so a package with `output.scale = 20` yields SUV through `ModelPackage.predict`.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from pipeline.models.windows import CT_INPUT_WINDOW_HU, InputWindows

log = logging.getLogger(__name__)


def norm_layer(kind: str, channels: int) -> nn.Module:
    """'batch' (BatchNorm2d, affine) or 'instance' (InstanceNorm2d, no affine, no running stats)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    raise ValueError(f"unknown norm {kind!r}; known: batch, instance")


def init_weights(net: nn.Module, gain: float = 0.02) -> None:
    """pix2pix 'normal' init: conv weights N(0, gain), BatchNorm weights N(1, gain), biases 0."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


class UnetGenerator(nn.Module):
    """U-Net generator; `downs[0]` is outermost, `ups[0]` innermost (data order in forward).
    `extra_windows`: narrower CT windows fed beside the input as channels (windows.py)."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, num_downs: int = 8,
                 ngf: int = 64, norm: str = "batch", use_dropout: bool = True,
                 unit_output: bool = False, extra_windows: list[list[float]] | None = None,
                 input_window: tuple[float, float] = CT_INPUT_WINDOW_HU) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError("num_downs must be >= 5 (ngf, 2ngf, 4ngf, 8ngf, innermost 8ngf)")
        self.in_channels = in_channels
        self.num_downs = num_downs
        self.unit_output = unit_output
        self.windows = InputWindows(input_window, extra_windows or [])
        bias = norm == "instance"
        # (outer_nc, inner_nc) per level, outermost first; level 0's outer is the image.
        inner = [ngf, ngf * 2, ngf * 4] + [ngf * 8] * (num_downs - 3)
        outer = [in_channels * self.windows.factor] + inner[:-1]
        self.downs = nn.ModuleList()
        for i in range(num_downs):
            conv = nn.Conv2d(outer[i], inner[i], 4, 2, 1, bias=bias)
            if i == 0:
                self.downs.append(nn.Sequential(conv))
            elif i == num_downs - 1:
                self.downs.append(nn.Sequential(nn.LeakyReLU(0.2, True), conv))
            else:
                self.downs.append(nn.Sequential(nn.LeakyReLU(0.2, True), conv,
                                                norm_layer(norm, inner[i])))
        self.ups = nn.ModuleList()
        for i in reversed(range(num_downs)):
            innermost, outermost = i == num_downs - 1, i == 0
            cin = inner[i] if innermost else inner[i] * 2
            if outermost:
                layers: list[nn.Module] = [nn.ReLU(True),
                                           nn.ConvTranspose2d(cin, out_channels, 4, 2, 1),
                                           nn.Tanh()]
            else:
                layers = [nn.ReLU(True), nn.ConvTranspose2d(cin, outer[i], 4, 2, 1, bias=bias),
                          norm_layer(norm, outer[i])]
                if use_dropout and 4 <= i < num_downs - 1:  # the ngf*8 intermediate blocks
                    layers.append(nn.Dropout(0.5))
            self.ups.append(nn.Sequential(*layers))
        init_weights(self)

    @property
    def multiple(self) -> int:
        """Height and width must be multiples of this (each down halves)."""
        return 2**self.num_downs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        x = self.windows(x)
        for down in self.downs:
            x = down(x)
            skips.append(x)
        skips.pop()  # the innermost output feeds the first up block directly
        for k, up in enumerate(self.ups):
            x = up(x if k == 0 else torch.cat([skips.pop(), x], 1))
        return (x + 1.0) * 0.5 if self.unit_output else x


class NLayerDiscriminator(nn.Module):
    """PatchGAN: C64 (no norm) - C128 - C256 (stride 2) - C512 (stride 1) - 1 logit map; 4x4 p1.

    With n_layers=3 each output logit sees a 70x70 patch of concat(A, B).
    """

    def __init__(self, in_channels: int = 2, ndf: int = 64, n_layers: int = 3,
                 norm: str = "batch") -> None:
        super().__init__()
        bias = norm == "instance"
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=bias),
                       norm_layer(norm, ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=bias),
                   norm_layer(norm, ndf * mult), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.model = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def receptive_field(net: nn.Module) -> int:
    """Receptive field (pixels) of a plain stack of convs, e.g. 70 for the default PatchGAN."""
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    rf = 1
    for m in reversed(convs):
        rf = (rf - 1) * m.stride[0] + m.kernel_size[0]
    return rf


def build_pix2pix_unet(params: dict | None = None, **kwargs: object) -> UnetGenerator:
    """Manifest builder for the generator; output (tanh + 1) / 2, times `output.scale` = SUV."""
    merged = {**(params or {}), **kwargs}
    merged.setdefault("unit_output", True)
    return UnetGenerator(**merged)  # type: ignore[arg-type]
