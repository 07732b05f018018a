"""What a model accepts and how its layers are laid out, found once per run by a few batch-1 forward passes.

* :class:`InputSizes`: the input sides the model takes — any, a minimum (Inception v3: 75), a multiple
  (window attention), or one fixed size (ViT's position embeddings: 224) — probed by forwarding random inputs
  of a handful of sides up to the run's size (failures of any kind, assertions included, mean "rejected"); the
  minimum is then bisected. :meth:`InputSizes.fit` resizes a batch (bilinear, differentiable) to the nearest
  accepted size, so optimisation techniques can work at other sizes and still feed the model what it takes.
* :class:`ModelProbe`: the modules that run in eval mode (auxiliary heads do not), in the order they return,
  with their output :class:`~reportgen.inspection.layout.Layout`; :meth:`ModelProbe.default_block` is the
  last block that still has spatial structure (never the stem or the patch embedding).

The run's probe is ``RunContext.probe()`` (computed on first use, kept on the context).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .hooks import eval_mode, hookable, kept_attributes, ordinary_buffers, record_layouts
from .layout import Layout

SizeKind = Literal["any", "minimum", "multiple", "fixed"]


@dataclass(frozen=True)
class InputSizes:
    """The square input sides a model accepts (found by probing up to ``size``, the run's input side)."""

    size: int
    kind: SizeKind = "any"
    minimum: int = 1
    multiple: int = 1
    tried: tuple[tuple[int, bool], ...] = ()

    def fit_side(self, s: int) -> int:
        """The accepted side closest to ``s`` from above (the run's size for a fixed-size model)."""
        if self.kind == "fixed":
            return self.size
        s = max(int(s), self.minimum)
        if self.kind == "multiple":
            s = max(self.minimum, int(math.ceil(s / self.multiple)) * self.multiple)
        return s

    def accepts(self, s: int) -> bool:
        return self.fit_side(s) == s

    def fit(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B x C x H x W) resized bilinearly to an accepted size; ``x`` itself when it fits."""
        h, w = int(x.shape[-2]), int(x.shape[-1])
        th, tw = self.fit_side(h), self.fit_side(w)
        if (th, tw) == (h, w):
            return x
        return F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False)

    def describe(self) -> str:
        if self.kind == "any":
            return "any input size (of those tried)"
        if self.kind == "minimum":
            return f"inputs of at least {self.minimum}x{self.minimum} px"
        if self.kind == "multiple":
            return f"inputs whose side is a multiple of {self.multiple} px (at least {self.minimum})"
        return f"only {self.size}x{self.size} px inputs"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "minimum": self.minimum, "multiple": self.multiple, "size": self.size,
                "tried": {str(s): ok for s, ok in self.tried}}


def _runs(model: nn.Module, side: int, channels: int, device: torch.device) -> bool:
    x = torch.rand(1, channels, side, side, generator=torch.Generator().manual_seed(side)).to(device)
    try:
        with torch.inference_mode(), kept_attributes(model):
            model(x)
    except Exception:  # noqa: BLE001 - assertions, shape errors, padding errors: all mean "not this size"
        return False
    finally:
        ordinary_buffers(model)  # a cache the model built in that pass must not stay an inference tensor
    return True


def probe_sizes(model: nn.Module, size: int, channels: int = 3, device: torch.device | None = None) -> InputSizes:
    """Probe ``model`` (pixel space in, logits out) at a few sides up to ``size``; see :class:`InputSizes`."""
    device = device or torch.device("cpu")
    size = int(size)
    cands = sorted({s for s in (size - 1, size * 3 // 4, size // 2, size // 4, 32, 64, 96, 128, 160)
                    if 8 <= s < size} | {size, size + max(1, size // 4)}, reverse=True)
    with eval_mode(model):
        tried = {s: _runs(model, s, channels, device) for s in cands}
        if not tried[size]:
            return InputSizes(size, "any", tried=tuple(sorted(tried.items())))
        ok = sorted(s for s, v in tried.items() if v)
        bad = sorted(s for s, v in tried.items() if not v)
        if not bad:
            return InputSizes(size, "any", tried=tuple(sorted(tried.items())))
        # a minimum (a larger side works too): bisect between the largest rejected and the smallest accepted side
        if max(bad) < min(ok):
            lo, hi = max(bad), min(ok)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                tried[mid] = _runs(model, mid, channels, device)
                lo, hi = (lo, mid) if tried[mid] else (mid, hi)
            return InputSizes(size, "minimum", minimum=hi, tried=tuple(sorted(tried.items())))
        if ok == [size]:
            return InputSizes(size, "fixed", minimum=size, multiple=size, tried=tuple(sorted(tried.items())))
        g = 0
        for s in ok:
            g = math.gcd(g, s)
        if all(v == (s % g == 0 and s >= min(ok)) for s, v in tried.items()):
            return InputSizes(size, "multiple", minimum=min(ok), multiple=g, tried=tuple(sorted(tried.items())))
        return InputSizes(size, "fixed", minimum=size, multiple=size, tried=tuple(sorted(tried.items())))


@dataclass(frozen=True)
class LayerRecord:
    name: str
    type: str
    layout: Layout
    leaf: bool


_NORM_NAMES = ("LayerNorm", "RMSNorm")


def _is_final_norm(m: nn.Module) -> bool:
    return isinstance(m, nn.LayerNorm) or any(n in type(m).__name__ for n in _NORM_NAMES)


@dataclass
class ModelProbe:
    """Eval-mode modules in the order they return, with their output layouts, and the accepted input sizes."""

    sizes: InputSizes
    records: list[LayerRecord] = field(default_factory=list)
    first_conv: str | None = None
    modules: dict[str, nn.Module] = field(default_factory=dict, repr=False)

    @property
    def called(self) -> set[str]:
        """Modules that run in eval mode (an auxiliary head that runs only in training is not among them)."""
        return {r.name for r in self.records}

    def layout(self, name: str) -> Layout | None:
        for r in self.records:
            if r.name == name:
                return r.layout
        return None

    def stem(self) -> set[str]:
        """The first convolution and the modules around it that hold no other convolution and no other block (a
        patch embedding, a 4x4 stem): never a default layer."""
        if self.first_conv is None:
            return set()
        out = {self.first_conv}
        parts = self.first_conv.split(".")
        chain = {".".join(parts[:k]) for k in range(1, len(parts) + 1)}
        spatial_blocks = [r.name for r in self.records if not r.leaf and r.layout.spatial]
        for anc in sorted(chain - {self.first_conv}, key=len, reverse=True):
            m = self.modules.get(anc)
            if m is None or sum(isinstance(d, nn.Conv2d) for d in m.modules()) != 1:
                break
            if any(b.startswith(anc + ".") and b not in chain for b in spatial_blocks):
                break
            out.add(anc)
        return out

    def default_block(self) -> str | None:
        """The last block that still has spatial structure: the last non-leaf module (in the order modules return)
        with a grid output of more than one cell, outside the stem; a block that only wraps a final LayerNorm
        (``encoder`` = last block + ``ln``) yields to the block before; for token / channels-last layouts the
        stage is narrowed to its last repeated block (``blocks`` -> ``blocks.11``)."""
        stem = self.stem()
        recs = [r for r in self.records if r.layout.spatial and r.name not in stem]
        if not recs:
            return None
        order = [r.name for r in self.records]
        pos = {n: i for i, n in enumerate(order)}
        pool = [r for r in recs if not r.leaf] or recs
        best = None
        for r in reversed(pool):
            i = pos[r.name]
            prev = order[i - 1] if i > 0 else None
            if (not r.leaf and prev is not None and prev.startswith(r.name + ".")
                    and _is_final_norm(self.modules[prev]) and r.layout.kind != "nchw"):
                continue
            best = r
            break
        if best is None:
            best = pool[-1]
        if best.layout.kind == "nchw":
            return best.name
        name = best.name
        while True:
            i = pos[name]
            prev = order[i - 1] if i > 0 else None
            if prev is None or not prev.startswith(name + "."):
                break
            child = self.modules[prev]
            parent = self.modules.get(prev.rsplit(".", 1)[0])
            lay = self.layout(prev)
            siblings = [c for c in parent.children()] if parent is not None else []
            same = sum(type(c) is type(child) for c in siblings)
            if (not list(child.children()) or lay is None or not lay.spatial or same < 2):
                break
            name = prev
        return name

    def default_layer(self, last_conv: str | None) -> str | None:
        """The last convolution when it sits in the network's last stage (a CNN), else :meth:`default_block`
        (transformers: the last conv is the patch embedding; hybrids: blocks without convolutions follow it)."""
        block = self.default_block()
        if last_conv is None or last_conv not in self.called or last_conv in self.stem():
            return block
        order = [r.name for r in self.records]
        after = order[order.index(last_conv) + 1:]
        for n in after:
            r = next(rr for rr in self.records if rr.name == n)
            if (not r.leaf and r.layout.spatial and not last_conv.startswith(n + ".")
                    and any(True for _ in self.modules[n].parameters())):
                return block or last_conv
        return last_conv


def trace_layouts(model: nn.Module, example: torch.Tensor, root: nn.Module | None = None,
                  sizes: InputSizes | None = None) -> ModelProbe:
    """Record the layout of every module of ``root`` (default ``model``, by its dotted names) in one eval-mode
    forward of ``model`` on ``example[:1]``."""
    root = root if root is not None else model
    mods = {n: m for n, m in root.named_modules() if n}
    grid = (int(example.shape[-2]), int(example.shape[-1]))
    if not hookable(root):  # TorchScript: no hooks, no layouts
        return ModelProbe(sizes or InputSizes(grid[0]), [], None, mods)
    with eval_mode(model), torch.inference_mode(), record_layouts(mods, grid) as store:
        try:
            model(example[:1])
        except Exception:  # noqa: BLE001 - a model that fails here fails in every section; say so there
            pass
    records = [LayerRecord(n, type(mods[n]).__name__, lay, not list(mods[n].children())) for n, lay in store.items()]
    convs = [n for n in store if isinstance(mods[n], nn.Conv2d)]  # execution order
    return ModelProbe(sizes or InputSizes(grid[0]), records, convs[0] if convs else None, mods)


def probe_model(pixel_model: nn.Module, root: nn.Module, size: int, channels: int = 3,
                device: torch.device | None = None) -> ModelProbe:
    """Probe input sizes on ``pixel_model`` and record the layouts of ``root``'s modules (its dotted names) in
    one eval-mode forward at ``size``."""
    device = device or torch.device("cpu")
    sizes = probe_sizes(pixel_model, size, channels, device)
    x = torch.rand(1, channels, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    return trace_layouts(pixel_model, x, root, sizes)


__all__ = ["InputSizes", "LayerRecord", "ModelProbe", "probe_model", "probe_sizes", "trace_layouts"]
