"""Change how gradients pass back through activations: plain backprop, deconvnet, guided backprop.

For a rectifier ``y = relu(x)`` with upstream gradient ``g = dL/dy`` the three rules give ``dL/dx`` as

* ``backprop``  (plain autograd):             ``g * [x > 0]``
* ``deconvnet`` (Zeiler & Fergus 2014):        ``relu(g)``                 (the forward mask is ignored)
* ``guided``    (Springenberg et al. 2015):    ``relu(g) * [x > 0]``       (both masks)

Decisions for the other activation types (reported by :class:`RuleReport`, so a section can say them):

* ``ReLU6`` / ``Hardtanh(lo, hi)`` (MobileNet): the forward mask is the clamp's pass band, so
  ``guided = relu(g) * [lo < x < hi]``, ``backprop = g * [lo < x < hi]``, ``deconvnet = relu(g)``.
* Smooth or leaky activations (GELU, SiLU, ELU, LeakyReLU, Mish, Hardswish, Softplus, ...): the
  activation's own local derivative takes the place of the mask: ``guided = relu(g) * f'(x)``,
  ``deconvnet = relu(g)``.
* Non-rectifying gates (Sigmoid, Tanh, Hardsigmoid, Softmax, ...) keep their plain gradient.

Where the rules are applied:

* activation **modules** (``nn.ReLU``, also ``inplace=True``; ``nn.ReLU6``, ``nn.GELU`` ...): their
  ``forward`` is replaced *on the instance* for the duration of the ``with`` block (no module is
  swapped, no hook is registered; the class' forward is back afterwards);
* **functional** calls made inside ``forward``: ``F.relu``, ``F.relu_``, ``F.relu6``, ``torch.relu``,
  ``torch.relu_``, ``Tensor.relu``/``relu_`` are patched at call time for the duration of the block.
  The patch is process-wide while the block runs: do not run other models in other threads meanwhile.
* what the patcher **cannot reach** is detected, not assumed: forward passes inside the block run
  under a :class:`torch.overrides.TorchFunctionMode` (:mod:`reportgen.attribution._function_watch`) that sees every
  functional call, so functional ``F.gelu``/``F.silu``/..., ``torch.clamp(x, min=0)`` and names bound
  at import time (``from torch.nn.functional import relu``) are counted in ``RuleReport.unreached``
  and the description says "N activations were not reached; those layers use the plain gradient".
  The same watch counts max-pooling calls (``nn.MaxPool2d`` and ``F.max_pool2d`` alike).

Everything is restored in ``finally`` (also on exceptions). Usage::

    with gradient_rule(ctx.pixel_model, "guided") as report:
        x.requires_grad_(True)
        ctx.pixel_model(x)[:, c].sum().backward()
    print(report.describe())
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ._function_watch import FunctionWatch, quiet

RULES = ("backprop", "deconvnet", "guided")

RULE_TEXT = {
    "backprop": "plain gradient g·[x>0]",
    "deconvnet": "deconvnet relu(g)",
    "guided": "guided relu(g)·[x>0]",
}

# Activation modules that get a rule through their local derivative (not a hard mask).
SMOOTH_RECTIFIERS: tuple[type[nn.Module], ...] = tuple(
    t for t in (
        nn.GELU, nn.SiLU, nn.ELU, nn.CELU, nn.SELU, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.Mish,
        nn.Hardswish, nn.Softplus,
    )
)
# Gates and squashing functions: left alone (plain gradient), and reported as such.
GATES: tuple[type, ...] = (nn.Sigmoid, nn.Tanh, nn.Hardsigmoid, nn.Softmax, nn.LogSigmoid, nn.Tanhshrink,
                           nn.Softsign, nn.Hardshrink, nn.Softshrink, nn.Threshold, nn.GLU)


def _rectify(g: torch.Tensor) -> torch.Tensor:
    return g.clamp(min=0)


def _by_rule(rule: str, g: torch.Tensor, through: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The gradient an activation passes back under ``rule``, given ``through`` = the plain chain rule:
    deconvnet relu(g) (ignores the forward pass), guided through(relu(g)), plain through(g)."""
    if rule == "deconvnet":
        return _rectify(g)
    return through(_rectify(g) if rule == "guided" else g)


class _ClampRule(torch.autograd.Function):
    """``y = clamp(x, lo, hi)`` (ReLU: lo=0, hi=None; ReLU6: 0, 6) with a chosen backward rule."""

    @staticmethod
    @quiet
    def forward(ctx: Any, x, lo, hi, rule, inplace):  # type: ignore[override]
        if inplace:
            y = x.clamp_(min=lo, max=hi)
            ctx.mark_dirty(x)
        else:
            y = x.clamp(min=lo, max=hi)
        # the output determines the pass band exactly: lo < y < hi  <=>  lo < x < hi
        ctx.save_for_backward(y)
        ctx.lo, ctx.hi, ctx.rule = lo, hi, rule
        return y

    @staticmethod
    @quiet
    def backward(ctx: Any, g):  # type: ignore[override]
        (y,) = ctx.saved_tensors

        def through(gout):  # the clamp's derivative: 1 inside the pass band, else 0
            mask = y > ctx.lo
            if ctx.hi is not None:
                mask = mask & (y < ctx.hi)
            return gout * mask.to(g.dtype)

        return _by_rule(ctx.rule, g, through), None, None, None, None


