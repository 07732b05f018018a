"""reportgen.attribution.attention against written-out computations on tiny hand-built models: which sites are
listed, the reasons given word for word, the probed token layout, A and dS/dA against a hand-written multi-head
forward, the token layout search, rollout and gradient rollout against loops, the class row, the position
embedding and its cosine similarity, the mean attention distance and the top-area mass."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from reportgen.attribution import attention as AT
from reportgen.inspection.hooks import count_hooks

torch.set_num_threads(1)


class TinyViT(nn.Module):
    """Patch embedding (4 px), ``prefix`` learned extra tokens, ``layers`` residual MultiheadAttention blocks called
    fused (need_weights=False), a linear head on the first token (or the mean without extra tokens)."""

    def __init__(self, prefix=1, layers=2, dim=8, heads=2, classes=3, masked=False, out="tensor"):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, 4, stride=4)
        self.extra = nn.Parameter(torch.randn(1, prefix, dim)) if prefix else None
        self.blocks = nn.ModuleList(nn.MultiheadAttention(dim, heads, batch_first=True) for _ in range(layers))
        for b in self.blocks:
            with torch.no_grad():
                b.in_proj_bias.uniform_(-0.5, 0.5)
        self.head = nn.Linear(dim, classes)
        self.masked, self.out = masked, out

    def tokens(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        return t if self.extra is None else torch.cat([self.extra.expand(len(t), -1, -1), t], 1)

    def pool(self, t):
        return self.head(t[:, 0] if self.extra is not None else t.mean(1))

    def forward(self, x):
        t = self.tokens(x)
        for blk in self.blocks:
            kw = {"attn_mask": torch.zeros(t.shape[1], t.shape[1], dtype=torch.bool)} if self.masked else {}
            t = t + blk(t, t, t, need_weights=False, **kw)[0]
        y = self.pool(t)
        if self.out == "tuple":
            return (y, -y)
        if self.out == "object":
            return Out(y)
        return y


class Out:
    def __init__(self, y):
        self.logits = y
        self.hidden = -y


def manual_forward(model, x):
    """The TinyViT forward written out head by head; returns the logits and each block's A (in the graph)."""
    t = model.tokens(x)
    attns = []
    for blk in model.blocks:
        c, heads = t.shape[-1], blk.num_heads
        d = c // heads
        qkv = t @ blk.in_proj_weight.T + blk.in_proj_bias
        q, k, v = qkv[..., :c], qkv[..., c:2 * c], qkv[..., 2 * c:]
        a = torch.stack([torch.softmax(q[..., h * d:(h + 1) * d] @ k[..., h * d:(h + 1) * d].transpose(1, 2)
                                       / math.sqrt(d), -1) for h in range(heads)], 1)
        y = torch.cat([a[:, h] @ v[..., h * d:(h + 1) * d] for h in range(heads)], -1)
        t = t + blk.out_proj(y)
        attns.append(a)
    return model.pool(t), attns


def named(cls_name, **attrs):
    m = type(cls_name, (nn.Module,), {})()
    for k, v in attrs.items():
        setattr(m, k, v)
    return m


BASE = ("the model has no global self-attention module reportgen recognises by its structure (torchvision "
        "nn.MultiheadAttention, timm ViT/DeiT Attention, Hugging Face ViT attention).")
OTHERS = ("): windowed, relative-position, spatially reduced or convolutional attention, which rollout over one token "
          "sequence does not cover.")


