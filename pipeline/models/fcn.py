"""FCN-4s on a VGG-16 backbone: the CT -> PET regression network of the seed paper (000).

Why this shape: the paper takes FCN-8s (Long et al.) - VGG-16 with its fully connected layers
turned into convolutions, a 1x1 scoring head and in-network upsampling - and adds one more skip
from pool2, so predictions are fused at strides 32, 16, 8 and 4 and the last upsample is x4.
`features` mirrors torchvision's `vgg16().features` index for index, so a user-provided VGG-16
file maps onto it by name (`load_vgg16_weights`). Padding is "same" everywhere (fc6 is 7x7 with
padding 3 instead of Caffe's pad-100 trick), so every stride-2 step halves exactly and the output
is the input size without crop offsets; inputs that are not multiples of 32 are edge-padded and
the output cropped back.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

from pipeline.models.windows import CT_INPUT_WINDOW_HU, InputWindows

log = logging.getLogger(__name__)

# VGG-16 configuration "D": channels per conv, "M" = 2x2 max pool.
VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                    512, 512, 512, "M", 512, 512, 512, "M")
# Indices in `features` (torchvision numbering) right after pool2, pool3, pool4 and pool5.
POOL_INDEX = {"pool2": 9, "pool3": 16, "pool4": 23, "pool5": 30}


def bilinear_kernel(channels: int, kernel: int) -> torch.Tensor:
    """ConvTranspose2d weight that performs bilinear upsampling per channel (FCN's init)."""
    factor = (kernel + 1) // 2
    center = factor - 1 if kernel % 2 == 1 else factor - 0.5
    og = torch.arange(kernel, dtype=torch.float32)
    filt1d = 1 - (og - center).abs() / factor
    filt = filt1d[:, None] * filt1d[None, :]
    weight = torch.zeros(channels, channels, kernel, kernel)
    for c in range(channels):
        weight[c, c] = filt
    return weight


def _upsample(channels: int, factor: int, learn: bool = True) -> nn.ConvTranspose2d:
    """x`factor` transposed conv (kernel 2f, stride f, padding f/2): exact size, bilinear init."""
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2,
                            bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, 2 * factor))
    up.weight.requires_grad_(learn)
    return up


def vgg16_features(in_channels: int = 3, width: float = 1.0,
                   batch_norm: bool = False) -> nn.Sequential:
    """VGG-16 conv blocks (3x3 pad 1 [+ BatchNorm] + ReLU, 2x2 max pool), numbered like
    torchvision's `vgg16().features` (or `vgg16_bn().features` with `batch_norm`)."""
    layers: list[nn.Module] = []
    cin = in_channels
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            cout = max(1, round(int(v) * width))
            layers.append(nn.Conv2d(cin, cout, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU(inplace=True))
            cin = cout
    return nn.Sequential(*layers)


def pool_indices(features: nn.Sequential) -> dict[int, str]:
    """features index -> "pool2".."pool5" (the taps of the skips), for either numbering."""
    pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
    return {i: f"pool{k + 1}" for k, i in enumerate(pools) if k >= 1}


class FCN4s(nn.Module):
    """FCN-4s: VGG-16, fc6/fc7 as 7x7 and 1x1 convs, 1x1 score head, skips pool4/pool3/pool2.

    `width` scales the VGG channels and `fc_channels` the fc6/fc7 width (4096 in the paper) so
    tests can build tiny networks. `batch_norm` uses VGG-16-BN's blocks (same layers, a
    BatchNorm after each conv): the paper starts from pretrained VGG-16 weights, and without
    them a plain 16-layer net trained from scratch learns too slowly for CPU-time training.
    `extra_windows`: narrower CT windows (HU pairs inside `input_window`, the HU range the
    input was normalized over) fed beside the input as more channels (windows.py).
    Output: `out_channels` linear maps (SUV regression) at the input size.
    """

    multiple = 32

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: float = 1.0,
                 fc_channels: int = 4096, dropout: float = 0.5,
                 learn_final_upsample: bool = False, batch_norm: bool = False,
                 extra_windows: list[list[float]] | None = None,
                 input_window: tuple[float, float] = CT_INPUT_WINDOW_HU) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.windows = InputWindows(input_window, extra_windows or [])
        self.features = vgg16_features(in_channels * self.windows.factor, width, batch_norm)
        self.taps = pool_indices(self.features)
        c = {n: max(1, round(v * width)) for n, v in (("pool2", 128), ("pool3", 256),
                                                      ("pool4", 512), ("pool5", 512))}
        self.fc6 = nn.Conv2d(c["pool5"], fc_channels, 7, padding=3)
        self.fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        self.drop = nn.Dropout2d(dropout)
        self.score_fr = nn.Conv2d(fc_channels, out_channels, 1)
        self.score_pool4 = nn.Conv2d(c["pool4"], out_channels, 1)
        self.score_pool3 = nn.Conv2d(c["pool3"], out_channels, 1)
        self.score_pool2 = nn.Conv2d(c["pool2"], out_channels, 1)
        self.upscore2 = _upsample(out_channels, 2)         # stride 32 -> 16
        self.upscore_pool4 = _upsample(out_channels, 2)    # 16 -> 8
        self.upscore_pool3 = _upsample(out_channels, 2)    # 8 -> 4
        self.upscore4 = _upsample(out_channels, 4, learn_final_upsample)  # 4 -> 1
        self._init_weights()

    def _init_weights(self) -> None:
        """He init for the backbone (training from scratch); score layers start at zero as in FCN."""
        for m in [*self.features, self.fc6, self.fc7]:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        for m in (self.score_fr, self.score_pool4, self.score_pool3, self.score_pool2):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        x = self.windows(x)
        taps: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                taps[self.taps[i]] = x
        y = self.drop(F.relu(self.fc6(taps["pool5"])))
        y = self.drop(F.relu(self.fc7(y)))
        y = self.upscore2(self.score_fr(y))
        y = self.upscore_pool4(y + _align(self.score_pool4(taps["pool4"]), y))
        y = self.upscore_pool3(y + _align(self.score_pool3(taps["pool3"]), y))
        y = self.upscore4(y + _align(self.score_pool2(taps["pool2"]), y))
        return y[..., :h, :w]


