"""See which functions a forward pass calls, to report what :mod:`reportgen.attribution.relu_rules` could not reach.

The gradient-rule patcher replaces activation modules' ``forward`` and the ``F.relu``-family
attributes. Calls it cannot reach still run with their plain gradient: functional smooth
activations (``F.gelu``, ``F.silu``, ...), ``torch.clamp(x, min=0)`` used as a ReLU, and names bound
at import time (``from torch.nn.functional import relu``). :class:`FunctionWatch` is a
:class:`torch.overrides.TorchFunctionMode`: while it is active every torch function call passes
through it, so it counts those calls (and max-pooling calls, which decide whether deconvnet's
signal depends on the image) without hooks or patches. It is only active inside
:func:`reportgen.attribution.relu_rules.gradient_rule`, and calls made by the rules themselves are ignored.
"""

from __future__ import annotations

import functools
from typing import Callable

from torch.overrides import TorchFunctionMode

# calls made from inside the gradient rules' own forward/backward (they clamp and call fn(x)); not user code
_DEPTH = [0]

SMOOTH_NAMES = frozenset({"gelu", "silu", "elu", "celu", "selu", "leaky_relu", "leaky_relu_", "mish", "hardswish",
                          "softplus", "prelu", "rrelu", "elu_", "celu_", "selu_", "silu_"})
RELU_NAMES = frozenset({"relu", "relu_", "relu6", "hardtanh", "hardtanh_"})
CLAMP_NAMES = frozenset({"clamp", "clamp_", "clip", "clip_", "clamp_min", "clamp_min_"})


def quiet(fn: Callable) -> Callable:
    """Decorator for the rules' own forward/backward: calls inside are not the model's activations."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _DEPTH[0] += 1
        try:
            return fn(*args, **kwargs)
        finally:
            _DEPTH[0] -= 1

    return wrapper


def _is_zero(v) -> bool:
    try:
        return v is not None and float(v) == 0.0
    except (TypeError, ValueError, RuntimeError):
        return False


def _clamp_is_relu(name: str, args: tuple, kwargs: dict) -> bool:
    """``clamp(x, min=0)`` / ``clamp_min(x, 0)`` without an upper bound: a ReLU in disguise."""
    lo = kwargs.get("min", args[1] if len(args) > 1 else None)
    hi = kwargs.get("max", args[2] if len(args) > 2 else None)
    if name.startswith("clamp_min"):
        return _is_zero(lo)
    return _is_zero(lo) and hi is None


class FunctionWatch(TorchFunctionMode):
    """Counts unreached activation calls into ``report.unreached`` and max-pool calls into ``report.max_pool_calls``.

    ``patched`` holds ``id()`` of the replacement functions gradient_rule installed: a call dispatched
    to one of them is reached (the rule applies)."""

    def __init__(self, report) -> None:
        super().__init__()
        self.report = report
        self.patched: set[int] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _DEPTH[0] == 0:
            self._look(func, args, kwargs)
        return func(*args, **kwargs)

    def _look(self, func, args, kwargs) -> None:
        name = getattr(func, "__name__", "") or ""
        if "max_pool" in name:
            self.report.max_pool_calls += 1
            return
        if id(func) in self.patched:
            return
        if name in SMOOTH_NAMES:
            self.report.unreached[f"functional {name}"] += 1
        elif name in RELU_NAMES:
            self.report.unreached[f"{name} (a name bound before the patch)"] += 1
        elif name in CLAMP_NAMES and _clamp_is_relu(name, args, kwargs):
            self.report.unreached[f"{name}(min=0)"] += 1