def test_no_attention_reason_word_for_word():
    """No look-alike: the convolutional-model sentence; look-alikes: their sorted class names, each once, at most
    four, then ', ...'."""
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    assert AT.no_attention_reason(cnn) == BASE + " It has no attention module (a convolutional model)."
    one = nn.Sequential(named("WindowAttention"), named("WindowAttention"))
    assert AT.unrecognised_attention(one) == ["WindowAttention"]
    assert AT.no_attention_reason(one) == (BASE + " It has attention modules of another structure (WindowAttention"
                                           + OTHERS)
    four = nn.Sequential(*(named(n) for n in ("DAttn", "BAttention", "CAttn", "AAttention", "BAttention")))
    assert AT.unrecognised_attention(four) == ["AAttention", "BAttention", "CAttn", "DAttn"]
    assert AT.no_attention_reason(four) == (BASE + " It has attention modules of another structure (AAttention, "
                                            "BAttention, CAttn, DAttn" + OTHERS)
    five = nn.Sequential(*(named(n) for n in ("EAttn", "DAttn", "BAttention", "CAttn", "AAttention")))
    assert AT.no_attention_reason(five) == (BASE + " It has attention modules of another structure (AAttention, "
                                            "BAttention, CAttn, DAttn, ..." + OTHERS)


def test_find_attention_lists_recognised_sites_not_nested_ones():
    """Recognised modules in definition order with their kind and head count; one inside a recognised module is not
    listed, one whose name merely starts with a site's name is."""
    model = nn.Module()
    outer = named("OuterAttention", q_proj=nn.Linear(8, 8), k_proj=nn.Linear(8, 8), v_proj=nn.Linear(8, 8),
                  o_proj=nn.Linear(8, 8), head_dim=2)
    outer.inner = nn.MultiheadAttention(8, 2)
    model.blk = outer
    model.blk2 = nn.MultiheadAttention(8, 4)
    model.conv = nn.Conv2d(3, 3, 1)
    model.z = nn.Sequential(nn.MultiheadAttention(8, 1))
    sites = AT.find_attention(model)
    assert [(s.name, s.kind, s.heads) for s in sites] == [("blk", "hf", 4), ("blk2", "torchvision", 4),
                                                          ("z.0", "torchvision", 1)]
    assert sites[0].module is outer and sites[1].module is model.blk2


def test_probe_layout_reads_the_layout_from_the_attention():
    """A ViT on an 8x16 image with 4 px patches and two extra tokens: the sites, prefix 2, grid (2, 4), patch side
    8 / 2 = 4 px; the forward module given is the one run."""
    torch.manual_seed(0)
    model = TinyViT(prefix=2).eval()
    x = torch.rand(1, 3, 8, 16)
    lay = AT.probe_layout(model, x)
    assert isinstance(lay, AT.TokenLayout)
    assert [s.name for s in lay.sites] == ["blocks.0", "blocks.1"]
    assert (lay.prefix, lay.grid, lay.patch_px) == (2, (2, 4), 4.0)
    lay = AT.probe_layout(model, x, prefix=2)
    assert (lay.prefix, lay.grid) == (2, (2, 4))
    assert AT.probe_layout(model, x, prefix=3) == "10 tokens do not form a patch grid of a 8x16 image"
    calls = []

    class Front(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            calls.append(1)
            return self.model(x)

    lay = AT.probe_layout(model, x, forward=Front())
    assert calls == [1] and lay.grid == (2, 4)
    tall = AT.probe_layout(TinyViT(prefix=0, layers=1).eval(), torch.rand(1, 3, 16, 8))
    assert (tall.prefix, tall.grid, tall.patch_px) == (0, (4, 2), 4.0) and len(tall.sites) == 1
    assert count_hooks(model) == 0


def test_probe_layout_reasons():
    """No site: the no-attention reason; a recomputation refused: its text; two token counts: their sorted counts."""
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3))
    assert AT.probe_layout(cnn, torch.rand(1, 3, 8, 8)) == AT.no_attention_reason(cnn)
    assert AT.probe_layout(TinyViT(masked=True).eval(), torch.rand(1, 3, 8, 8)) == \
        "a MultiheadAttention called with attn_mask"

    class TwoStage(nn.Module):
        def __init__(self):
            super().__init__()
            self.a1 = nn.MultiheadAttention(4, 2, batch_first=True)
            self.a2 = nn.MultiheadAttention(4, 2, batch_first=True)

        def forward(self, x):
            t = x.flatten(2).transpose(1, 2)[..., :4]  # (1, 16, 4) for an 4x4 image of 4 channels
            t = self.a1(t, t, t)[0]
            t = t[:, ::4]
            return self.a2(t, t, t)[0].mean(1)

    assert AT.probe_layout(TwoStage().eval(), torch.rand(1, 4, 4, 4)) == (
        "the attention modules see different token counts (4, 16): a hierarchical or hybrid model, for which "
        "rollout over depth is not defined")