def _align(skip: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Centre-crop `skip` to `ref`'s size (a no-op with same padding; kept as FCN's crop layer)."""
    dh, dw = skip.shape[-2] - ref.shape[-2], skip.shape[-1] - ref.shape[-1]
    if dh == 0 and dw == 0:
        return skip
    return skip[..., dh // 2 : dh // 2 + ref.shape[-2], dw // 2 : dw // 2 + ref.shape[-1]]


def build_fcn4s(params: dict | None = None, **kwargs: object) -> FCN4s:
    """Manifest builder: `build_fcn4s({"width": 0.25})` or `build_fcn4s(**params)`."""
    return FCN4s(**{**(params or {}), **kwargs})  # type: ignore[arg-type]


def load_vgg16_weights(model: FCN4s, path: Path | str) -> list[str]:
    """Copy a torchvision-named VGG-16 state dict (safetensors, no pickle) into the backbone.

    `features.N.*` map one to one; `classifier.0/3` (Linear 25088->4096, 4096->4096) are reshaped
    into fc6 (7x7) and fc7 (1x1) when fc_channels is 4096. A first conv for 1 input channel gets
    the RGB kernels summed (a grey image is R=G=B); other channel counts get their mean repeated.
    Returns the target keys that were loaded; shape mismatches raise ValueError.
    """
    source = load_file(str(path))
    target = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for key, value in source.items():
        if key.startswith("features."):
            name = key
            k = model.features[0].in_channels
            if key == "features.0.weight" and value.shape[1] != k:
                value = value.sum(1, keepdim=True) if k == 1 else \
                    value.mean(1, keepdim=True).repeat(1, k, 1, 1) * (value.shape[1] / k)
        elif key.startswith("classifier.0.") and "fc6.weight" in target:
            name = "fc6." + key.split(".")[-1]
        elif key.startswith("classifier.3."):
            name = "fc7." + key.split(".")[-1]
        else:
            continue
        want = target[name].shape
        if name.endswith("weight") and value.dim() == 2:
            if value.numel() != want.numel():
                raise ValueError(f"{key}: {tuple(value.shape)} does not fit {name} {tuple(want)}")
            value = value.reshape(want)
        if value.shape != want:
            raise ValueError(f"{key}: {tuple(value.shape)} does not fit {name} {tuple(want)}")
        mapped[name] = value.to(target[name].dtype)
    if not any(k.startswith("features.") for k in mapped):
        raise ValueError(f"{path} holds no torchvision VGG-16 'features.N' weights")
    model.load_state_dict(mapped, strict=False)
    log.info("loaded %d VGG-16 tensors from %s", len(mapped), path)
    return sorted(mapped)