class _SmoothRule(torch.autograd.Function):
    """``y = f(x)`` for a smooth/leaky activation ``f``; guided = relu(g)·f'(x), deconvnet = relu(g)."""

    @staticmethod
    @quiet
    def forward(ctx: Any, x, fn, rule, inplace):  # type: ignore[override]
        xs = x.detach().clone() if inplace else x.detach()
        with torch.no_grad():
            y = fn(xs.clone() if inplace else xs)  # an in-place fn must not overwrite the saved input
        ctx.fn, ctx.rule = fn, rule
        ctx.save_for_backward(xs)
        if inplace:
            x.copy_(y)
            ctx.mark_dirty(x)
            return x
        return y

    @staticmethod
    @quiet
    def backward(ctx: Any, g):  # type: ignore[override]
        (xs,) = ctx.saved_tensors

        def through(gout):  # vector-Jacobian product with f'(x)
            with torch.enable_grad():
                xx = xs.detach().requires_grad_(True)
                yy = ctx.fn(xx.clone())  # clone: fn may be in-place (SiLU(inplace=True))
                (gi,) = torch.autograd.grad(yy, xx, grad_outputs=gout)
            return gi

        return _by_rule(ctx.rule, g, through), None, None, None


@dataclass
class RuleReport:
    """What :func:`gradient_rule` did: which activation got which rule (for the section's note)."""

    rule: str
    modules: dict[str, str] = field(default_factory=dict)  # module name -> "TypeName: rule text"
    functional_calls: Counter = field(default_factory=Counter)  # "F.relu" -> number of calls seen
    # activations the patcher could not reach (functional gelu/silu, clamp(min=0), import-bound relu), per pass
    unreached: Counter = field(default_factory=Counter)
    max_pool_calls: int = 0  # max-pooling calls seen in forward passes inside the block (module or functional)

    def unreached_text(self) -> str:
        """"N activations were not reached (F.gelu ×2); those layers use the plain gradient." or ""."""
        n = sum(self.unreached.values())
        if n == 0 or self.rule == "backprop":
            return ""
        what = ", ".join(f"{k} ×{v}" for k, v in sorted(self.unreached.items()))
        return (f"{n} activation call{'s were' if n != 1 else ' was'} not reached ({what}); "
                f"{'those layers use' if n != 1 else 'that layer uses'} the plain gradient.")

    def by_type(self) -> dict[str, list[str]]:
        """``{"ReLU6": ["guided relu(g)·[0<x<6]", ...]}`` (rule texts per activation type)."""
        out: dict[str, set[str]] = {}
        for text in self.modules.values():
            t, _, how = text.partition(": ")
            out.setdefault(t, set()).add(how)
        for fn, n in self.functional_calls.items():
            out.setdefault(f"{fn} (functional, {n} call{'s' if n != 1 else ''})", set()).add(
                _describe(self.rule, "clamp", 0.0, 6.0 if "relu6" in fn else None))
        return {k: sorted(v) for k, v in sorted(out.items())}

    def describe(self) -> str:
        """One sentence per activation type, e.g. ``ReLU6 ×35: guided relu(g)·[0<x<6]``."""
        if self.rule == "backprop":
            return "Plain backpropagation: every activation passes its ordinary gradient."
        counts = Counter(text.partition(": ")[0] for text in self.modules.values())
        parts = []
        for t, hows in self.by_type().items():
            n = counts.get(t)
            parts.append(f"{t}{f' ×{n}' if n else ''}: {'; '.join(hows)}")
        missed = self.unreached_text()
        if not parts:
            return (f"No ReLU-family activation was reached: the '{self.rule}' rule changed nothing (plain gradient)."
                    + (" " + missed if missed else ""))
        return "; ".join(parts) + "." + (" " + missed if missed else "")


def _describe(rule: str, kind: str, lo: float = 0.0, hi: float | None = None, gate: bool = False) -> str:
    if gate:
        return "plain gradient (not a rectifier; left unchanged)"
    if rule == "backprop":
        return "plain gradient"
    if rule == "deconvnet":
        return "deconvnet relu(g) (forward mask ignored)"
    if kind == "smooth":
        return "guided relu(g)·f'(x) (own local derivative in place of the mask)"
    band = f"[x>{lo:g}]" if hi is None else f"[{lo:g}<x<{hi:g}]"
    return f"guided relu(g)·{band}"


