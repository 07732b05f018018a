"""The eager recomputation of attention (reportgen.attribution._attention_eager) against written-out per-head loops
and torch's own nn.MultiheadAttention(need_weights=True): which modules are recognised (each structural condition),
the head count, the split/merge of heads, the softmax, the mask refusals word for word, the output structures, and
the comparison of a recomputed output with the module's own."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from reportgen.attribution import _attention_eager as E

torch.set_num_threads(1)


def ref_attention(q, k, v, heads, scale):
    """Per head h (columns h*d .. h*d+d-1): softmax(q_h k_h^T * scale) and its product with v_h, written out."""
    b, n, c = q.shape
    d = c // heads
    a = torch.zeros(b, heads, n, n)
    out = torch.zeros(b, n, c)
    for h in range(heads):
        cols = slice(h * d, (h + 1) * d)
        w = torch.softmax(q[:, :, cols] @ k[:, :, cols].transpose(1, 2) * scale, -1)
        a[:, h] = w
        out[:, :, cols] = w @ v[:, :, cols]
    return out, a


class Attention(nn.Module):
    """timm's ViT Attention structure (qkv, per-head q/k norms, scale, proj, proj_drop), optional norm and gate; the
    forward is written out per head."""

    def __init__(self, dim=8, heads=2, head_dim=None, norm=False, gate=False, scale=0.37):
        super().__init__()
        hd = head_dim if head_dim is not None else dim // heads
        if head_dim is not None:
            self.head_dim = head_dim
        self.num_heads, self.scale = heads, scale
        self.qkv, self.proj = nn.Linear(dim, 3 * heads * hd), nn.Linear(heads * hd, dim)
        self.q_norm, self.k_norm = nn.LayerNorm(hd), nn.LayerNorm(hd)
        with torch.no_grad():
            for p in (*self.q_norm.parameters(), *self.k_norm.parameters()):
                p.uniform_(-1.5, 1.5)
        self.proj_drop = Twice()
        if norm:
            self.norm = nn.LayerNorm(heads * hd)
            with torch.no_grad():
                self.norm.weight.uniform_(0.5, 2.0)
                self.norm.bias.uniform_(-1, 1)
        if gate:
            self.gate = nn.Linear(dim, heads * hd)

    def forward(self, x, attn_mask=None, is_causal=False):
        heads = self.num_heads
        hd = self.qkv.out_features // (3 * heads)
        t = self.qkv(x)
        q, k, v = t[..., : heads * hd], t[..., heads * hd: 2 * heads * hd], t[..., 2 * heads * hd:]
        qn = torch.cat([self.q_norm(q[..., h * hd:(h + 1) * hd]) for h in range(heads)], -1)
        kn = torch.cat([self.k_norm(k[..., h * hd:(h + 1) * hd]) for h in range(heads)], -1)
        y, self.last_a = ref_attention(qn, kn, v, heads, self.scale)
        if hasattr(self, "norm"):
            y = self.norm(y)
        if getattr(self, "gate", None) is not None:
            y = y * torch.sigmoid(self.gate(x))
        return self.proj_drop(self.proj(y))


class Twice(nn.Module):
    """A proj_drop that is not the identity, so that leaving it out shows."""

    def forward(self, x):
        return 2 * x


class TinyAttention(nn.Module):
    """Hugging Face (Llama/ViT-sdpa style) attention: q_proj, k_proj, v_proj, o_proj, head_dim, optional scaling."""

    def __init__(self, dim=8, heads=2, scaling=None):
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(dim, dim) for _ in range(4))
        if scaling is not None:
            self.scaling = scaling

    def forward(self, hidden_states, attention_mask=None, head_mask=None):
        s = getattr(self, "scaling", self.head_dim ** -0.5)
        y, a = ref_attention(self.q_proj(hidden_states), self.k_proj(hidden_states), self.v_proj(hidden_states),
                             self.num_heads, s)
        return self.o_proj(y), a


class ViTSelfAttention(nn.Module):
    """Hugging Face ViT's self-attention: query, key, value, attention_head_size, num_attention_heads."""

    def __init__(self, dim=8, heads=2):
        super().__init__()
        self.num_attention_heads, self.attention_head_size = heads, dim // heads
        self.num_heads = 3 * heads  # not what an hf_self module's head count is read from
        self.query, self.key, self.value = (nn.Linear(dim, dim) for _ in range(3))

    def forward(self, hidden_states, head_mask=None):
        y, a = ref_attention(self.query(hidden_states), self.key(hidden_states), self.value(hidden_states),
                             self.num_attention_heads, self.attention_head_size ** -0.5)
        return y, a


