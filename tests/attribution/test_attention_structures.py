"""Attention modules are recognised by their structure, not their class name: a look-alike (a class called
``Attention`` without timm's query/key norms, windowed attention with a relative-position bias, a hybrid whose
stages see different token counts) gets a reason, never a crash; a model that rewrites its own attributes in
``forward`` (Hugging Face Swin's window size) is put back after a probe at another size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reportgen.attribution import attention as AT
from reportgen.inspection.hooks import count_hooks, kept_attributes


class Attention(nn.Module):
    """Named like timm's ViT attention, built like timm's older/other families: no ``q_norm`` / ``k_norm``, and a
    4-D token grid in (as NesT and VOLO call theirs)."""

    def __init__(self, dim=16, heads=2):
        super().__init__()
        self.num_heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):  # (B, H, W, C)
        b, h, w, c = x.shape
        t = x.reshape(b, h * w, c)
        q, k, v = self.qkv(t).chunk(3, -1)
        a = torch.softmax(q @ k.transpose(-2, -1) * self.scale, -1)
        return self.proj(a @ v).reshape(b, h, w, c)


class GridNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 4, stride=4)
        self.attn = Attention()
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        t = self.stem(x).permute(0, 2, 3, 1)
        return self.head(self.attn(t).mean((1, 2)))


def _timm_attention(dim=16, heads=2):
    timm = pytest.importorskip("timm")
    return timm.models.vision_transformer.Attention(dim, num_heads=heads)


class Hybrid(nn.Module):
    """Two ViT attention blocks over different token counts (16 tokens, then 4 after pooling), as in MobileViT."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 4, stride=4)
        self.a1, self.a2 = _timm_attention(), _timm_attention()
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        f = self.stem(x)  # (B, 16, 4, 4)
        t = self.a1(f.flatten(2).transpose(1, 2))
        f = nn.functional.avg_pool2d(t.transpose(1, 2).reshape(f.shape), 2)
        t = self.a2(f.flatten(2).transpose(1, 2))
        return self.head(t.mean(1))


def test_a_class_named_attention_without_the_structure_is_not_recognised():
    model = GridNet().eval()
    assert AT.find_attention(model) == []
    assert AT.unrecognised_attention(model) == ["Attention"]
    why = AT.probe_layout(model, torch.rand(1, 3, 16, 16))
    assert isinstance(why, str) and "another structure (Attention)" in why


def test_a_recognised_module_called_unexpectedly_is_unsupported_not_a_crash():
    m = _timm_attention().eval()
    site = AT.find_attention(nn.Sequential(m))
    assert [s.kind for s in site] == ["timm"]

    class Wrong(nn.Module):  # a recognised module fed a 4-D grid: the recomputation cannot reshape it
        def __init__(self):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x.flatten(1, 2)).reshape(x.shape)

    model = Wrong().eval()
    with pytest.raises(AT.AttentionUnsupported):
        from reportgen.attribution._attention_eager import eager

        eager(m, "timm", (torch.rand(1, 2, 2, 16),), {})
    assert count_hooks(model) == 0


def test_hybrid_token_counts_give_a_reason_and_rollout_refuses():
    model = Hybrid().eval()
    assert len(AT.find_attention(model)) == 2
    why = AT.probe_layout(model, torch.rand(1, 3, 16, 16))
    assert isinstance(why, str) and "different token counts (4, 16)" in why
    attns, _ = AT.attention_weights(model, AT.find_attention(model), torch.rand(1, 3, 16, 16))
    with pytest.raises(AT.AttentionUnsupported, match="one token sequence"):
        AT.rollout(attns)
    assert count_hooks(model) == 0


def test_windowed_attention_with_a_relative_position_bias_is_not_recognised():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                                  window_size=4, num_labels=3)
    torch.manual_seed(0)
    model = transformers.SwinForImageClassification(cfg).eval()
    assert AT.find_attention(model) == []  # config.num_attention_heads is a list here: no int() crash
    assert any("Swin" in n for n in AT.unrecognised_attention(model))
    # Swin shrinks its windows for a small input and keeps them: kept_attributes puts them back
    x = torch.rand(2, 3, 32, 32)
    with torch.inference_mode():
        ref = model(pixel_values=x).logits
        with kept_attributes(model):
            try:  # as a size probe does: this size may fail, after having shrunk the windows
                model(pixel_values=torch.rand(1, 3, 8, 8))
            except RuntimeError:
                pass
        assert torch.allclose(model(pixel_values=x).logits, ref, atol=1e-5)


def test_kept_attributes_restores_plain_state_only():
    m = nn.Sequential(nn.Linear(2, 2))
    m[0].window = 7
    w = m[0].weight
    with kept_attributes(m):
        m[0].window = 3
        m[0].new_flag = True
    assert m[0].window == 7 and m[0].weight is w
