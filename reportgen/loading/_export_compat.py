"""Surgery on ``torch.export.unflatten`` output (the most torch-version-fragile code, kept alone).

* :func:`make_deepcopyable` lets ``copy.deepcopy`` copy an unflattened program (its input
  placeholders hold FakeTensors that cannot be copied);
* :func:`retype_exported_layers` gives leaf ``InterpreterModule`` layers back their Conv2d / Linear /
  ReLU class so layer detection works.

Checked with torch 2.14; tests/test_models.py exercises both on a small exported model.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def _exported_deepcopy(self: nn.Module, memo: dict) -> nn.Module:
    """deepcopy for an unflattened program: share the input-placeholder nodes (their metadata holds
    FakeTensors, which cannot be copied; they are only read to check input shapes)."""
    for node in getattr(self, "input_placeholders", None) or ():
        memo.setdefault(id(node), node)
    cls = type(self)
    new = cls.__new__(cls)
    memo[id(self)] = new
    new.__setstate__(copy.deepcopy(self.__dict__, memo))
    return new


def make_deepcopyable(model: nn.Module) -> None:
    base = type(model)
    cls = type("ExportedModule", (base,), {"__deepcopy__": _exported_deepcopy, "__module__": __name__})
    model.__class__ = cls


def _op_args(node: Any) -> dict[str, Any]:
    schema = node.target._schema
    out: dict[str, Any] = {}
    for i, arg in enumerate(schema.arguments):
        if i < len(node.args):
            out[arg.name] = node.args[i]
        elif arg.name in node.kwargs:
            out[arg.name] = node.kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
    return out


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        v = [int(x) for x in v]
        return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])
    return (int(v), int(v))


def _is_attr(node: Any, name: str) -> bool:
    return getattr(node, "op", None) == "get_attr" and node.target == name


def _conv_attrs(mod: nn.Module, a: dict[str, Any]) -> dict[str, Any] | None:
    w = getattr(mod, "weight", None)
    if not isinstance(w, torch.Tensor) or w.dim() != 4 or not _is_attr(a.get("weight"), "weight"):
        return None
    if a.get("transposed"):
        return None
    if a.get("bias") is not None and not _is_attr(a["bias"], "bias"):
        return None
    groups = int(a.get("groups", 1))
    pad = a.get("padding", 0)
    return dict(in_channels=int(w.shape[1]) * groups, out_channels=int(w.shape[0]), kernel_size=tuple(w.shape[2:]),
                stride=_pair(a.get("stride", 1)), padding=pad if isinstance(pad, str) else _pair(pad),
                dilation=_pair(a.get("dilation", 1)), groups=groups, transposed=False, output_padding=(0, 0),
                padding_mode="zeros")


def _linear_attrs(mod: nn.Module, a: dict[str, Any]) -> dict[str, Any] | None:
    w = getattr(mod, "weight", None)
    if not isinstance(w, torch.Tensor) or w.dim() != 2 or not _is_attr(a.get("weight"), "weight"):
        return None
    if a.get("bias") is not None and not _is_attr(a["bias"], "bias"):
        return None
    return dict(in_features=int(w.shape[1]), out_features=int(w.shape[0]))


def retype_exported_layers(model: nn.Module, ep: Any) -> int:
    """Give leaf layers of an unflattened program their original class (Conv2d, Linear, ReLU).

    ``unflatten`` makes every submodule a generic ``InterpreterModule``, so ``isinstance(m, nn.Conv2d)``
    (how reportgen finds conv layers) fails. A leaf whose export metadata says it was a plain
    ``nn.Conv2d`` / ``nn.Linear`` / ``nn.ReLU`` and whose graph is exactly that one op gets a class
    deriving from both (forward still runs the exported graph) plus the usual attributes
    (``out_channels``, ``kernel_size``, ``stride`` ...). Anything else is left alone. Returns the count.
    """
    types: dict[str, str] = {}
    for n in ep.graph.nodes:
        for fqn, t in (n.meta.get("nn_module_stack") or {}).values():
            types[fqn] = t if isinstance(t, str) else f"{t.__module__}.{t.__qualname__}"
    table = {
        "torch.nn.modules.conv.Conv2d": (nn.Conv2d, ("aten.conv2d.default", "aten.conv2d.padding",
                                                     "aten.convolution.default"), _conv_attrs),
        "torch.nn.modules.linear.Linear": (nn.Linear, ("aten.linear.default",), _linear_attrs),
        "torch.nn.modules.activation.ReLU": (nn.ReLU, ("aten.relu.default", "aten.relu_.default"),
                                             lambda m, a: {"inplace": False}),
    }
    classes: dict[tuple[type, type], type] = {}
    count = 0
    for name, mod in model.named_modules():
        entry = table.get(types.get(name, ""))
        graph = getattr(mod, "graph", None)
        if not name or entry is None or graph is None or any(True for _ in mod.children()):
            continue
        nn_cls, ops, attrs_fn = entry
        calls = [n for n in graph.nodes if n.op == "call_function"]
        if len(calls) != 1 or str(calls[0].target) not in ops:
            continue
        try:
            attrs = attrs_fn(mod, _op_args(calls[0]))
        except Exception:
            attrs = None
        if attrs is None:
            continue
        key = (type(mod), nn_cls)
        if key not in classes:
            classes[key] = type(nn_cls.__name__, key, {"__module__": __name__})
        if nn_cls is not nn.ReLU and "bias" not in mod._parameters:
            mod.register_parameter("bias", None)
        for k, v in attrs.items():
            setattr(mod, k, v)
        mod.__class__ = classes[key]
        count += 1
    return count