def named(cls_name, **attrs):
    """A module of class ``cls_name`` carrying ``attrs``."""
    m = type(cls_name, (nn.Module,), {})()
    for k, v in attrs.items():
        setattr(m, k, v)
    return m


def timm_attrs():
    return dict(qkv=nn.Linear(4, 12), proj=nn.Linear(4, 4), num_heads=2, q_norm=nn.Identity(), k_norm=nn.Identity(),
                scale=0.5)


def hf_attrs():
    return dict(q_proj=nn.Linear(4, 4), k_proj=nn.Linear(4, 4), v_proj=nn.Linear(4, 4), o_proj=nn.Linear(4, 4),
                head_dim=2, num_heads=2)


def self_attrs():
    return dict(query=nn.Linear(4, 4), key=nn.Linear(4, 4), value=nn.Linear(4, 4), attention_head_size=2,
                num_attention_heads=2)


def test_attention_kind_of_each_structure_and_each_missing_or_mistyped_part():
    """MultiheadAttention is torchvision; class ``Attention`` with qkv/proj Linear, int num_heads, module q/k norms and
    a float scale is timm; ``...Attention`` with q/k/v/o_proj Linear, head_dim and a head count is hf; ``...Self
    Attention`` with query/key/value Linear and int head size and count is hf_self; any one part missing or of the
    wrong type, or the wrong class name, is None."""
    assert E.attention_kind(nn.MultiheadAttention(4, 2)) == "torchvision"
    assert E.attention_kind(named("Attention", **timm_attrs())) == "timm"
    assert E.attention_kind(Attention()) == "timm"
    assert E.attention_kind(named("Attention2", **timm_attrs())) is None
    assert E.attention_kind(named("MyAttention", **timm_attrs())) is None
    wrong = dict(qkv=nn.Conv1d(4, 12, 1), proj=nn.Identity(), num_heads=2.0, q_norm=None, k_norm=None, scale=1)
    for part, bad in wrong.items():
        attrs = timm_attrs()
        assert E.attention_kind(named("Attention", **{**attrs, part: bad})) is None, part
        del attrs[part]
        assert E.attention_kind(named("Attention", **attrs)) is None, part

    assert E.attention_kind(named("LlamaAttention", **hf_attrs())) == "hf"
    assert E.attention_kind(named("AttentionX", **hf_attrs())) == "hf"
    assert E.attention_kind(TinyAttention()) == "hf"
    assert E.attention_kind(named("LlamaAttn", **hf_attrs())) is None
    for part in ("q_proj", "k_proj", "v_proj", "o_proj"):
        attrs = hf_attrs()
        assert E.attention_kind(named("LlamaAttention", **{**attrs, part: nn.Identity()})) is None, part
        del attrs[part]
        assert E.attention_kind(named("LlamaAttention", **attrs)) is None, part
    attrs = hf_attrs()
    del attrs["head_dim"]
    assert E.attention_kind(named("LlamaAttention", **attrs)) is None  # no head_dim at all
    assert E.attention_kind(named("LlamaAttention", **{**hf_attrs(), "head_dim": None, "num_heads": [2]})) is None

    assert E.attention_kind(named("ViTSelfAttention", **self_attrs())) == "hf_self"
    assert E.attention_kind(ViTSelfAttention()) == "hf_self"
    assert E.attention_kind(named("ViTAttention", **self_attrs())) is None
    wrong = dict(query=nn.Identity(), key=nn.Identity(), value=nn.Identity(), attention_head_size=2.0,
                 num_attention_heads=[2])
    for part, bad in wrong.items():
        attrs = self_attrs()
        assert E.attention_kind(named("ViTSelfAttention", **{**attrs, part: bad})) is None, part
        del attrs[part]
        assert E.attention_kind(named("ViTSelfAttention", **attrs)) is None, part
    assert E.attention_kind(nn.Linear(2, 2)) is None


FOREIGN = ("relative_position_bias", "relative_position_bias_table", "relative_position_index", "rel_pos",
           "q_bias", "v_bias", "sr", "pool", "proj_l", "proj_w", "attention_biases", "attention_bias_idxs")