def test_attention_weights_equal_the_written_out_forward():
    """One inference pass: each site's A in site order equal to the hand-written multi-head attention, the logits
    equal to the model's own (tensor, tuple or .logits output), no hook left."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    for out in ("tensor", "tuple", "object"):
        model = TinyViT(out=out).eval()
        with torch.no_grad():
            ref_logits, ref_a = manual_forward(model, x)
        attns, logits = AT.attention_weights(model, AT.find_attention(model), x)
        assert len(attns) == 2
        for a, r in zip(attns, ref_a):
            assert a.shape == (2, 2, 5, 5) and torch.allclose(a, r, atol=1e-5)
        assert torch.allclose(logits, ref_logits, atol=1e-5)
        assert count_hooks(model) == 0


def test_logits_of_each_output_type():
    """_logits: a tensor itself, an output's .logits, a tuple's first entry; anything else is an assertion naming
    its type."""
    t, u = torch.ones(1, 2), torch.zeros(1, 2)
    assert AT._logits(t) is t
    assert AT._logits((t, u)) is t
    assert AT._logits(Out(t)) is t
    with pytest.raises(AssertionError) as e:
        AT._logits({"logits": t})
    assert str(e.value) == "model output dict holds no logits tensor"


def test_attention_with_grads_is_the_gradient_of_the_target_logits():
    """dS/dA with S the sum over images of each image's target logit, against autograd through the hand-written
    forward; parameters frozen, results detached, no hook left."""
    torch.manual_seed(1)
    model = TinyViT().eval()
    x = torch.randn(2, 3, 8, 8)
    targets = torch.tensor([2, 0])
    xr = x.clone().requires_grad_(True)
    ref_logits, ref_a = manual_forward(model, xr)
    score = ref_logits[0, 2] + ref_logits[1, 0]
    ref_g = torch.autograd.grad(score, ref_a)
    for p in model.parameters():
        p.requires_grad_(False)
    attns, grads, logits = AT.attention_with_grads(model, AT.find_attention(model), x, targets)
    assert len(attns) == len(grads) == 2
    for a, g, ra, rg in zip(attns, grads, ref_a, ref_g):
        assert torch.allclose(a, ra.detach(), atol=1e-5)
        assert g.shape == a.shape and torch.allclose(g, rg, atol=1e-5)
        assert not a.requires_grad and not g.requires_grad
    assert torch.allclose(logits, ref_logits.detach(), atol=1e-5) and not logits.requires_grad
    assert not x.requires_grad
    assert count_hooks(model) == 0


class ViTSelfAttention(nn.Module):
    """Hugging Face ViT self-attention whose own output is ``factor`` times the attention output."""

    def __init__(self, factor, dim=8, heads=2):
        super().__init__()
        self.num_attention_heads, self.attention_head_size, self.factor = heads, dim // heads, factor
        self.query, self.key, self.value = (nn.Linear(dim, dim) for _ in range(3))

    def forward(self, hidden_states, head_mask=None):
        b, n, c = hidden_states.shape
        d = self.attention_head_size
        q, k, v = self.query(hidden_states), self.key(hidden_states), self.value(hidden_states)
        y = torch.cat([torch.softmax(q[..., h * d:(h + 1) * d] @ k[..., h * d:(h + 1) * d].transpose(1, 2)
                                     / math.sqrt(d), -1) @ v[..., h * d:(h + 1) * d]
                       for h in range(self.num_attention_heads)], -1)
        return self.factor * y, None


def test_recorded_attention_refuses_a_recomputation_that_differs():
    """A module whose output is twice the attention output (relative difference 0.5) is refused word for word and the
    hook is removed; one within the tolerance (1e-4) has its output replaced by the eager one."""
    torch.manual_seed(0)
    x = torch.randn(1, 4, 8)
    model = nn.Sequential()
    model.add_module("blk", ViTSelfAttention(2.0))
    sites = AT.find_attention(model)
    assert [(s.name, s.kind) for s in sites] == [("blk", "hf_self")]
    with pytest.raises(AT.AttentionUnsupported) as e:
        with torch.no_grad(), AT.recorded_attention(sites):
            model.blk(x)
    assert str(e.value) == ("recomputing the attention of blk does not reproduce its output (relative difference "
                            "0.5): an unrecognised variant")
    assert count_hooks(model) == 0
    model.blk.factor = 1 + 1e-4
    with torch.no_grad():
        exact = model.blk(x)[0] / model.blk.factor
        with AT.recorded_attention(sites) as store:
            got = model.blk(x)
    assert torch.allclose(got[0], exact, atol=1e-6) and store["blk"].shape == (1, 2, 4, 4)
    assert count_hooks(model) == 0


def test_token_layout_search():
    """The fewest leading tokens (0..8) leaving a grid of the image's aspect ratio (within 25 %) whose sides divide
    the image's; the tolerance boundary itself is accepted; the error text word for word."""
    assert AT.token_layout(8, (8, 16)) == (0, (2, 4))
    assert all(isinstance(v, int) for v in AT.token_layout(8, (8, 16))[1])
    assert AT.token_layout(2, (4, 8)) == (0, (1, 2))
    assert AT.token_layout(12, (12, 12)) == (0, (3, 4))  # 3/4 is exactly 25 % off a square
    assert AT.token_layout(24, (16, 16)) == (8, (4, 4))  # eight extra tokens, the most searched
    assert AT.token_layout(1, (4, 4)) == (0, (1, 1))
    assert AT.token_layout(17, (16, 16), prefix=1) == (1, (4, 4))
    for args, text in (((25, (16, 16)), "25 tokens do not form a patch grid of a 16x16 image"),
                       ((2, (4, 4), 0), "2 tokens do not form a patch grid of a 4x4 image"),
                       ((1, (4, 4), 1), "1 tokens do not form a patch grid of a 4x4 image"),
                       ((16, (10, 10), 0), "16 tokens do not form a patch grid of a 10x10 image"),
                       ((8, (8, 15), 0), "8 tokens do not form a patch grid of a 8x15 image")):
        with pytest.raises(ValueError) as e:
            AT.token_layout(*args)
        assert str(e.value) == text


