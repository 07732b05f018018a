"""Attention maps of vision transformers: rollout, gradient-weighted rollout, per-head maps and the ViT
paper's Fig. 7 measures (tensors in, tensors out; drawing is the section's job).

* **Attention weights.** :func:`find_attention` lists a model's global self-attention modules
  (torchvision ``nn.MultiheadAttention``, timm ``Attention`` as in ViT/DeiT, Hugging Face ViT attention);
  :func:`recorded_attention` recomputes inside a context manager, per head, ``A = softmax(Q K^T / sqrt(d))``
  from each module's own input and projections (fused attention never forms ``A``), substitutes the
  eager output (same values, checked) so that ``A`` is part of the graph, and removes its hooks in
  ``finally``. No process-wide patch, no flag of the model changed.
* **Attention rollout** (Abnar & Zuidema, ACL 2020): ``R = prod_l norm_rows(0.5 mean_h A_l + 0.5 I)``;
  the class token's row over the patch tokens says how much of each patch the class token has mixed in,
  through the residual stream, assuming attention alone moves information.
* **Gradient-weighted rollout** (Chefer, Gur & Wolf, CVPR 2021): ``R <- R + mean_h((dS/dA_l * A_l)^+) R``
  from ``R = I``; heads and positions that raise the class score ``S`` count, the others do not.
* **Position-embedding similarity** (Dosovitskiy et al., ICLR 2021, Fig. 7 centre): cosine similarity of
  each patch's learned position embedding with every other patch's.
* **Mean attention distance** (ibid., Fig. 7 right): per head, ``sum_j A_ij |p_i - p_j|`` in pixels between
  query patch ``i`` and key patch ``j`` (patch-to-patch weights renormalised per query), averaged over
  queries and images; small = local heads, large = global heads.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

from ..inspection.hooks import rewrite_outputs
from ._attention_eager import (
    AttentionUnsupported,
    Kind,
    as_output,
    attention_kind,
    eager,
    looks_like_attention,
    num_heads,
    same_output,
)

__all__ = [
    "AttentionSite", "AttentionUnsupported", "TokenLayout", "find_attention", "unrecognised_attention",
    "no_attention_reason", "probe_layout", "recorded_attention", "attention_weights",
    "attention_with_grads", "token_layout", "rollout", "gradient_rollout", "class_row", "position_embedding",
    "position_similarity", "mean_attention_distance", "top_area_mass",
]

# relative max |eager - module output| above which a recomputation counts as not reproducing the module
TOLERANCE = 1e-3


@dataclass(frozen=True)
class AttentionSite:
    """One global self-attention module, by dotted name."""

    name: str
    module: nn.Module
    kind: Kind
    heads: int


def find_attention(model: nn.Module) -> list[AttentionSite]:
    """The recognised self-attention modules of ``model`` in definition order (the forward order of standard
    ViTs); modules nested inside a recognised one are not listed."""
    sites: list[AttentionSite] = []
    for name, m in model.named_modules():
        kind = attention_kind(m)
        if kind is None or any(name.startswith(s.name + ".") for s in sites):
            continue
        sites.append(AttentionSite(name, m, kind, num_heads(m, kind)))
    return sites


def unrecognised_attention(model: nn.Module) -> list[str]:
    """Class names of the modules that look like attention but are not recognised (sorted, each once)."""
    return sorted({type(m).__name__ for m in model.modules() if looks_like_attention(m)})


def no_attention_reason(model: nn.Module) -> str:
    """Why ``model`` has no attention this code reads: what is recognised, and the look-alikes it found."""
    others = unrecognised_attention(model)
    found = (f" It has attention modules of another structure ({', '.join(others[:4])}"
             f"{', ...' if len(others) > 4 else ''}): windowed, relative-position, spatially reduced or "
             "convolutional attention, which rollout over one token sequence does not cover."
             if others else " It has no attention module (a convolutional model).")
    return ("the model has no global self-attention module reportgen recognises by its structure "
            "(torchvision nn.MultiheadAttention, timm ViT/DeiT Attention, Hugging Face ViT attention)." + found)


@dataclass(frozen=True)
class TokenLayout:
    """What one probing pass found: the attention sites, the leading extra tokens, the patch grid and the
    patch side in pixels."""

    sites: list[AttentionSite]
    prefix: int
    grid: tuple[int, int]
    patch_px: float


def probe_layout(model: nn.Module, x: torch.Tensor, prefix: int | None = None,
                 forward: nn.Module | None = None) -> TokenLayout | str:
    """One forward pass of ``forward`` (default: ``model``; e.g. the model behind its normalisation) on ``x`` (one
    image), with the sites named in ``model``: the token layout read from the attention tensors themselves, or why
    rollout does not apply (no recognised site, a recomputation that fails, sites over different token counts as
    in hierarchical or hybrid models, a token count that is no patch grid)."""
    sites = find_attention(model)
    if not sites:
        return no_attention_reason(model)
    try:
        attns, _ = attention_weights(forward if forward is not None else model, sites, x)
    except AttentionUnsupported as e:
        return str(e)
    shapes = sorted({tuple(a.shape[-2:]) for a in attns})
    if len(shapes) != 1:
        return (f"the attention modules see different token counts ({', '.join(str(s[0]) for s in shapes)}): a "
                "hierarchical or hybrid model, for which rollout over depth is not defined")
    try:
        pre, grid = token_layout(attns[0].shape[-1], (x.shape[-2], x.shape[-1]), prefix)
    except ValueError as e:
        return str(e)
    return TokenLayout(sites, pre, grid, x.shape[-2] / grid[0])


@contextlib.contextmanager
def recorded_attention(sites: list[AttentionSite]) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, every forward pass stores each site's attention ``A`` (B, heads, N, N) under its name
    (the latest call), computed eagerly from the module's input; the eager output replaces the module's own
    output (equal up to :data:`TOLERANCE`, else :class:`AttentionUnsupported`), so with autograd on ``A`` is in the
    graph of the model's output."""
    store: dict[str, torch.Tensor] = {}
    by_name = {s.name: s for s in sites}

    def fn(name, m, args, kwargs, out):
        new, a = eager(m, by_name[name].kind, args, kwargs)
        err = same_output(new, out)
        if not err <= TOLERANCE:
            raise AttentionUnsupported(f"recomputing the attention of {name} does not reproduce its output "
                                       f"(relative difference {err:.2g}): an unrecognised variant")
        store[name] = a
        return as_output(new, out)

    with rewrite_outputs({s.name: s.module for s in sites}, fn):
        yield store