def test_each_foreign_part_makes_a_module_unrecognised():
    """A timm, hf or hf_self structure carrying any of the foreign parts (relative-position bias, q/v bias, spatial
    reduction, pooling, talking heads, attention biases), even as a falsy non-None value, is not recognised; the
    same part set to None does not count. MultiheadAttention is recognised whatever it carries."""
    for name in FOREIGN:
        for cls, attrs in (("Attention", timm_attrs()), ("LlamaAttention", hf_attrs()),
                           ("ViTSelfAttention", self_attrs())):
            assert E.attention_kind(named(cls, **attrs, **{name: 0})) is None, (name, cls)
            assert E.attention_kind(named(cls, **attrs, **{name: None})) is not None, (name, cls)
        assert E.looks_like_attention(named("WindowAttention", **timm_attrs(), **{name: 0}))
    mha = nn.MultiheadAttention(4, 2)
    mha.rel_pos = torch.zeros(1)
    assert E.attention_kind(mha) == "torchvision"


def test_hf_heads_order_of_sources_and_fallback_from_head_dim():
    """The head count: module num_heads, else num_attention_heads, else config.num_attention_heads (ints only, a
    per-stage list does not count), else q_proj.out_features / head_dim when head_dim is a positive int dividing
    it; else None."""
    q = nn.Linear(4, 12)

    def ns(**kw):
        return types.SimpleNamespace(q_proj=q, **kw)

    assert E._hf_heads(ns(num_heads=3, num_attention_heads=5, config=types.SimpleNamespace(num_attention_heads=7),
                          head_dim=2)) == 3
    assert E._hf_heads(ns(num_heads=[3], num_attention_heads=5, head_dim=2)) == 5
    assert E._hf_heads(ns(num_attention_heads=5)) == 5  # no num_heads attribute at all
    assert E._hf_heads(ns(num_heads=3)) == 3  # no num_attention_heads attribute at all
    assert E._hf_heads(ns(num_heads=3.0, config=types.SimpleNamespace(num_attention_heads=7), head_dim=2)) == 7
    assert E._hf_heads(ns(config=types.SimpleNamespace(num_attention_heads=[1, 2]), head_dim=4)) == 3
    assert E._hf_heads(ns(config=types.SimpleNamespace(), head_dim=6)) == 2
    assert E._hf_heads(ns(head_dim=1)) == 12
    h = E._hf_heads(ns(head_dim=3))
    assert h == 4 and isinstance(h, int)
    assert E._hf_heads(ns(head_dim=5)) is None  # 12 % 5 != 0
    assert E._hf_heads(ns(head_dim=0)) is None
    assert E._hf_heads(ns(head_dim=-3)) is None
    assert E._hf_heads(ns(head_dim=3.0)) is None
    assert E._hf_heads(ns()) is None
    assert E._hf_heads(types.SimpleNamespace(q_proj=nn.Linear(4, 13), head_dim=2)) is None  # 13 % 2 == 1


def test_looks_like_attention_by_name_when_not_recognised():
    """Named ``...Attention...`` or ending in ``Attn`` and not recognised: a look-alike; a recognised module, a name
    with ``Attn`` elsewhere than at its end, or another name: not."""
    assert E.looks_like_attention(named("WindowAttention"))
    assert E.looks_like_attention(named("AttentionPool"))
    assert E.looks_like_attention(named("WindowAttn"))
    assert not E.looks_like_attention(named("AttnPool"))
    assert not E.looks_like_attention(named("attention"))
    assert not E.looks_like_attention(nn.Linear(2, 2))
    assert not E.looks_like_attention(Attention())
    assert not E.looks_like_attention(nn.MultiheadAttention(4, 2))
    assert not E.looks_like_attention(TinyAttention())
    assert not E.looks_like_attention(ViTSelfAttention())


def test_num_heads_per_kind():
    """torchvision and timm read num_heads, hf goes through _hf_heads (its fallbacks included), hf_self reads
    num_attention_heads (not num_heads)."""
    assert E.num_heads(nn.MultiheadAttention(8, 4), "torchvision") == 4
    assert E.num_heads(Attention(heads=2), "timm") == 2
    assert E.num_heads(named("LlamaAttention", q_proj=nn.Linear(4, 12), head_dim=4), "hf") == 3
    assert E.num_heads(TinyAttention(heads=4), "hf") == 4
    assert E.num_heads(ViTSelfAttention(heads=2), "hf_self") == 2
    assert E.num_heads(types.SimpleNamespace(num_heads=3.0), "timm") == 3


