"""Extra CT display windows computed inside a network, beside its normalized input.

Why: the CT reaches a network normalized over one wide window (-160..240 HU) so that fat,
bone and lung stay distinct; a liver lesion a few HU from the liver then differs by about 1% of
that range, far below the air/fat/bone edges that dominate the first layer. Radiologists read
the liver in a narrow window (about 0..120 HU) for exactly this reason, and CT networks are
commonly fed several windows as channels. A narrow window inside the wide one is an exact
function of the wide-window input, so it is computed in the network: packages, preprocessing
and the training data stay the same, and the manifest's `extra_windows` says what the network
sees.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

CT_INPUT_WINDOW_HU = (-160.0, 240.0)  # the paper's CT window, what the CT networks' input spans


class InputWindows(nn.Module):
    """x normalized to [-1, 1] over `base` HU -> [x, window_1(x), ...] along channels.

    Each extra window (low, high) HU must lie inside `base` (the input holds nothing outside
    it); its channels are clip(HU, low, high) mapped to [-1, 1]. No parameters, so a network
    without extra windows keeps exactly its former weights."""

    def __init__(self, base: Sequence[float], extra: Sequence[Sequence[float]]) -> None:
        super().__init__()
        self.base = (float(base[0]), float(base[1]))
        self.extra = [(float(lo), float(hi)) for lo, hi in extra]
        for lo, hi in self.extra:
            if not self.base[0] <= lo < hi <= self.base[1]:
                raise ValueError(f"CT window {lo:g}..{hi:g} HU is not inside the input's "
                                 f"{self.base[0]:g}..{self.base[1]:g} HU")

    @property
    def factor(self) -> int:
        """Channels out per channel in."""
        return 1 + len(self.extra)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.extra:
            return x
        low, high = self.base
        hu = (x + 1.0) * 0.5 * (high - low) + low
        views = [x] + [(hu.clamp(lo, hi) - lo) / (hi - lo) * 2.0 - 1.0 for lo, hi in self.extra]
        return torch.cat(views, dim=1)
