"""Eager (unfused) re-computation of the attention modules reportgen recognises.

Fused attention (``F.scaled_dot_product_attention``, timm's ``fused_attn``, torchvision's
``need_weights=False``, Hugging Face's ``sdpa``) never forms the attention matrix. Each function below
takes the module and the input it was called with and recomputes, from the module's own projections,
``A = softmax(Q K^T / sqrt(d))`` per head and the module's output ``proj(A V)`` in the same output
structure, so :mod:`reportgen.attribution.attention` can put ``A`` into the forward graph (gradients
w.r.t. ``A`` for gradient-weighted rollout) and check that the recomputation reproduces the module's
own output. A call this code cannot reproduce (a mask, cross-attention, an unknown variant) raises
:class:`AttentionUnsupported`.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

Kind = Literal["torchvision", "timm", "hf", "hf_self"]


class AttentionUnsupported(Exception):
    """The attention module was called in a way the eager recomputation does not reproduce."""


# parts of an attention module that the eager recomputation does not reproduce (relative-position biases of
# windowed attention, separate q/v biases, spatial reduction, talking heads, pooled keys)
_FOREIGN = ("relative_position_bias", "relative_position_bias_table", "relative_position_index", "rel_pos",
            "q_bias", "v_bias", "sr", "pool", "proj_l", "proj_w", "attention_biases", "attention_bias_idxs")


def attention_kind(m: nn.Module) -> Kind | None:
    """Which recognised global self-attention ``m`` is, by its actual structure (None: not one). A module that
    carries anything in :data:`_FOREIGN` is not recognised, whatever its class is called."""
    if isinstance(m, nn.MultiheadAttention):
        return "torchvision"
    if any(getattr(m, a, None) is not None for a in _FOREIGN):
        return None
    name = type(m).__name__
    if (name == "Attention" and isinstance(getattr(m, "qkv", None), nn.Linear)
            and isinstance(getattr(m, "proj", None), nn.Linear) and isinstance(getattr(m, "num_heads", None), int)
            and isinstance(getattr(m, "q_norm", None), nn.Module) and isinstance(getattr(m, "k_norm", None), nn.Module)
            and isinstance(getattr(m, "scale", None), float)):
        return "timm"
    if all(isinstance(getattr(m, a, None), nn.Linear) for a in ("q_proj", "k_proj", "v_proj", "o_proj")) \
            and hasattr(m, "head_dim") and "Attention" in name and _hf_heads(m) is not None:
        return "hf"
    if all(isinstance(getattr(m, a, None), nn.Linear) for a in ("query", "key", "value")) \
            and isinstance(getattr(m, "attention_head_size", None), int) and "SelfAttention" in name \
            and isinstance(getattr(m, "num_attention_heads", None), int):
        return "hf_self"
    return None


def _hf_heads(m: Any) -> int | None:
    """The head count of a Hugging Face attention module from the module itself (a model config may hold one
    count per stage, as Swin's does), else from its projection and head size; None when neither is an int."""
    for v in (getattr(m, "num_heads", None), getattr(m, "num_attention_heads", None)):
        if isinstance(v, int):
            return v
    cfg = getattr(getattr(m, "config", None), "num_attention_heads", None)
    if isinstance(cfg, int):
        return cfg
    hd = getattr(m, "head_dim", None)
    if isinstance(hd, int) and hd > 0 and m.q_proj.out_features % hd == 0:
        return m.q_proj.out_features // hd
    return None


def looks_like_attention(m: nn.Module) -> bool:
    """A module named like attention (``...Attention``, ``...Attn``) that :func:`attention_kind` does not
    recognise: listed in the reason a section gives for not running."""
    name = type(m).__name__
    return ("Attention" in name or name.endswith("Attn")) and attention_kind(m) is None


def num_heads(m: Any, kind: Kind) -> int:  # duck-typed: timm / Hugging Face modules
    if kind == "hf":
        heads = _hf_heads(m)
        assert heads is not None  # attention_kind checked it
        return heads
    return int(m.num_heads if kind in ("torchvision", "timm") else m.num_attention_heads)


def _split(t: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, c = t.shape
    return t.reshape(b, n, heads, c // heads).transpose(1, 2)  # (B, heads, N, d)


def _merge(t: torch.Tensor) -> torch.Tensor:
    b, h, n, d = t.shape
    return t.transpose(1, 2).reshape(b, n, h * d)


def _softmax(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    return torch.softmax((q.float() * scale) @ k.float().transpose(-2, -1), dim=-1).to(q.dtype)


def _arg(args: tuple, kwargs: dict, i: int, name: str) -> Any:
    return args[i] if len(args) > i else kwargs.get(name)


def eager(m: nn.Module, kind: Kind, args: tuple, kwargs: dict) -> tuple[Any, torch.Tensor]:
    """``(output shaped as the module's own, A (B, heads, N, N))`` for one call of ``m``; a call whose inputs do not
    have the recognised structure (a 4-D token grid, a missing field) raises :class:`AttentionUnsupported`."""
    try:
        if isinstance(m, nn.MultiheadAttention):  # kind == "torchvision"
            return _mha(m, args, kwargs)
        if kind == "timm":
            return _timm(m, args, kwargs)
        return _hf(m, kind, args, kwargs)
    except (AttributeError, TypeError, ValueError, RuntimeError, IndexError) as e:
        raise AttentionUnsupported(f"{type(m).__name__} is not the {kind} attention it resembles "
                                   f"({type(e).__name__}: {e})") from e


def _mha(m: nn.MultiheadAttention, args: tuple, kwargs: dict):
    q_in, k_in, v_in = (_arg(args, kwargs, i, n) for i, n in enumerate(("query", "key", "value")))
    if not (q_in is k_in is v_in):
        raise AttentionUnsupported(
            "a MultiheadAttention called with different query, key and value (not self-attention)")
    for name in ("key_padding_mask", "attn_mask"):
        if kwargs.get(name) is not None:
            raise AttentionUnsupported(f"a MultiheadAttention called with {name}")
    if kwargs.get("is_causal") or not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn:
        raise AttentionUnsupported("a MultiheadAttention variant (separate q/k/v sizes, bias_k or zero attention)")
    x = q_in if m.batch_first else q_in.transpose(0, 1)
    qkv = F.linear(x, m.in_proj_weight, m.in_proj_bias)
    q, k, v = (_split(t, m.num_heads) for t in qkv.chunk(3, dim=-1))
    a = _softmax(q, k, q.shape[-1] ** -0.5)
    out = m.out_proj(_merge(a @ v))
    out = out if m.batch_first else out.transpose(0, 1)
    return (out, None), a


def _timm(m: Any, args: tuple, kwargs: dict):  # duck-typed timm Attention
    x = _arg(args, kwargs, 0, "x")
    if _arg(args, kwargs, 1, "attn_mask") is not None or _arg(args, kwargs, 2, "is_causal"):
        raise AttentionUnsupported("a timm Attention called with a mask")
    b, n, _ = x.shape
    heads = int(m.num_heads)
    head_dim = int(getattr(m, "head_dim", x.shape[-1] // heads))
    qkv = m.qkv(x).reshape(b, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = m.q_norm(q), m.k_norm(k)
    a = _softmax(q, k, float(m.scale))
    y = m.norm(_merge(a @ v)) if hasattr(m, "norm") else _merge(a @ v)
    gate = getattr(m, "gate", None)
    if gate is not None:
        y = y * gate(x).sigmoid()
    return m.proj_drop(m.proj(y)), a


def _hf(m: Any, kind: Kind, args: tuple, kwargs: dict):  # duck-typed Hugging Face attention
    x = _arg(args, kwargs, 0, "hidden_states")
    if _arg(args, kwargs, 1, "attention_mask" if kind == "hf" else "head_mask") is not None:
        raise AttentionUnsupported("a Hugging Face attention called with a mask")
    heads = num_heads(m, kind)
    if kind == "hf":
        q, k, v = (_split(p(x), heads) for p in (m.q_proj, m.k_proj, m.v_proj))
        a = _softmax(q, k, float(getattr(m, "scaling", q.shape[-1] ** -0.5)))
        return (m.o_proj(_merge(a @ v)), a), a
    q, k, v = (_split(p(x), heads) for p in (m.query, m.key, m.value))
    a = _softmax(q, k, q.shape[-1] ** -0.5)
    return (_merge(a @ v), a), a


def same_output(new: Any, old: Any) -> float:
    """Largest |difference| between the first tensors of two module outputs, relative to the old one's scale."""
    t_new = new[0] if isinstance(new, (tuple, list)) else new
    t_old = old[0] if isinstance(old, (tuple, list)) else getattr(old, "last_hidden_state", old)
    if not isinstance(t_old, torch.Tensor) or t_old.shape != t_new.shape:
        return float("inf")
    scale = float(t_old.detach().abs().max()) + 1e-6
    return float((t_new.detach().float() - t_old.detach().float()).abs().max()) / scale


def as_output(new: Any, old: Any) -> Any:
    """``new`` in the container type of the module's own output ``old`` (a tensor, tuple or list)."""
    if isinstance(old, torch.Tensor):
        return new[0] if isinstance(new, tuple) else new
    if isinstance(old, tuple) and isinstance(new, tuple):
        return tuple(new[: len(old)]) + tuple(old[len(new):])
    return new