def attention_weights(model: nn.Module, sites: list[AttentionSite], x: torch.Tensor) -> tuple[list[torch.Tensor],
                                                                                                torch.Tensor]:
    """One forward pass (inference mode): each site's ``A`` (B, heads, N, N), in site order, and the logits."""
    with torch.inference_mode(), recorded_attention(sites) as store:
        logits = _logits(model(x))
    return [store[s.name] for s in sites], logits


def attention_with_grads(model: nn.Module, sites: list[AttentionSite], x: torch.Tensor,
                         targets: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """One forward and one backward pass: each site's ``A`` and ``dS/dA`` with ``S`` the sum over the batch of each
    image's ``targets`` logit (images do not interact, so each image gets its own gradient), and the logits."""
    x = x.detach().clone().requires_grad_(True)  # parameters may be frozen: the graph starts at the input
    with torch.enable_grad(), recorded_attention(sites) as store:
        logits = _logits(model(x))
        score = logits.gather(1, targets.view(-1, 1).to(logits.device)).sum()
        attns = [store[s.name] for s in sites]
        grads = torch.autograd.grad(score, attns)
    return [a.detach() for a in attns], [g.detach() for g in grads], logits.detach()


def _logits(out: Any) -> torch.Tensor:
    t = out if isinstance(out, torch.Tensor) else getattr(out, "logits", out[0] if isinstance(out, tuple) else out)
    assert isinstance(t, torch.Tensor), f"model output {type(out).__name__} holds no logits tensor"
    return t


def token_layout(n_tokens: int, image_hw: tuple[int, int], prefix: int | None = None) -> tuple[int, tuple[int, int]]:
    """``(prefix tokens, (h, w) patch grid)`` of a sequence of ``n_tokens`` for an input of ``image_hw``: the fewest
    leading extra tokens (class, distillation, registers) leaving a grid of the image's aspect ratio (``prefix``
    fixes their number). ValueError if none fits."""
    H, W = image_hw
    for p in ([prefix] if prefix is not None else range(0, 9)):
        n = n_tokens - p
        if n <= 0:
            continue
        h = max(1, round(math.sqrt(n * H / W)))
        if n % h == 0 and abs(h / (n // h) - H / W) <= 0.25 * H / W and H % h == 0 and W % (n // h) == 0:
            return p, (h, n // h)
    raise ValueError(f"{n_tokens} tokens do not form a patch grid of a {H}x{W} image")


def rollout(attns: list[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """Attention rollout ``R = prod_l norm_rows(residual I + (1 - residual) mean_h A_l)``, (B, N, N)."""
    n = attns[0].shape[-1]
    if any(a.shape[-1] != n for a in attns):
        raise AttentionUnsupported(f"rollout needs one token sequence through all layers; these attention "
                                   f"modules see {sorted({a.shape[-1] for a in attns})} tokens")
    eye = torch.eye(n, dtype=torch.float64, device=attns[0].device)
    r = eye.expand(attns[0].shape[0], n, n)
    for a in attns:
        m = residual * eye + (1 - residual) * a.double().mean(1)
        r = (m / m.sum(-1, keepdim=True)) @ r
    return r.float()


def gradient_rollout(attns: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.Tensor:
    """Chefer et al. 2021: ``R <- R + mean_h((dS/dA * A)^+) R`` from ``R = I``, (B, N, N)."""
    n = attns[0].shape[-1]
    r = torch.eye(n, dtype=torch.float64, device=attns[0].device).expand(attns[0].shape[0], n, n)
    for a, g in zip(attns, grads):
        r = r + (g.double() * a.double()).clamp(min=0).mean(1) @ r
    return r.float()


def class_row(r: torch.Tensor, prefix: int) -> torch.Tensor:
    """The class token's row (token 0) over the patch tokens, (B, n_patches); without extra tokens (a
    pooled model) the mean row. For per-head maps pass (B, heads, N, N): (B, heads, n_patches)."""
    row = r[..., 0, :] if prefix > 0 else r.mean(-2)
    return row[..., prefix:]


def position_embedding(model: nn.Module, n_patches: int) -> torch.Tensor | None:
    """The learned position embedding of the patch tokens, (n_patches, C), or None when the model has none of
    that length (a parameter named ``pos_embedding``, ``pos_embed`` or ``position_embeddings``, the patch
    entries being the last ``n_patches``)."""
    for name, p in model.named_parameters():
        if name.rsplit(".", 1)[-1] in ("pos_embedding", "pos_embed", "position_embeddings") and p.dim() == 3 \
                and p.shape[0] == 1 and p.shape[1] >= n_patches:
            return p.detach()[0, p.shape[1] - n_patches:].float()
    return None


def position_similarity(pos: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every patch's position embedding with every other's, (n, n)."""
    u = pos.float() / pos.float().norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return u @ u.T


def mean_attention_distance(a: torch.Tensor, prefix: int, grid: tuple[int, int], patch_px: float) -> torch.Tensor:
    """Per image and head (B, heads): ``sum_j A_ij d(i, j)`` averaged over query patches ``i``, with ``d`` the
    pixel distance between patch centres and the patch-to-patch weights renormalised per query."""
    h, w = grid
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    pos = torch.stack([yy.flatten(), xx.flatten()], 1).double().to(a.device) * patch_px
    dist = torch.cdist(pos, pos)
    p = a[..., prefix:, prefix:].double()
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-30)
    return (p * dist).sum(-1).mean(-1).float()


def top_area_mass(m: torch.Tensor, area: float = 0.2) -> torch.Tensor:
    """Share of a non-negative map's total on its highest ``area`` fraction of cells, per row of (B, n), the
    boundary cell counted by its covered fraction: exactly ``area`` for a uniform map, 1 for a map inside that area."""
    m = m.flatten(1).double().clamp(min=0)
    k = area * m.shape[1]
    whole = int(k)
    srt = m.sort(dim=1, descending=True).values
    top = srt[:, :whole].sum(1) + (k - whole) * (srt[:, whole] if whole < m.shape[1] else 0)
    return (top / m.sum(1).clamp_min(1e-30)).float()