def test_split_and_merge_heads_by_their_columns():
    """_split: (B, N, C) -> (B, heads, N, C/heads) with head h holding columns h*d .. h*d+d-1; _merge is its
    inverse."""
    b, n, heads, d = 2, 3, 4, 5
    t = torch.randn(b, n, heads * d)
    s = E._split(t, heads)
    assert s.shape == (b, heads, n, d)
    for h in range(heads):
        assert torch.equal(s[:, h], t[:, :, h * d:(h + 1) * d])
    m = E._merge(s)
    assert m.shape == (b, n, heads * d) and torch.equal(m, t)
    u = torch.randn(b, heads, n, d)
    mu = E._merge(u)
    for h in range(heads):
        assert torch.equal(mu[:, :, h * d:(h + 1) * d], u[:, h])


def test_softmax_scale_rows_and_float32_upcast():
    """softmax over keys of (q * scale) k^T, rows summing to 1, computed in float32 for half inputs and returned in
    the input's dtype."""
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 6, 5)
    a = E._softmax(q, k, 0.3)
    ref = torch.zeros(2, 3, 4, 6)
    for i in range(4):
        for j in range(6):
            ref[:, :, i, j] = (q[:, :, i] * k[:, :, j]).sum(-1) * 0.3
    assert torch.allclose(a, torch.softmax(ref, -1), atol=1e-6)
    assert torch.allclose(a.sum(-1), torch.ones(2, 3, 4), atol=1e-6)
    qh, kh = (8 * q).half(), (8 * k).half()
    ah = E._softmax(qh, kh, 0.3)
    assert ah.dtype == torch.float16
    ref32 = torch.softmax((qh.float() * 0.3) @ kh.float().transpose(-2, -1), -1)
    assert torch.allclose(ah.float(), ref32, atol=1e-3)


def test_arg_positional_then_keyword():
    """_arg: the i-th positional argument when there is one, else the keyword ``name`` (None if absent)."""
    assert E._arg((1, 2), {"b": 3}, 1, "b") == 2
    assert E._arg((1,), {"b": 3}, 1, "b") == 3
    assert E._arg((), {"a": 5}, 0, "a") == 5
    assert E._arg((1,), {}, 1, "b") is None


def test_mha_eager_equals_need_weights_for_both_layouts():
    """For nn.MultiheadAttention (batch_first or sequence-first, positional or keyword query/key/value) the eager
    result is ((output, None), A) with A torch's own per-head weights and output torch's own output."""
    torch.manual_seed(0)
    for batch_first in (True, False):
        m = nn.MultiheadAttention(8, 2, batch_first=batch_first).eval()
        with torch.no_grad():
            m.in_proj_bias.uniform_(-1, 1)  # zero at initialisation: would not show whether it is used
        x = torch.randn(3, 5, 8)  # (B, N, C) or (N, B, C)
        ref_out, ref_w = m(x, x, x, need_weights=True, average_attn_weights=False)
        for args, kwargs in (((x, x, x), {}), ((), {"query": x, "key": x, "value": x}), ((x,), {"key": x, "value": x}),
                             ((x, x, x), {"need_weights": False, "is_causal": False})):
            (out, none), a = E.eager(m, "torchvision", args, kwargs)
            assert none is None
            assert out.shape == ref_out.shape and torch.allclose(out, ref_out, atol=1e-6)
            assert a.shape == (ref_w.shape[0], 2, ref_w.shape[-1], ref_w.shape[-1])
            assert torch.allclose(a, ref_w, atol=1e-6)


