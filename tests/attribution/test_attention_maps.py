"""Attention weights recomputed from fused attention equal the unfused computation; rollout, gradient rollout,
position-embedding similarity and mean attention distance against hand-computed values; the trained demo ViT's
rollout lies on the garment."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import VisionTransformer

from reportgen.attribution import attention as AT
from reportgen.inspection.hooks import capture_outputs, count_hooks


class SelfAttn(nn.Module):
    """Calls an nn.MultiheadAttention the way torchvision's encoder block does (need_weights=False: fused)."""

    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.mha = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x):
        return self.mha(x, x, x, need_weights=False)[0]


def tiny_tv_vit(seed=0):
    torch.manual_seed(seed)
    return VisionTransformer(image_size=16, patch_size=4, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64,
                             num_classes=5).eval()


def test_mha_recomputed_equals_need_weights():
    torch.manual_seed(0)
    m = SelfAttn().eval()
    x = torch.randn(3, 17, 32)
    ref_out, ref_w = m.mha(x, x, x, need_weights=True, average_attn_weights=False)
    sites = AT.find_attention(m)
    assert [(s.name, s.kind, s.heads) for s in sites] == [("mha", "torchvision", 4)]
    (a,), out = AT.attention_weights(m, sites, x)
    assert a.shape == (3, 4, 17, 17)
    assert torch.allclose(a, ref_w, atol=1e-5)
    assert torch.allclose(out, ref_out, atol=1e-5)
    assert count_hooks(m) == 0


def test_vit_output_unchanged_hooks_removed_even_on_error():
    model = tiny_tv_vit()
    x = torch.randn(2, 3, 16, 16)
    with torch.inference_mode():
        ref = model(x)
    sites = AT.find_attention(model)
    assert [s.name for s in sites] == [f"encoder.layers.encoder_layer_{i}.self_attention" for i in range(2)]
    attns, logits = AT.attention_weights(model, sites, x)
    assert torch.allclose(logits, ref, atol=1e-5)
    assert all(torch.allclose(a.sum(-1), torch.ones(2, 4, 17), atol=1e-5) for a in attns)
    with pytest.raises(AssertionError):
        with AT.recorded_attention(sites):
            model(torch.randn(1, 3, 12, 12))  # wrong size: the model raises inside the block
    assert count_hooks(model) == 0


def test_timm_fused_equals_unfused():
    vt = pytest.importorskip("timm.models.vision_transformer")
    torch.manual_seed(0)
    model = vt.VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4, num_classes=5,
                                 qk_norm=True).eval()
    x = torch.randn(2, 3, 16, 16)
    sites = AT.find_attention(model)
    assert [s.name for s in sites] == ["blocks.0.attn", "blocks.1.attn"] and sites[0].kind == "timm"
    for s in sites:
        s.module.fused_attn = True
    ours, _ = AT.attention_weights(model, sites, x)
    for s in sites:
        s.module.fused_attn = False
    drops = {s.name: s.module.attn_drop for s in sites}  # the unfused path's softmax goes through attn_drop
    with torch.inference_mode(), capture_outputs(drops) as ref:
        model(x)
    for s, a in zip(sites, ours):
        assert torch.allclose(a, ref[s.name], atol=1e-5)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_hf_vit_equals_eager_output_attentions(impl):
    tr = pytest.importorskip("transformers")
    cfg = tr.ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=64, num_labels=5)
    torch.manual_seed(0)
    eager_model = tr.ViTForImageClassification(cfg).eval()
    eager_model.config._attn_implementation = "eager"
    x = torch.randn(2, 3, 16, 16)
    with torch.inference_mode():
        ref = eager_model(pixel_values=x, output_attentions=True).attentions
    model = tr.ViTForImageClassification(cfg).eval()
    model.load_state_dict(eager_model.state_dict())
    model.config._attn_implementation = impl
    sites = AT.find_attention(model)
    assert len(sites) == 2 and sites[0].heads == 4
    ours, _ = AT.attention_weights(model, sites, x)
    for a, r in zip(ours, ref):
        assert torch.allclose(a, r, atol=1e-5)
    assert count_hooks(model) == 0


def test_cnn_has_no_attention():
    from conftest import make_tiny_cnn

    assert AT.find_attention(make_tiny_cnn()) == []


def test_token_layout():
    assert AT.token_layout(50, (28, 28)) == (1, (7, 7))
    assert AT.token_layout(198, (224, 224)) == (2, (14, 14))  # class + distillation token
    assert AT.token_layout(49, (28, 28)) == (0, (7, 7))
    assert AT.token_layout(5 + 8, (16, 32), prefix=5) == (5, (2, 4))
    with pytest.raises(ValueError):
        AT.token_layout(3, (28, 28), prefix=0)


def test_rollout_matches_hand_product():
    torch.manual_seed(0)
    a1 = torch.softmax(torch.randn(2, 3, 5, 5), -1)
    a2 = torch.softmax(torch.randn(2, 3, 5, 5), -1)
    eye = torch.eye(5)
    m1, m2 = 0.5 * a1.mean(1) + 0.5 * eye, 0.5 * a2.mean(1) + 0.5 * eye  # rows already sum to 1
    assert torch.allclose(AT.rollout([a1, a2]), m2 @ m1, atol=1e-6)
    r = AT.rollout([a1, a2])
    assert torch.allclose(r.sum(-1), torch.ones(2, 5), atol=1e-6)
    # only identity attention: nothing mixes, the class token's row over patches is zero
    assert AT.class_row(AT.rollout([eye.expand(1, 3, 5, 5)]), 1).abs().max() == 0


