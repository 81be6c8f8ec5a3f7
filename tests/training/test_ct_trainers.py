"""CT -> PET trainers: losses by hand, one tiny epoch of each network, packages that load."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from pipeline.models.fcn import build_fcn4s
from pipeline.models.package import ModelPackage
from pipeline.models.pix2pix import build_pix2pix_unet
from training.ct_trainers import TrainConfig, train_fcn, train_pix2pix
from training.ct_trainers.checkpoint import load_checkpoint, save_checkpoint
from training.ct_trainers.data import _worker_generator
from training.losses import discriminator_loss, generator_loss, pixel_loss, suv_weights
from training.pairs import load_pairs
from training.phantoms.abdomen import make_case

SPACING = (8.0, 8.0, 8.0)


def test_weighted_loss_equals_hand_computation():
    pred = torch.tensor([[0.0, 1.0], [2.0, 4.0]])
    target = torch.tensor([[1.0, 1.0], [0.0, 3.0]])
    w = suv_weights(target)
    assert float(pixel_loss(pred, target, w)) == pytest.approx((1 * 1 + 0 + 0 * 4 + 3 * 1) / 4)
    assert float(pixel_loss(pred, target, w, "l1")) == pytest.approx((1 + 0 + 0 + 3) / 4)
    assert float(pixel_loss(pred, target)) == pytest.approx((1 + 0 + 4 + 1) / 4)
    assert float(pixel_loss(pred, target, suv_weights(target, 0.5))) == pytest.approx(
        (1 + 0 + 0.5 * 4 + 3) / 4)


def test_gan_losses():
    zero = torch.zeros(1, 1, 3, 3)
    assert float(discriminator_loss(zero, zero)) == pytest.approx(np.log(2))
    total, parts = generator_loss(zero, torch.ones(1, 1, 3, 3), torch.zeros(1, 1, 3, 3))
    assert float(total) == pytest.approx(np.log(2) + 100.0)
    assert parts["g_pixel"] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct-pairs")
    make_case(root / "a", 31, ct_shape=(8, 48, 48), n_lesions=1, kinds=("hypodense",),
              diameter_range_mm=(24, 28))
    make_case(root / "b", 32, ct_shape=(8, 48, 48), n_lesions=0)
    return root


def _cfg(data, tmp_path, **kw) -> TrainConfig:
    return TrainConfig(data=data, out=tmp_path / "pkg", work_dir=tmp_path / "work", epochs=1,
                       spacing_mm=SPACING, batch_size=2, progress=False, threads=1, **kw)


def _load(folder, builder):
    manifest = json.loads((folder / "manifest.json").read_text())
    net = builder(manifest["architecture"]["params"])
    net.load_state_dict(load_file(str(folder / "model.safetensors")))
    return ModelPackage(folder, manifest, net.eval())


def _check_package(folder, builder, arch, data):
    pkg = _load(folder, builder)
    assert pkg.manifest["architecture"]["name"] == arch
    assert pkg.manifest["input"]["normalization"]["kind"] == "ct_window"
    assert pkg.units == "SUVbw"
    assert pkg.manifest["output"]["scale"] == 20.0
    assert "val_mae" in pkg.manifest["metrics"]
    assert (folder / "curves.png").is_file()
    pair = load_pairs(data, SPACING, folder.parent / "work" / "pairs-cache")[0]
    out = pkg.predict(pair.ct)
    assert out.shape == pair.ct.shape and np.isfinite(out).all()
    return pkg, out


def test_train_fcn_one_epoch_and_resume(data, tmp_path):
    cfg = _cfg(data, tmp_path, net={"width": 1 / 16, "fc_channels": 8})
    train_fcn(cfg)
    _check_package(tmp_path / "pkg", build_fcn4s, "fcn4s", data)
    assert (tmp_path / "work" / "checkpoint" / "checkpoint.safetensors").is_file()
    cfg.epochs = 2
    train_fcn(cfg)  # resumes at epoch 1, trains one more
    history = json.loads((tmp_path / "pkg" / "manifest.json").read_text())["training"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]


def test_train_pix2pix_one_epoch(data, tmp_path):
    cfg = _cfg(data, tmp_path, net={"num_downs": 5, "ngf": 4, "ndf": 4})
    train_pix2pix(cfg)
    _, out = _check_package(tmp_path / "pkg", build_pix2pix_unet, "pix2pix_unet", data)
    assert out.min() >= 0.0 and out.max() <= 20.0
    history = json.loads((tmp_path / "pkg" / "manifest.json").read_text())["training"]["history"]
    assert {"loss_d", "loss_g", "g_gan", "g_pixel", "val_mae"} <= set(history[0])


def test_train_fcn_with_lesion_centred_augmented_crops(data, tmp_path):
    cfg = _cfg(data, tmp_path, net={"width": 1 / 16, "fc_channels": 8, "batch_norm": True},
               crop=32, lesion_p=1.0, augment={}, samples_per_epoch=8)
    train_fcn(cfg)
    pkg, _ = _check_package(tmp_path / "pkg", build_fcn4s, "fcn4s", data)
    config = pkg.manifest["training"]["config"]
    assert config["lesion_p"] == 1.0 and config["augment"] == {}
    assert pkg.manifest["architecture"]["params"]["batch_norm"] is True


def test_train_fcn_mines_hard_examples_each_epoch(data, tmp_path, caplog):
    cfg = _cfg(data, tmp_path, net={"width": 1 / 16, "fc_channels": 8}, crop=32,
               lesion_p=0.3, negative_p=0.3, positive_p=0.3, samples_per_epoch=8)
    with caplog.at_level("INFO", logger="training.ct_trainers.hard_examples"):
        train_fcn(cfg)
    mined = [r.getMessage() for r in caplog.records if "hard examples in" in r.getMessage()]
    assert len(mined) == cfg.epochs  # once per epoch, before its crops are drawn
    assert all("missed hot regions of 0" not in m for m in mined)  # the lesions were looked at
    pkg, _ = _check_package(tmp_path / "pkg", build_fcn4s, "fcn4s", data)
    config = pkg.manifest["training"]["config"]
    assert (config["negative_p"], config["positive_p"]) == (0.3, 0.3)
    assert 0.0 <= pkg.manifest["metrics"]["val_hot_found"] <= 1.0


def test_average_last_exports_the_mean_of_the_last_epochs(data, tmp_path):
    cfg = _cfg(data, tmp_path, net={"width": 1 / 16, "fc_channels": 8}, average_last=2)
    train_fcn(dataclasses.replace(cfg, epochs=3))
    snaps = sorted((tmp_path / "work" / "snapshots").glob("*.safetensors"))
    assert [p.name for p in snaps] == ["epoch0002.safetensors", "epoch0003.safetensors"]
    two, three = (load_file(str(p)) for p in snaps)
    exported = load_file(str(tmp_path / "pkg" / "model.safetensors"))
    key = next(k for k, v in exported.items() if v.is_floating_point() and v.dim() == 4)
    assert not torch.equal(two[key], three[key])  # the epochs differ, so the mean is new
    torch.testing.assert_close(exported[key], (two[key] + three[key]) / 2)
    manifest = json.loads((tmp_path / "pkg" / "manifest.json").read_text())
    assert manifest["metrics"]["averaged_epochs"] == [2, 3]
    assert np.isfinite(manifest["metrics"]["val_mae"])
    last = load_file(str(tmp_path / "work" / "checkpoint" / "checkpoint.safetensors"))
    torch.testing.assert_close(last["net." + key], three[key])  # resume goes on from epoch 3


def test_checkpoint_keeps_channels_last_optimizer_state(tmp_path):
    def make():
        net = torch.nn.Conv2d(2, 4, 3).to(memory_format=torch.channels_last)
        return net, torch.optim.Adam(net.parameters())

    net, opt = make()
    x = torch.rand(2, 2, 8, 8).contiguous(memory_format=torch.channels_last)
    net(x).sum().backward()
    opt.step()
    moment = opt.state[net.weight]["exp_avg"]
    assert not moment.is_contiguous()  # the layout the trainers get on CUDA
    save_checkpoint(tmp_path, {"net": net}, {"opt": opt}, {"epoch": 1})
    net2, opt2 = make()
    assert load_checkpoint(tmp_path, {"net": net2}, {"opt": opt2})["epoch"] == 1
    torch.testing.assert_close(opt2.state[net2.weight]["exp_avg"], moment)
    torch.testing.assert_close(net2.weight, net.weight)


def test_time_budget_stops_after_an_epoch_and_exports(data, tmp_path, caplog):
    cfg = _cfg(data, tmp_path, net={"width": 1 / 16, "fc_channels": 8}, max_minutes=0.0)
    with caplog.at_level("WARNING", logger="training.ct_trainers.loop"):
        train_fcn(dataclasses.replace(cfg, epochs=3))
    assert any("stopping after epoch 1 of 3" in r.getMessage() for r in caplog.records)
    manifest = json.loads((tmp_path / "pkg" / "manifest.json").read_text())
    assert [h["epoch"] for h in manifest["training"]["history"]] == [1]
    assert manifest["training"]["config"]["max_minutes"] == 0.0
    _check_package(tmp_path / "pkg", build_fcn4s, "fcn4s", data)


def test_loader_processes_train_with_generators_of_their_own(data, tmp_path):
    cfg = _cfg(data, tmp_path, net={"width": 1 / 16, "fc_channels": 8}, crop=32, augment={},
               samples_per_epoch=8, workers=2)
    train_fcn(cfg)
    assert len(list((tmp_path / "work" / "pairs-cache").glob("*.npz"))) == 2
    _check_package(tmp_path / "pkg", build_fcn4s, "fcn4s", data)
    loader = DataLoader(range(4), batch_size=1, num_workers=2,
                        generator=torch.Generator().manual_seed(0),
                        collate_fn=lambda _: torch.rand(1, generator=_worker_generator()))
    draws = [float(v) for v in loader]
    assert len(set(draws)) == 4  # inherited copies of one generator would repeat per worker


def test_fine_tuning_starts_from_a_package_and_its_blend_member(data, tmp_path):
    from pipeline.errors import ModelError
    from training.blend_package import make_blend_package
    from training.ct_trainers.init_weights import init_from_package

    fcn_net = {"width": 1 / 16, "fc_channels": 8}
    train_fcn(_cfg(data, tmp_path / "f", net=fcn_net))
    train_pix2pix(_cfg(data, tmp_path / "g", net={"num_downs": 5, "ngf": 4, "ndf": 4}))
    first = load_file(str(tmp_path / "f" / "pkg" / "model.safetensors"))
    blend = make_blend_package(tmp_path / "f" / "pkg", tmp_path / "g" / "pkg", tmp_path / "b")
    params = {"in_channels": 1, **fcn_net}
    for source in (tmp_path / "f" / "pkg", blend):  # a single package, then a blend's member
        net = build_fcn4s(params)
        init_from_package(net, "fcn4s", params, source)
        for key, value in net.state_dict().items():
            torch.testing.assert_close(value, first[key])
    with pytest.raises(ModelError, match="differ"):
        init_from_package(build_fcn4s(width=1 / 8, fc_channels=8), "fcn4s",
                          {"in_channels": 1, "width": 1 / 8, "fc_channels": 8}, blend)
    with pytest.raises(ModelError, match="not a model package"):
        init_from_package(build_fcn4s(params), "fcn4s", params, tmp_path)
    # more z context: both members start as the source network on its centre slices
    x = torch.randn(2, 3, 64, 64)
    for arch, build, net in (("fcn4s", build_fcn4s, fcn_net),
                             ("pix2pix_unet", build_pix2pix_unet, {"num_downs": 5, "ngf": 4})):
        narrow, wide = build({"in_channels": 1, **net}).eval(), build({"in_channels": 3, **net}).eval()
        init_from_package(narrow, arch, {"in_channels": 1, **net}, blend)
        init_from_package(wide, arch, {"in_channels": 3, **net}, blend)
        with torch.no_grad():
            torch.testing.assert_close(wide(x), narrow(x[:, 1:2]))
            assert not torch.allclose(wide(x), narrow(x[:, :1]))  # the centre slice, not the first
    # more CT windows: the new window's kernels start at zero, so the output is the source's
    for arch, build, net in (("fcn4s", build_fcn4s, fcn_net),
                             ("pix2pix_unet", build_pix2pix_unet, {"num_downs": 5, "ngf": 4})):
        windowed = {"in_channels": 3, **net, "extra_windows": [[0.0, 120.0]],
                    "input_window": [-160.0, 240.0]}
        narrow = build({"in_channels": 1, **net}).eval()
        init_from_package(narrow, arch, {"in_channels": 1, **net}, blend)
        wide = build(windowed).eval()
        init_from_package(wide, arch, windowed, blend)
        first_conv = next(m for m in wide.modules() if isinstance(m, torch.nn.Conv2d))
        assert first_conv.in_channels == 6 and first_conv.weight[:, 3:].abs().sum() == 0
        with torch.no_grad():
            torch.testing.assert_close(wide(x), narrow(x[:, 1:2]))
    with pytest.raises(ModelError, match="more CT windows"):  # another input range: refused
        other = {"in_channels": 3, **fcn_net, "input_window": [-100.0, 200.0],
                 "extra_windows": [[0.0, 100.0]]}
        init_from_package(build_fcn4s(other), "fcn4s", other, blend)
    with pytest.raises(ModelError, match="only more context slices"):  # 1 -> 2: no centre
        init_from_package(build_fcn4s({**params, "in_channels": 2}), "fcn4s",
                          {**params, "in_channels": 2}, blend)
    with pytest.raises(ModelError, match="not fcn4s"):
        init_from_package(build_fcn4s(params), "fcn4s", params, tmp_path / "g" / "pkg")
    # a fine-tuning run records where it started and its antialiased input in the manifest
    tuned = _cfg(data, tmp_path / "t", net=fcn_net, init=tmp_path / "f" / "pkg", lr=1e-9)
    train_fcn(tuned)
    manifest = json.loads((tmp_path / "t" / "pkg" / "manifest.json").read_text())
    assert manifest["training"]["config"]["init"] == str(tmp_path / "f" / "pkg")
    assert manifest["input"]["antialias"] is True
    after = load_file(str(tmp_path / "t" / "pkg" / "model.safetensors"))
    key = "features.0.weight"
    torch.testing.assert_close(after[key], first[key], atol=1e-6, rtol=1e-4)  # lr ~0: unchanged


def test_input_lr_factor_speeds_up_only_the_first_convolution():
    from training.ct_trainers import runtime as R

    for net in (build_fcn4s(width=1 / 16, fc_channels=8, in_channels=3),
                build_pix2pix_unet(num_downs=5, ngf=4, in_channels=3)):
        assert len(R.param_groups(net)) == 1  # factor 1: one group, old checkpoints resume
        opt = torch.optim.Adam(R.param_groups(net, 5.0), lr=1.0)
        R.set_lr(opt, 1e-3)
        slow, fast = opt.param_groups
        first = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
        assert {id(p) for p in fast["params"]} == {id(p) for p in first.parameters()}
        assert fast["lr"] == pytest.approx(5e-3) and slow["lr"] == pytest.approx(1e-3)
        assert len(slow["params"]) + len(fast["params"]) == sum(
            p.requires_grad for p in net.parameters())