def test_mha_refusals_word_for_word():
    """Cross-attention, each mask, a causal call and each MultiheadAttention variant (separate key/value sizes,
    bias_k, zero attention) are refused with their own text."""
    m = nn.MultiheadAttention(8, 2, batch_first=True)
    x, y = torch.randn(1, 3, 8), torch.randn(1, 3, 8)
    cross = "a MultiheadAttention called with different query, key and value (not self-attention)"
    for args, kwargs in (((x, y, y), {}), ((x, x, y), {}), ((x, y, x), {}), ((x,), {"key": x, "value": y}),
                         ((x,), {}), ((), {"query": x, "key": x})):
        with pytest.raises(E.AttentionUnsupported) as e:
            E.eager(m, "torchvision", args, kwargs)
        assert str(e.value) == cross
    mask = torch.zeros(3, 3, dtype=torch.bool)
    for name in ("key_padding_mask", "attn_mask"):
        with pytest.raises(E.AttentionUnsupported) as e:
            E.eager(m, "torchvision", (x, x, x), {name: mask})
        assert str(e.value) == f"a MultiheadAttention called with {name}"
    variant = "a MultiheadAttention variant (separate q/k/v sizes, bias_k or zero attention)"
    cases = [(m, {"is_causal": True}), (nn.MultiheadAttention(8, 2, kdim=4, vdim=4, batch_first=True), {}),
             (nn.MultiheadAttention(8, 2, add_bias_kv=True, batch_first=True), {}),
             (nn.MultiheadAttention(8, 2, add_zero_attn=True, batch_first=True), {})]
    for mod, kwargs in cases:
        with pytest.raises(E.AttentionUnsupported) as e:
            E.eager(mod, "torchvision", (x, x, x), kwargs)
        assert str(e.value) == variant


def timm_reference(m, x):
    """The module's written-out forward and its attention."""
    out = m(x)
    return out, m.last_a