def _clamp_forward(rule: str, lo: float, hi: float | None, inplace: bool) -> Callable:
    def forward(x: torch.Tensor) -> torch.Tensor:
        return _ClampRule.apply(x, lo, hi, rule, inplace)

    return forward


def _smooth_forward(module: nn.Module, orig: Callable, rule: str) -> Callable:
    inplace = bool(getattr(module, "inplace", False))

    def forward(x: torch.Tensor) -> torch.Tensor:
        return _SmoothRule.apply(x, orig, rule, inplace)

    return forward


_MISSING = object()


@contextlib.contextmanager
def gradient_rule(model: nn.Module, rule: str) -> Iterator[RuleReport]:
    """Within the block, gradients through ``model``'s activations follow ``rule``.

    ``rule`` is one of ``backprop`` (nothing is changed), ``deconvnet``, ``guided``. Yields a
    :class:`RuleReport`; its functional-call counts fill in as forward passes run.
    """
    if rule not in RULES:
        raise ValueError(f"unknown gradient rule {rule!r}; choose one of {', '.join(RULES)}")
    report = RuleReport(rule=rule)
    if rule == "backprop":
        yield report
        return

    watch = FunctionWatch(report)
    patched: list[tuple[nn.Module, object]] = []  # (module, previous instance 'forward' or _MISSING)
    fn_patches: list[tuple[object, str, object]] = []  # (owner, attribute, previous value or _MISSING)
    try:
        seen: set[int] = set()
        for name, m in model.named_modules():
            if id(m) in seen:
                continue
            seen.add(id(m))
            tname = type(m).__name__
            if isinstance(m, nn.ReLU):
                new = _clamp_forward(rule, 0.0, None, m.inplace)
                how = _describe(rule, "clamp", 0.0, None)
            elif isinstance(m, nn.Hardtanh):  # includes ReLU6
                lo, hi = float(m.min_val), float(m.max_val)
                new = _clamp_forward(rule, lo, hi, m.inplace)
                how = _describe(rule, "clamp", lo, hi)
            elif isinstance(m, SMOOTH_RECTIFIERS):
                new = _smooth_forward(m, m.forward, rule)
                how = _describe(rule, "smooth")
            elif isinstance(m, GATES):
                report.modules[name] = f"{tname}: {_describe(rule, '', gate=True)}"
                continue
            else:
                continue
            patched.append((m, m.__dict__.get("forward", _MISSING)))
            m.forward = new  # instance attribute: shadows the class' forward, no hook, no swap
            report.modules[name] = f"{tname}: {how}"

        def counted(label: str, fn: Callable) -> Callable:
            def wrapper(*args, **kwargs):
                report.functional_calls[label] += 1
                return fn(*args, **kwargs)

            return wrapper

        def f_relu(input, inplace=False):
            return _ClampRule.apply(input, 0.0, None, rule, bool(inplace))

        def f_relu_(input):
            return _ClampRule.apply(input, 0.0, None, rule, True)

        def f_relu6(input, inplace=False):
            return _ClampRule.apply(input, 0.0, 6.0, rule, bool(inplace))

        def t_relu(self):
            return _ClampRule.apply(self, 0.0, None, rule, False)

        def t_relu_(self):
            return _ClampRule.apply(self, 0.0, None, rule, True)

        replacements = [
            (F, "relu", counted("F.relu", f_relu)),
            (F, "relu_", counted("F.relu_", f_relu_)),
            (F, "relu6", counted("F.relu6", f_relu6)),
            (torch, "relu", counted("torch.relu", lambda input: f_relu(input))),
            (torch, "relu_", counted("torch.relu_", f_relu_)),
            (torch.Tensor, "relu", counted("Tensor.relu", t_relu)),
            (torch.Tensor, "relu_", counted("Tensor.relu_", t_relu_)),
        ]
        for owner, attr, fn in replacements:
            prev = owner.__dict__.get(attr, _MISSING) if isinstance(owner, type) else getattr(owner, attr, _MISSING)
            fn_patches.append((owner, attr, prev))
            setattr(owner, attr, fn)
        watch.patched = {id(fn) for _, _, fn in replacements}
        with watch:
            yield report
    finally:
        for owner, attr, prev in reversed(fn_patches):
            if prev is _MISSING:
                try:
                    delattr(owner, attr)
                except AttributeError:
                    pass
            else:
                setattr(owner, attr, prev)
        for m, prev in reversed(patched):
            if prev is _MISSING:
                m.__dict__.pop("forward", None)
            else:
                m.__dict__["forward"] = prev


def input_gradient(model: nn.Module, x: torch.Tensor, select: Callable[[torch.Tensor], torch.Tensor],
                   rule: str = "backprop") -> torch.Tensor:
    """Gradient of ``select(model(x)).sum()`` w.r.t. ``x`` under ``rule`` (a convenience for tests/techniques)."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad(), gradient_rule(model, rule):
        out = select(model(x))
        (g,) = torch.autograd.grad(out.sum(), x)
    return g