def test_gradient_rollout_keeps_positive_relevance_only():
    a = torch.full((1, 2, 3, 3), 1 / 3)
    g = torch.zeros(1, 2, 3, 3)
    g[0, 0, 0, 2] = 3.0  # head 0: the class token's attention to token 2 raises the score
    g[0, 1, 0, 1] = -3.0  # head 1: to token 1 lowers it
    r = AT.gradient_rollout([a], [g])
    expected = torch.eye(3)
    expected[0, 2] = 0.5  # mean over heads of relu(3 * 1/3) = (1 + 0) / 2
    assert torch.allclose(r[0], expected)
    assert torch.allclose(AT.class_row(r, 1), torch.tensor([[0.0, 0.5]]))


def test_position_similarity_of_hand_built_embedding():
    h, w = 3, 4
    # patch (i, j): one-hot row i concatenated with one-hot column j  =>  cos = (δ_ii' + δ_jj') / 2
    pos = torch.zeros(h * w, h + w)
    ii, jj = np.divmod(np.arange(h * w), w)
    pos[np.arange(h * w), ii] = 1.0
    pos[np.arange(h * w), h + jj] = 1.0
    sim = AT.position_similarity(pos)
    expected = ((ii[:, None] == ii[None]).astype(float) + (jj[:, None] == jj[None]).astype(float)) / 2
    assert np.allclose(sim.numpy(), expected, atol=1e-6)
    model = tiny_tv_vit()  # torchvision's pos_embedding is (1, 1 + 16, C); the patch entries are the last 16
    with torch.no_grad():
        model.encoder.pos_embedding.zero_()
        model.encoder.pos_embedding[0, 1:, :7] = torch.eye(16)[:, :7]
    got = AT.position_embedding(model, 16)
    assert got.shape == (16, 32) and torch.equal(got[:, :7], torch.eye(16)[:, :7])


def test_mean_attention_distance_local_and_uniform():
    n = 4  # 2x2 grid, patch side 3 px, one class token
    eye = torch.eye(n + 1).expand(1, 1, n + 1, n + 1)
    assert AT.mean_attention_distance(eye, 1, (2, 2), 3.0).item() == pytest.approx(0.0)
    uni = torch.full((1, 1, n + 1, n + 1), 1 / (n + 1))
    assert AT.mean_attention_distance(uni, 1, (2, 2), 3.0).item() == pytest.approx(3 * (2 + math.sqrt(2)) / 4)


def test_top_area_mass():
    assert AT.top_area_mass(torch.ones(1, 10)).item() == pytest.approx(0.2)
    m = torch.zeros(1, 10)
    m[0, 3] = 1
    assert AT.top_area_mass(m).item() == pytest.approx(1.0)


def demo_vit_batch():
    from PIL import Image

    from reportgen import demo
    from reportgen.demo import vit

    if not vit.VIT_WEIGHTS_PATH.is_file():
        pytest.skip("demo ViT weights not built")
    files = sorted(demo.images_dir().glob("*/*.png"))[::10]  # 30 images, 3 per class
    grey = np.stack([np.asarray(Image.open(f).convert("L"), dtype=np.float32) / 255 for f in files])
    x = torch.from_numpy(grey)[:, None].expand(-1, 3, -1, -1)
    x = (x - torch.tensor(demo.MEAN).view(1, 3, 1, 1)) / torch.tensor(demo.STD).view(1, 3, 1, 1)
    return vit.build_model(), x, grey


def test_rollout_on_demo_vit_lies_on_the_garment():
    model, x, grey = demo_vit_batch()
    sites = AT.find_attention(model)
    attns, logits = AT.attention_weights(model, sites, x)
    prefix, grid = AT.token_layout(attns[0].shape[-1], (28, 28))
    assert (prefix, grid) == (1, (7, 7))
    roll = AT.class_row(AT.rollout(attns), prefix).view(-1, 7, 7)
    pix = roll.repeat_interleave(4, 1).repeat_interleave(4, 2).numpy()  # each token covers its 4x4 patch
    pix = pix / pix.sum((1, 2), keepdims=True)
    garment = grey > 0.05  # the non-black pixels
    mass = (pix * garment).sum((1, 2))
    area = garment.mean((1, 2))  # what a uniform map puts on the garment
    density = (mass / area) / ((1 - mass) / (1 - area))  # per-pixel mass on the garment vs on the background
    # More than half of the rollout's mass lies on the garment, above its area share on most images, at a higher
    # density than on the background; a uniform map (mass == area, density ratio 1) fails all three. The margins
    # are what this small, briefly trained ViT gives (median mass 0.51, density ratio 1.16): its rollout is diffuse.
    assert np.median(mass) > 0.5
    assert (mass > area).mean() >= 0.7
    assert np.median(density) >= 1.1
    ys = AT.attention_with_grads(model, sites, x, logits.argmax(1))[:2]
    g = AT.class_row(AT.gradient_rollout(*ys), prefix).view(-1, 7, 7)
    gp = g.repeat_interleave(4, 1).repeat_interleave(4, 2).numpy()
    assert gp.reshape(len(gp), -1).max(1).min() > 0  # a gradient map for every image
    assert count_hooks(model) == 0