def rollout_loop(attns, residual):
    b, n = attns[0].shape[0], attns[0].shape[-1]
    out = np.zeros((b, n, n))
    for i in range(b):
        r = np.eye(n)
        for a in attns:
            m = residual * np.eye(n) + (1 - residual) * a[i].double().numpy().mean(0)
            for row in range(n):
                m[row] /= m[row].sum()
            r = m @ r
        out[i] = r
    return out


def test_rollout_against_a_loop_with_row_normalisation():
    """R = prod_l norm_rows(residual I + (1 - residual) mean_h A_l), later layers on the left, for attention rows not
    summing to one, with the default residual 0.5 and another; float32; refused for differing token counts."""
    torch.manual_seed(0)
    attns = [torch.rand(2, 3, 4, 4) for _ in range(3)]
    r = AT.rollout(attns)
    assert r.dtype == torch.float32 and r.shape == (2, 4, 4)
    assert np.allclose(r.numpy(), rollout_loop(attns, 0.5), atol=1e-6)
    assert np.allclose(AT.rollout(attns, residual=0.3).numpy(), rollout_loop(attns, 0.3), atol=1e-6)
    assert np.allclose(AT.rollout(attns[:1], 0.0).numpy(), rollout_loop(attns[:1], 0.0), atol=1e-6)
    with pytest.raises(AT.AttentionUnsupported) as e:
        AT.rollout([torch.rand(1, 2, 5, 5), torch.rand(1, 2, 3, 3), torch.rand(1, 2, 5, 5)])
    assert str(e.value) == ("rollout needs one token sequence through all layers; these attention modules see [3, 5] "
                            "tokens")


