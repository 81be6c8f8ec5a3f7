"""The generator starts at the mean normalized target (tanhshrink is flat at 0), and Table 1's
Markdown names every compared method."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.models.unet3d import UNet3D
from training.ganbert.table import VARIANTS, markdown
from training.ganbert.trainer import init_output_bias, inverse_activation


@pytest.mark.parametrize("activation", ["tanhshrink", "tanh", "none"])
def test_inverse_activation(activation):
    x = inverse_activation(-0.6, activation)
    act = {"tanhshrink": lambda v: v - np.tanh(v), "tanh": np.tanh, "none": lambda v: v}
    assert act[activation](x) == pytest.approx(-0.6, abs=1e-6)


class _Pairs:
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i):
        return torch.zeros(1, 8, 8, 8), torch.stack([torch.full((8, 8, 8), -0.7),
                                                     torch.full((8, 8, 8), -0.5)])


def test_init_output_bias_puts_untrained_output_at_mean_target():
    torch.manual_seed(0)
    g = UNet3D(1, 2, base=2, depth=1)
    torch.nn.init.zeros_(g.head.weight)
    init_output_bias(g, _Pairs())
    y = g(torch.randn(1, 1, 8, 8, 8))
    assert y[0, 0].mean().item() == pytest.approx(-0.7, abs=1e-4)
    assert y[0, 1].mean().item() == pytest.approx(-0.5, abs=1e-4)


def test_table_markdown_lists_the_four_variants():
    rows = [{"method": label, "psnr": 50.0, "ssim": 0.5, "rmse": 1.0, "seconds": 1.0}
            for label, _, _ in VARIANTS]
    text = markdown({"steps": 1, "tiny": True, "lr": 1e-3, "data": "x", "rows": rows})
    assert all(label in text for label, _, _ in VARIANTS) and "57.58" in text
