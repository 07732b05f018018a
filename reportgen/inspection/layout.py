"""The layout of a layer's output, and its one grid view ``(B, C, h, w)``.

Layers come in several shapes: convolutional feature maps ``(B, C, H, W)``; channels-last maps ``(B, H, W, C)``
(Swin and ConvNeXt blocks, timm's ``Linear`` over NHWC tensors); token sequences ``(B, N, C)`` whose last
``h*w`` tokens are the patch grid and whose first ``N - h*w`` are class / distillation / register tokens
(ViT, DeiT); and modules that return tuples or model-output objects (Hugging Face ``BaseModelOutput``).
:func:`first_tensor` finds the tensor in any of those, :func:`detect` names its layout from its shape, the
module and the input grid ``(H, W)``, and :func:`to_grid` / :func:`split` give the grid view (extra tokens kept
apart). The conversion is a permute / reshape, so gradients flow through it.

Detection rule: a spatial grid ``(h, w)`` must have the input's aspect ratio (within one cell) and be no finer
than the input; a 4-D tensor is channels-first when its last two dimensions form such a grid, channels-last
when its middle two do (ties go to channels-last for ``Linear`` / ``LayerNorm`` modules, which act on the last
dimension); a 3-D tensor is a token sequence when, after at most :data:`MAX_EXTRA_TOKENS` leading tokens, the
rest form such a grid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

Kind = Literal["nchw", "nhwc", "tokens", "vector", "other"]

#: class + distillation + up to 8 register tokens
MAX_EXTRA_TOKENS = 10


def first_tensor(out: Any) -> Any:
    """The tensor a module returned: itself, the first tensor of a tuple / list, or of a mapping / model-output
    object (``last_hidden_state`` first, then ``logits``, then the first tensor value). ``out`` when none."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        for v in out:
            if isinstance(v, torch.Tensor):
                return v
        return out
    if isinstance(out, Mapping) or hasattr(out, "last_hidden_state"):
        for key in ("last_hidden_state", "logits"):
            v = out.get(key) if isinstance(out, Mapping) else getattr(out, key, None)
            if isinstance(v, torch.Tensor):
                return v
        if isinstance(out, Mapping):
            for v in out.values():
                if isinstance(v, torch.Tensor):
                    return v
    return out


@dataclass(frozen=True)
class Layout:
    """How a layer's output holds its spatial grid."""

    kind: Kind
    grid: tuple[int, int] = (1, 1)  # (h, w) of the spatial grid (vector/other: (1, 1))
    channels: int = 0
    extra: int = 0  # leading non-patch tokens (class, distillation, registers)

    @property
    def spatial(self) -> bool:
        """Has a grid of more than one cell."""
        return self.kind in ("nchw", "nhwc", "tokens") and self.grid[0] * self.grid[1] > 1

    def describe(self) -> str:
        h, w = self.grid
        if self.kind == "nchw":
            return f"channels-first (B, C={self.channels}, H={h}, W={w})"
        if self.kind == "nhwc":
            return f"channels-last (B, H={h}, W={w}, C={self.channels}), shown as (B, C, H, W)"
        if self.kind == "tokens":
            extra = (f"{self.extra} leading token{'s' if self.extra != 1 else ''} (class / distillation / register) "
                     "kept apart, " if self.extra else "")
            return (f"token sequence (B, N={self.extra + h * w}, C={self.channels}): {extra}"
                    f"the {h}x{w} patch tokens shown as (B, C, {h}, {w})")
        if self.kind == "vector":
            return f"vector (B, {self.channels})"
        return "not a spatial layout"

    def short(self) -> str:
        """'NCHW 14x14', 'NHWC 7x7', 'tokens 1+14x14', 'vector', 'other'."""
        h, w = self.grid
        if self.kind == "tokens":
            return f"tokens {self.extra}+{h}x{w}" if self.extra else f"tokens {h}x{w}"
        if self.kind in ("nchw", "nhwc"):
            return f"{self.kind.upper()} {h}x{w}"
        return self.kind


def _grid_like(h: int, w: int, size: tuple[int, int]) -> bool:
    H, W = size
    if h < 1 or w < 1 or h > H or w > W:
        return False
    return abs(h * W - w * H) <= max(H, W)  # the input's aspect ratio, within one cell


def _channels_last_module(module: nn.Module | None) -> bool:
    if module is None:
        return False
    if isinstance(module, (nn.Linear, nn.LayerNorm)):
        return True
    name = type(module).__name__
    return "LayerNorm" in name and "2d" not in name.lower()


def _token_grid(n: int, size: tuple[int, int]) -> tuple[int, int] | None:
    H, W = size
    if n < 1:
        return None
    h = max(1, round(math.sqrt(n * H / W)))
    for hh in (h, h - 1, h + 1):
        if hh >= 1 and n % hh == 0 and _grid_like(hh, n // hh, size):
            return hh, n // hh
    return None


def detect(t: Any, size: tuple[int, int], module: nn.Module | None = None, batch: int | None = None) -> Layout:
    """The layout of output ``t`` (a tensor, or anything :func:`first_tensor` takes) for an input of ``size``
    ``(H, W)``; ``batch`` (when known) must be its first dimension."""
    t = first_tensor(t)
    if not isinstance(t, torch.Tensor) or t.dim() < 2 or (batch is not None and t.shape[0] != batch):
        return Layout("other")
    shape = tuple(int(s) for s in t.shape)
    if t.dim() == 2:
        return Layout("vector", channels=shape[1])
    if t.dim() == 4:
        _, a, b, c = shape
        first, last = _grid_like(b, c, size), _grid_like(a, b, size)
        if first and last:  # ambiguous (C equal to a grid side): the module decides
            first = not _channels_last_module(module)
        if first:
            return Layout("nchw", (b, c), a)
        if last:
            return Layout("nhwc", (a, b), c)
        return Layout("other")
    if t.dim() == 3:
        _, n, c = shape
        for e in range(min(MAX_EXTRA_TOKENS, n - 1) + 1):
            g = _token_grid(n - e, size)
            if g is not None and g[0] * g[1] > 1:
                return Layout("tokens", g, c, e)
        return Layout("other")
    return Layout("other")


def split(t: Any, layout: Layout) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(grid view (B, C, h, w), extra tokens (B, e, C) or None) of output ``t`` in ``layout``."""
    t = first_tensor(t)
    if layout.kind == "nchw":
        return t, None
    if layout.kind == "nhwc":
        return t.permute(0, 3, 1, 2), None
    if layout.kind == "tokens":
        h, w = layout.grid
        e = layout.extra
        grid = t[:, e:].transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w)
        return grid, (t[:, :e] if e else None)
    return t, None


def to_grid(t: Any, layout: Layout) -> torch.Tensor:
    """The grid view (B, C, h, w) of ``t`` (unchanged for vectors and other layouts)."""
    return split(t, layout)[0]


def grid_view(t: Any, size: tuple[int, int], module: nn.Module | None = None) -> tuple[torch.Tensor, Layout]:
    """(grid view, layout) in one call."""
    lay = detect(t, size, module)
    return to_grid(t, lay), lay


__all__ = ["MAX_EXTRA_TOKENS", "Layout", "detect", "first_tensor", "grid_view", "split", "to_grid"]