def test_gradient_rollout_against_a_loop():
    """R <- R + mean_h(max(dS/dA * A, 0)) R from R = I, layer by layer, per image; float32."""
    torch.manual_seed(0)
    attns = [torch.rand(2, 3, 4, 4) for _ in range(2)]
    grads = [torch.randn(2, 3, 4, 4) for _ in range(2)]
    for layers in (2, 1):
        got = AT.gradient_rollout(attns[:layers], grads[:layers])
        assert got.dtype == torch.float32 and got.shape == (2, 4, 4)
        for i in range(2):
            r = np.eye(4)
            for a, g in zip(attns[:layers], grads[:layers]):
                cam = np.maximum(g[i].double().numpy() * a[i].double().numpy(), 0).mean(0)
                r = r + cam @ r
            assert np.allclose(got[i].numpy(), r, atol=1e-5)


def test_class_row():
    """With extra tokens: token 0's row over the patch tokens (per head for 4-D input); without: the mean row."""
    r = torch.arange(2 * 5 * 5, dtype=torch.float32).view(2, 5, 5)
    assert torch.equal(AT.class_row(r, 1), r[:, 0, 1:])
    assert torch.equal(AT.class_row(r, 2), r[:, 0, 2:])
    assert torch.equal(AT.class_row(r, 0), r.mean(1))
    r4 = torch.rand(2, 3, 5, 5)
    assert torch.equal(AT.class_row(r4, 1), r4[:, :, 0, 1:])
    assert torch.allclose(AT.class_row(r4, 0), r4.mean(2))


def test_position_embedding_by_name_and_length():
    """A (1, L, C) parameter called pos_embedding, pos_embed or position_embeddings (at any depth), L >= n_patches:
    its last n_patches entries as float; other names, shapes or a shorter length: None."""
    for name in ("pos_embedding", "pos_embed", "position_embeddings"):
        p = torch.randn(1, 6, 3)
        top = nn.Module()
        top.register_parameter(name, nn.Parameter(p.clone()))
        assert torch.equal(AT.position_embedding(top, 4), p[0, 2:])
        assert torch.equal(AT.position_embedding(top, 6), p[0])
        assert AT.position_embedding(top, 7) is None
        deep = nn.Module()
        deep.enc = nn.Module()
        deep.enc.register_parameter(name, nn.Parameter(p.clone()))
        got = AT.position_embedding(deep, 4)
        assert torch.equal(got, p[0, 2:]) and not got.requires_grad
        deeper = nn.Sequential(deep)  # "0.enc.<name>"
        assert torch.equal(AT.position_embedding(deeper, 4), p[0, 2:])
    for name, shape in (("my_pos_embed", (1, 6, 3)), ("pos_embed", (6, 3)), ("pos_embed", (2, 6, 3)),
                        ("pos_embed", (1, 1, 6, 3))):
        m = nn.Module()
        m.register_parameter(name, nn.Parameter(torch.randn(shape)))
        assert AT.position_embedding(m, 4) is None, (name, shape)
    m = nn.Module()
    m.pos_embed = nn.Parameter(torch.randn(1, 5, 2).half())
    got = AT.position_embedding(m, 4)
    assert got.dtype == torch.float32 and torch.equal(got, m.pos_embed.detach()[0, 1:].float())