def test_timm_eager_equals_written_out_forward():
    """timm Attention: A and proj_drop(proj(...)) as the per-head loop gives them, with the module's own scale, q/k
    norms, head_dim (absent: C / heads; present: its own size), the optional output norm and sigmoid gate."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8)  # 5 tokens, 8 channels: the token count is not the channel count
    for kw in ({}, {"head_dim": 3}, {"norm": True}, {"gate": True}, {"head_dim": 3, "norm": True, "gate": True},
               {"heads": 4}):
        m = Attention(**kw).eval()
        ref_out, ref_a = timm_reference(m, x)
        for args, kwargs in (((x,), {}), ((), {"x": x}), ((x, None, False), {})):
            out, a = E.eager(m, "timm", args, kwargs)
            assert torch.allclose(out, ref_out, atol=1e-5), kw
            assert a.shape == ref_a.shape and torch.allclose(a, ref_a, atol=1e-6), kw
    m = Attention(gate=False).eval()
    m.gate = None  # a gate attribute set to None is no gate
    out, _ = E.eager(m, "timm", (x,), {})
    assert torch.allclose(out, m(x), atol=1e-5)


def test_timm_mask_refusal_and_wrapped_errors():
    """A timm Attention with a mask or is_causal (positional or keyword) is refused with its text; a call whose input
    is no (B, N, C) sequence is refused naming the class, the kind and the error."""
    m = Attention().eval()
    x = torch.randn(1, 4, 8)
    mask = torch.zeros(4, 4)
    for args, kwargs in (((x, mask), {}), ((x,), {"attn_mask": mask}), ((x, None, True), {}),
                         ((x,), {"is_causal": True})):
        with pytest.raises(E.AttentionUnsupported) as e:
            E.eager(m, "timm", args, kwargs)
        assert str(e.value) == "a timm Attention called with a mask"
    with pytest.raises(E.AttentionUnsupported) as e:
        E.eager(m, "timm", (torch.randn(1, 2, 2, 8),), {})
    assert str(e.value).startswith("Attention is not the timm attention it resembles (ValueError: ")
    assert str(e.value).endswith(")")
    with pytest.raises(E.AttentionUnsupported) as e:
        E.eager(m, "timm", (torch.randn(1, 4, 6),), {})  # qkv expects 8 channels
    assert str(e.value).startswith("Attention is not the timm attention it resembles (RuntimeError: ")
    with pytest.raises(E.AttentionUnsupported) as e:
        E.eager(named("LlamaAttention", **hf_attrs()), "hf", (), {})  # no input at all: None(...)
    assert str(e.value).startswith("LlamaAttention is not the hf attention it resembles (TypeError: ")
    with pytest.raises(E.AttentionUnsupported) as e:
        E.eager(named("ViTSelfAttention", num_attention_heads=2), "hf_self", (x,), {})
    assert str(e.value).startswith("ViTSelfAttention is not the hf_self attention it resembles (AttributeError: ")


def test_hf_eager_equals_written_out_forward():
    """Hugging Face q/k/v/o_proj attention: ((o_proj(A V), A), A) with the module's scaling, or head_dim ** -0.5
    without one; ViT self-attention: ((A V, A), A) with attention_head_size ** -0.5 and num_attention_heads heads."""
    torch.manual_seed(0)
    x = torch.randn(2, 6, 8)  # 6 tokens, head size 4 (2 heads) or 2 (4 heads)
    for m in (TinyAttention(scaling=0.9).eval(), TinyAttention().eval(), TinyAttention(heads=4).eval()):
        ref_out, ref_a = m(x)
        for args, kwargs in (((x,), {}), ((), {"hidden_states": x}), ((x,), {"head_mask": torch.ones(1)})):
            (out, a2), a = E.eager(m, "hf", args, kwargs)
            assert a2 is a
            assert torch.allclose(out, ref_out, atol=1e-5)
            assert torch.allclose(a, ref_a, atol=1e-6)
    for heads in (2, 4):
        m = ViTSelfAttention(heads=heads).eval()
        ref_out, ref_a = m(x)
        for args, kwargs in (((x,), {}), ((), {"hidden_states": x})):
            (out, a2), a = E.eager(m, "hf_self", args, kwargs)
            assert a2 is a
            assert torch.allclose(out, ref_out, atol=1e-5) and torch.allclose(a, ref_a, atol=1e-6)


def test_hf_mask_refusals():
    """hf: an attention_mask (keyword or second positional) is refused; hf_self: a head_mask (keyword or second
    positional) is refused; both with the same text."""
    x = torch.randn(1, 4, 8)
    mask = torch.zeros(1, 1, 4, 4)
    text = "a Hugging Face attention called with a mask"
    for m, kind, kwname in ((TinyAttention(), "hf", "attention_mask"), (ViTSelfAttention(), "hf_self", "head_mask")):
        for args, kwargs in (((x, mask), {}), ((x,), {kwname: mask}), ((), {"hidden_states": x, kwname: mask})):
            with pytest.raises(E.AttentionUnsupported) as e:
                E.eager(m, kind, args, kwargs)
            assert str(e.value) == text


class Obj:
    def __init__(self, t):
        self.last_hidden_state = t


def test_same_output_relative_to_the_old_scale():
    """max |new - old| / (max |old| + 1e-6) over the first tensors (tuple, list, or an output's last_hidden_state);
    inf when the old one is no tensor or the shapes differ."""
    old = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    new = old + torch.tensor([[0.0, 0.25], [-0.5, 0.0]])
    assert E.same_output(new, old) == pytest.approx(0.5 / (2 + 1e-6), rel=1e-9)
    assert E.same_output((new, None), (old, 7)) == pytest.approx(0.5 / (2 + 1e-6), rel=1e-9)
    assert E.same_output([new], [old]) == pytest.approx(0.5 / (2 + 1e-6), rel=1e-9)
    assert E.same_output((new, 1), Obj(old)) == pytest.approx(0.5 / (2 + 1e-6), rel=1e-9)
    assert E.same_output(old, old) == 0.0
    z = torch.zeros(3)
    assert E.same_output(z + 1e-7, z) == pytest.approx(0.1, rel=1e-4)  # the 1e-6 floor of the scale
    assert E.same_output(new.half(), old) == pytest.approx(0.5 / (2 + 1e-6), rel=1e-6)
    assert E.same_output(new, old.T.reshape(4, 1)) == float("inf")
    assert E.same_output((new,), (None, old)) == float("inf")
    assert E.same_output(new, {"x": old}) == float("inf")
    assert E.same_output(new, Obj(None)) == float("inf")


def test_as_output_in_the_old_container():
    """A tensor output gets the tensor (the first of a tuple); a tuple output gets the new tuple's entries with the
    old one's trailing entries, as long as the old one; anything else gets ``new`` as it is."""
    a, b, c, d, e = (torch.full((1,), float(i)) for i in range(5))
    assert E.as_output((a, b), c) is a
    assert E.as_output(a, c) is a
    lst = [a, b]
    assert E.as_output(lst, c) is lst
    out = E.as_output((a, b), (c, d, e))
    assert isinstance(out, tuple) and len(out) == 3 and out[0] is a and out[1] is b and out[2] is e
    out = E.as_output((a, b), (c,))
    assert isinstance(out, tuple) and len(out) == 1 and out[0] is a
    out = E.as_output((a, b), (c, d))
    assert len(out) == 2 and out[0] is a and out[1] is b
    assert E.as_output(lst, (c, d)) is lst
    t = (a, b)
    assert E.as_output(t, [c, d]) is t
