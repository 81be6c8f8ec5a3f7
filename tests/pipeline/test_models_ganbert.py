"""GANBERT networks: quantization rules, sequence layout, masking, U-Net3D, BERT heads."""

from __future__ import annotations

import pytest
import torch

from pipeline.models import summarize as S
from pipeline.models.bert_discriminator import BertConfig, BertDiscriminator
from pipeline.models.patchgan3d import PatchGAN3D
from pipeline.models.unet3d import UNet3D, build_unet3d


def test_quantize_hand_values():
    v = torch.tensor([0.0, 0.0004, 1.234, 10.0, -1.7, -0.3, 12.3456, 25.0, 0.5])
    # 0 -> 1 (floor of the vocabulary); -1700 -> 200; -300 -> 300; 12346 -> 346 + 500;
    # 25000 -> 0 + 500; 10000 stays (not > 1e4)
    assert S.quantize(v).tolist() == [1, 1, 1234, 10000, 200, 300, 846, 500, 500]
    big = torch.linspace(-50, 50, 1001)
    q = S.quantize(big)
    assert int(q.min()) >= 1 and int(q.max()) <= 10_000
    assert torch.equal(S.soft_quantize(v[[2, 4, 6]]).round().long(), S.quantize(v[[2, 4, 6]]))


def test_abs_max_pool_keeps_sign_of_largest_magnitude():
    x = torch.zeros(1, 1, 4, 4, 4)
    x[0, 0, 0, 0, 0], x[0, 0, 0, 0, 1] = -5.0, 3.0
    x[0, 0, 3, 3, 3] = 2.0
    p = S.abs_max_pool(x, (2, 2, 2))
    assert p[0, 0, 0, 0, 0] == -5.0 and p[0, 0, 1, 1, 1] == 2.0
    assert S.summarize(torch.randn(2, 2, 8, 8, 8)).shape == (2, 512)
    assert S.pool_grid(512) == (8, 8, 8) and S.pool_grid(256) == (4, 8, 8)


def test_sequence_layout_and_segments():
    mri = torch.full((2, 512), 7.0)
    pet = torch.full((2, 512), 9.0)
    seq, seg = S.build_sequence(mri, pet)
    assert seq.shape == (2, S.SEQ_LEN) == (2, 1027)
    assert seq[0, 0] == S.CLS_ID and seq[0, 513] == S.SEP_ID and seq[0, 1026] == S.SEP_ID
    assert torch.all(seq[0, S.mri_slice()] == 7) and torch.all(seq[0, S.pet_slice()] == 9)
    assert seg[0, :514].sum() == 0 and torch.all(seg[0, 514:] == 1)
    seq_cls, _ = S.build_sequence(mri, pet, end="cls")
    assert seq_cls[0, -1] == S.CLS_ID


def test_masking_ratios_and_labels():
    seq, _ = S.build_sequence(torch.full((3, 512), 5.0), torch.full((3, 512), 6.0))
    target = seq.round().long()
    masked, labels = S.mask_tokens(seq, target, gen=torch.Generator().manual_seed(0))
    is_mask = masked == S.MASK_ID
    assert is_mask[:, S.mri_slice()].sum(1).tolist() == [26] * 3  # 5% of 512
    assert is_mask[:, S.pet_slice()].sum(1).tolist() == [128] * 3  # 25% of 512
    assert not is_mask[:, [0, 513, 1026]].any()
    assert torch.equal(labels[is_mask], target[is_mask])
    assert torch.all(labels[~is_mask] == S.IGNORE)


def test_bottleneck_combined_before_quantization():
    mri = torch.ones(1, 512)
    bn = torch.full((1, 8, 2, 2, 2), 3.0)
    assert torch.allclose(S.combine_bottleneck(mri, bn), torch.full((1, 512), 2.0))


def test_unet3d_shapes_and_activations():
    torch.manual_seed(0)
    g = UNet3D(1, 2, base=4, depth=2)
    x = torch.randn(1, 1, 16, 16, 16)
    y, bn = g(x, return_bottleneck=True)
    assert y.shape == (1, 2, 16, 16, 16) and bn.shape == (1, 16, 4, 4, 4)
    raw = UNet3D(1, 2, base=4, depth=2, activation="none")
    raw.load_state_dict(g.state_dict())
    r = raw(x)
    assert torch.allclose(y, r - torch.tanh(r), atol=1e-6)
    tanh = build_unet3d({"base": 4, "depth": 2, "activation": "tanh"})
    assert tanh(x).abs().max() <= 1.0


def test_bert_heads_and_gradient_reaches_generator():
    torch.manual_seed(0)
    g = UNet3D(1, 2, base=4, depth=2)
    bert = BertDiscriminator(BertConfig.preset("tiny"))
    assert BertConfig().layers == 12 and BertConfig().hidden == 768 and BertConfig().heads == 12
    x = torch.randn(2, 1, 16, 16, 16)
    fake, bn = g(x, return_bottleneck=True)
    mri = S.soft_quantize(S.combine_bottleneck(S.summarize(x), bn))
    seq, seg = S.build_sequence(mri, S.soft_quantize(S.summarize(fake)))
    masked, labels = S.mask_tokens(seq, seq.round().long())
    out = bert(masked, seg, labels)
    assert out["nsp_logits"].shape == (2, 2)
    assert out["mlm_logits"].shape == (int((labels != -100).sum()), S.VOCAB_SIZE)
    (out["nsp_logits"][:, 0].sum() + out["mlm_loss"]).backward()
    assert g.head.weight.grad is not None and g.head.weight.grad.abs().sum() > 0


def test_patchgan3d():
    d = PatchGAN3D(3, base=4)
    assert d(torch.randn(1, 1, 16, 16, 16), torch.randn(1, 2, 16, 16, 16)).shape[:2] == (1, 1)


def test_tiled_inference_matches_whole_volume_without_norm():
    import numpy as np

    from pipeline.models.unet3d import UNet3D, predict_mr_to_pet

    torch.manual_seed(0)
    g = UNet3D(1, 2, 4, 2, norm="none").eval()
    mr = np.random.default_rng(0).random((30, 41, 37)).astype(np.float32) * 100
    whole = predict_mr_to_pet(g, mr)
    g.tile = 16  # windows overlap by half; only the windows' zero-padded borders differ
    tiled = predict_mr_to_pet(g, mr)
    assert tiled.shape == whole.shape == (2, 30, 41, 37)
    assert np.abs(tiled - whole).mean() < 0.01 * np.abs(whole).mean()
    with pytest.raises(ValueError, match="multiple"):
        UNet3D(1, 2, 4, 2, tile=10)