def test_position_similarity_is_pairwise_cosine():
    """Cosine similarity of every pair of rows, also for rows of small norm; a zero row gives zeros, not NaN."""
    torch.manual_seed(0)
    pos = 0.01 * torch.randn(5, 3)
    pos[3] = 0
    sim = AT.position_similarity(pos)
    for i in range(5):
        for j in range(5):
            ni, nj = pos[i].norm().item(), pos[j].norm().item()
            ref = 0.0 if ni == 0 or nj == 0 else float(pos[i] @ pos[j]) / (ni * nj)
            assert sim[i, j].item() == pytest.approx(ref, abs=1e-5)


def test_mean_attention_distance_against_a_loop():
    """Per image and head: the mean over query patches of sum_j w_ij |p_i - p_j| with the patch-to-patch weights
    renormalised per query, p the patch's (row, column) times the patch side; a query with no patch weight counts
    0."""
    torch.manual_seed(0)
    grid, px = (2, 3), 2.5
    for prefix in (0, 1, 2):
        n = prefix + 6
        a = torch.rand(2, 3, n, n)
        a[1] *= 0.01  # patch weights summing to less than one
        if prefix:
            a[0, 1, prefix + 2, prefix:] = 0  # all of one query's weight on the extra tokens
        got = AT.mean_attention_distance(a, prefix, grid, px)
        assert got.shape == (2, 3) and got.dtype == torch.float32
        for b in range(2):
            for h in range(3):
                total = 0.0
                for i in range(6):
                    w = a[b, h, prefix + i, prefix:].double()
                    if w.sum() == 0:
                        continue
                    w = w / w.sum()
                    for j in range(6):
                        dy, dx = (i // 3 - j // 3) * px, (i % 3 - j % 3) * px
                        total += float(w[j]) * math.hypot(dy, dx)
                assert got[b, h].item() == pytest.approx(total / 6, rel=1e-5)


def test_top_area_mass_hand_values():
    """Share of the total on the highest ``area`` fraction of cells (default 0.2), the boundary cell by its covered
    fraction, negatives as zero, per row; 3-D maps flattened per image."""
    m = torch.tensor([[0.0, 3.0, 1.0, 4.0, 2.0]])
    assert AT.top_area_mass(m).item() == pytest.approx(4 / 10)
    assert AT.top_area_mass(m, 0.3).item() == pytest.approx((4 + 0.5 * 3) / 10)
    assert AT.top_area_mass(m, 1.0).item() == pytest.approx(1.0)
    assert AT.top_area_mass(m, 1.5).item() == pytest.approx(1.0)  # more than the whole map: all of it
    assert AT.top_area_mass(m, 0.0).item() == pytest.approx(0.0)
    seven = torch.tensor([[1.0, 7.0, 1.0, 2.0, 1.0, 1.0, 1.0]])  # k = 1.4: 7 + 0.4 * 2 of 14
    assert AT.top_area_mass(seven).item() == pytest.approx(7.8 / 14)
    small = torch.tensor([[0.01, 0.02, 0.03, 0.04, 0.0]])
    assert AT.top_area_mass(small).item() == pytest.approx(0.4)
    neg = torch.tensor([[-5.0, 2.0, 0.0, 2.0, -1.0]])
    assert AT.top_area_mass(neg, 0.2).item() == pytest.approx(0.5)
    assert AT.top_area_mass(torch.zeros(1, 5)).item() == 0.0
    batch = torch.stack([torch.tensor([[0.0, 3.0, 1.0], [4.0, 2.0, 0.0]]), torch.ones(2, 3)])
    got = AT.top_area_mass(batch, 0.5)
    assert got.shape == (2,) and got.dtype == torch.float32
    assert got[0].item() == pytest.approx(9 / 10) and got[1].item() == pytest.approx(0.5)
