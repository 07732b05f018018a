"""Layers by dotted name, resolved through ``named_modules()`` (never by integer index)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import LayerError
from .hooks import eval_mode
from .layout import detect, first_tensor


def layer_names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_modules() if n]


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (e.g. ``"features.12.conv.0"``), or a LayerError listing close names."""
    if isinstance(model, torch.jit.ScriptModule):
        what = "layers" if name.startswith("<") else f"layer {name!r}"
        raise LayerError(
            f"cannot inspect {what}: TorchScript archives do not allow hooks, so layer-level sections "
            "cannot run on them. Pass the model as path/to/file.py:factory (with --weights) or as a "
            "torch.export .pt2 archive to get every section."
        )
    modules = dict(model.named_modules())
    if name in modules and name:
        return modules[name]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    if not close:
        # prefix matches help with a truncated path such as "layer4"
        close = [n for n in names if n.startswith(name.rsplit(".", 1)[0])][:5]
    msg = f"no layer named {name!r} in {type(model).__name__}."
    if close:
        msg += " Close names: " + ", ".join(close) + "."
    msg += " Run `reportgen layers --model ...` to list every layer."
    raise LayerError(msg)


def find_layers(model: nn.Module, kind: type[nn.Module] | tuple[type[nn.Module], ...]) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if n and isinstance(m, kind)]


def first_conv(model: nn.Module) -> str | None:
    convs = find_layers(model, nn.Conv2d)
    return convs[0][0] if convs else None


def last_conv(model: nn.Module) -> str | None:
    convs = find_layers(model, nn.Conv2d)
    return convs[-1][0] if convs else None


def conv_layers(model: nn.Module) -> list[str]:
    return [n for n, _ in find_layers(model, nn.Conv2d)]


def attention_types(model: nn.Module) -> list[str]:
    """Sorted class names of the attention modules in ``model``: ``nn.MultiheadAttention`` and any module whose
    class name contains "Attention" (timm, Hugging Face, Swin's ShiftedWindowAttention, MaxViT's)."""
    return sorted({type(m).__name__ for m in model.modules()
                   if isinstance(m, nn.MultiheadAttention) or "Attention" in type(m).__name__})


def classifier_layer(model: nn.Module) -> str | None:
    """The last ``nn.Linear`` (its input is the penultimate feature vector), if any."""
    lin = find_layers(model, nn.Linear)
    return lin[-1][0] if lin else None


@dataclass
class LayerInfo:
    name: str
    type: str
    output_shape: tuple[int, ...] | None  # without the batch dimension
    params: int  # parameters owned directly (not by children)
    is_leaf: bool
    layout: str = "-"  # output layout (:meth:`reportgen.inspection.layout.Layout.short`): NCHW 7x7, tokens 1+14x14


def describe_layers(model: nn.Module, example: torch.Tensor | None = None) -> list[LayerInfo]:
    """Every named module with its type, direct parameter count and (given an example batch) output shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    layouts: dict[str, str] = {}
    handles = []
    if example is not None:
        grid = (int(example.shape[-2]), int(example.shape[-1]))

        def make(name):
            def hook(m, _i, out):
                t = first_tensor(out)
                if isinstance(t, torch.Tensor):
                    shapes[name] = tuple(t.shape[1:])
                    layouts[name] = detect(t, grid, m).short()

            return hook

        try:
            for n, m in model.named_modules():
                if n:
                    handles.append(m.register_forward_hook(make(n)))
            with eval_mode(model), torch.inference_mode():
                model(example)
        finally:
            for h in handles:
                h.remove()
    out = []
    for n, m in model.named_modules():
        if not n:
            continue
        own = sum(p.numel() for p in m.parameters(recurse=False))
        out.append(
            LayerInfo(
                name=n,
                type=type(m).__name__,
                output_shape=shapes.get(n),
                params=own,
                is_leaf=len(list(m.children())) == 0,
                layout=layouts.get(n, "-"),
            )
        )
    return out


ACTIVATION_TYPES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Mish, nn.PReLU)


def activation_after(model: nn.Module, name: str, window: int = 3) -> str | None:
    """The activation module that directly follows layer ``name`` (within ``window`` leaf modules), if any.

    Registration order is a heuristic for execution order; it holds for Sequential-style blocks
    (conv -> norm -> ReLU), which is where it is used: showing post-activation maps by default.
    """
    leaves = _leaves(model)
    names = [n for n, _ in leaves]
    if name not in names:
        return None
    k = names.index(name)
    for n, m in leaves[k + 1:k + 1 + window]:
        if isinstance(m, ACTIVATION_TYPES):
            return n
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            return None
    return None


def leaf_before(model: nn.Module, name: str) -> str | None:
    """The leaf module registered just before leaf ``name`` (for a conv -> norm -> activation block: the input of
    the activation), or None."""
    names = [n for n, _ in _leaves(model)]
    k = names.index(name) if name in names else 0
    return names[k - 1] if k > 0 else None


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(dotted name, module) of every leaf module, in registration order."""
    return [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
