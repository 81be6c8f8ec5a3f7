"""FCN-4s and pix2pix networks of seed paper 000: shapes, structure, init, VGG loading."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from pipeline.models.fcn import FCN4s, build_fcn4s, load_vgg16_weights
from pipeline.models.pix2pix import (
    NLayerDiscriminator,
    UnetGenerator,
    build_pix2pix_unet,
    receptive_field,
)

TINY_FCN = {"width": 1 / 16, "fc_channels": 16}


@pytest.mark.parametrize("size", [(32, 32), (64, 96), (50, 70)])
def test_fcn_output_is_input_size(size):
    net = build_fcn4s(TINY_FCN).eval()
    assert net(torch.zeros(2, 1, *size)).shape == (2, 1, *size)


def test_fcn_has_pool2_pool3_pool4_skips_and_4x_final():
    net = FCN4s(**TINY_FCN)
    for name in ("score_pool2", "score_pool3", "score_pool4", "score_fr"):
        assert isinstance(getattr(net, name), nn.Conv2d)
        assert getattr(net, name).kernel_size == (1, 1)
    assert net.score_pool2.in_channels == 8 and net.score_pool3.in_channels == 16
    assert net.fc6.kernel_size == (7, 7) and net.fc7.kernel_size == (1, 1)
    assert net.upscore4.stride == (4, 4) and net.upscore2.stride == (2, 2)
    # bilinear init: a constant map stays constant in the interior
    up = net.upscore_pool3(torch.ones(1, 1, 6, 6))
    assert torch.allclose(up[..., 2:-2, 2:-2], torch.ones(1), atol=1e-6)


def test_extra_ct_windows_are_exact_narrow_windows_of_the_input():
    from pipeline.models.windows import InputWindows

    hu = torch.tensor([-160.0, -20.0, 0.0, 50.0, 60.0, 120.0, 240.0]).view(1, 1, 1, 7)
    x = (hu + 160.0) / 400.0 * 2.0 - 1.0  # the package's -160..240 HU normalization
    out = InputWindows((-160, 240), [(0, 120)])(x)
    assert out.shape == (1, 2, 1, 7)
    torch.testing.assert_close(out[:, :1], x)
    expected = torch.tensor([-1.0, -1.0, -1.0, -1 / 6, 0.0, 1.0, 1.0]).view(1, 1, 1, 7)
    torch.testing.assert_close(out[:, 1:], expected)  # 10 HU apart: 1/6 of the range, not 1/20
    with pytest.raises(ValueError, match="not inside"):
        InputWindows((-160, 240), [(0, 300)])
    net = build_fcn4s({**TINY_FCN, "in_channels": 3, "extra_windows": [[0, 120], [40, 80]]})
    assert net.features[0].in_channels == 9  # 3 slices x 3 windows
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    gen = build_pix2pix_unet({"in_channels": 3, "num_downs": 5, "ngf": 4,
                              "extra_windows": [[0, 120]]})
    assert gen.downs[0][0].in_channels == 6
    assert gen(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)


def test_fcn_learns_trivial_mapping():
    torch.manual_seed(0)
    net = FCN4s(**TINY_FCN, dropout=0.0)
    coarse = torch.rand(4, 1, 4, 4) * 2 - 1  # smooth input: the head predicts at stride 4
    x = nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear")
    y = (x + 1) / 2
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    losses = []
    for _ in range(10):
        loss = ((net(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.75 * losses[0]


def test_fcn_batch_norm_variant_taps_vgg16_bn_pools():
    plain, bn = FCN4s(**TINY_FCN), FCN4s(**TINY_FCN, batch_norm=True)
    assert plain.taps == {9: "pool2", 16: "pool3", 23: "pool4", 30: "pool5"}  # vgg16
    assert bn.taps == {13: "pool2", 23: "pool3", 33: "pool4", 43: "pool5"}  # vgg16_bn
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.features) == 13
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.features)
    assert bn.eval()(torch.zeros(2, 1, 50, 70)).shape == (2, 1, 50, 70)


def test_vgg16_weights_load_by_torchvision_names(tmp_path):
    net = FCN4s(in_channels=1, width=1 / 16, fc_channels=16)
    state = {}
    for key, value in net.features.state_dict().items():
        shape = list(value.shape)
        if key == "0.weight":
            shape[1] = 3  # RGB like torchvision
        state[f"features.{key}"] = torch.randn(shape)
    state["classifier.0.weight"] = torch.randn(16, 32 * 7 * 7)
    state["classifier.0.bias"] = torch.randn(16)
    state["classifier.3.weight"] = torch.randn(16, 16)
    state["classifier.3.bias"] = torch.randn(16)
    state["classifier.6.weight"] = torch.randn(1000, 16)  # ImageNet classifier: discarded
    save_file(state, str(tmp_path / "vgg16.safetensors"))
    loaded = load_vgg16_weights(net, tmp_path / "vgg16.safetensors")
    assert "fc6.weight" in loaded and "fc7.weight" in loaded and "features.28.weight" in loaded
    assert torch.equal(net.features[28].weight, state["features.28.weight"])
    assert torch.allclose(net.features[0].weight, state["features.0.weight"].sum(1, keepdim=True))
    assert torch.equal(net.fc6.weight, state["classifier.0.weight"].reshape(16, 32, 7, 7))
    assert torch.equal(net.fc7.weight[:, :, 0, 0], state["classifier.3.weight"])
    state["features.2.weight"] = torch.randn(5, 4, 3, 3)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="features.2.weight"):
        load_vgg16_weights(net, tmp_path / "bad.safetensors")


def _unet(**kw) -> UnetGenerator:
    return UnetGenerator(in_channels=1, out_channels=1, num_downs=8, ngf=4, **kw)


def test_unet256_structure():
    g = _unet()
    assert len(g.downs) == 8 and len(g.ups) == 8 and g.multiple == 256
    downs = [next(m for m in d if isinstance(m, nn.Conv2d)) for d in g.downs]
    assert [c.out_channels for c in downs] == [4, 8, 16, 32, 32, 32, 32, 32]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) and c.padding == (1, 1)
               for c in downs)
    assert not any(isinstance(m, (nn.LeakyReLU, nn.BatchNorm2d)) for m in g.downs[0])
    assert not any(isinstance(m, nn.BatchNorm2d) for m in g.downs[-1])
    assert all(isinstance(d[0], nn.LeakyReLU) and d[0].negative_slope == 0.2 for d in g.downs[1:])
    assert all(isinstance(d[2], nn.BatchNorm2d) for d in g.downs[1:-1])
    dropout = [i for i, u in enumerate(g.ups) if any(isinstance(m, nn.Dropout) for m in u)]
    assert dropout == [1, 2, 3]  # the 3 ngf*8 blocks next to the innermost
    assert all(g.ups[i][1].out_channels == 32 for i in dropout)
    assert all(m.p == 0.5 for m in g.modules() if isinstance(m, nn.Dropout))
    assert isinstance(g.ups[-1][-1], nn.Tanh) and isinstance(g.ups[0][0], nn.ReLU)
    # bias only with InstanceNorm (the outermost ConvTranspose keeps its default bias)
    convs = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert [m.bias is not None for m in convs].count(True) == 1
    assert g.ups[-1][1].bias is not None
    gi = _unet(norm="instance")
    assert all(m.bias is not None for m in gi.modules() if isinstance(m, nn.Conv2d))
    out = g.eval()(torch.zeros(1, 1, 256, 256))
    assert out.shape == (1, 1, 256, 256) and out.abs().max() <= 1


def test_patchgan_receptive_field_and_output():
    d = NLayerDiscriminator(in_channels=2, ndf=4)
    assert receptive_field(d) == 70
    assert d(torch.zeros(1, 2, 256, 256)).shape == (1, 1, 30, 30)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    assert [c.out_channels for c in convs] == [4, 8, 16, 32, 1]
    assert not isinstance(d.model[1], nn.BatchNorm2d)


def test_pix2pix_init_statistics():
    torch.manual_seed(0)
    g = UnetGenerator(num_downs=8, ngf=16)
    w = torch.cat([m.weight.detach().flatten() for m in g.modules()
                   if isinstance(m, nn.Conv2d)])
    assert abs(float(w.mean())) < 2e-3 and abs(float(w.std()) - 0.02) < 2e-3
    bn = torch.cat([m.weight.detach() for m in g.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(float(bn.mean()) - 1.0) < 5e-3 and abs(float(bn.std()) - 0.02) < 5e-3
    assert all(float(m.bias.detach().abs().max()) == 0 for m in g.modules()
               if isinstance(m, nn.BatchNorm2d))


def test_builder_maps_tanh_to_unit_range():
    g = build_pix2pix_unet({"num_downs": 5, "ngf": 4}).eval()
    raw = UnetGenerator(num_downs=5, ngf=4).eval()
    raw.load_state_dict(g.state_dict())
    x = torch.randn(1, 1, 32, 32)
    assert torch.allclose(g(x), (raw(x) + 1) / 2)
