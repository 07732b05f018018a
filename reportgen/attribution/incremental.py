"""Exact incremental inference for occlusion (papers.NAKANDALA_2019: Nakandala, Kumar, Papakonstantinou,
"Incremental and Approximate Inference for Faster Occlusion-based Deep CNN Explanations", SIGMOD 2019).

An occluded copy of an image differs from the original only inside the patch, and after each
layer only inside the patch's growing cone: for a convolution or pooling layer with kernel ``k``,
stride ``s``, padding ``p`` the changed input rows ``[a, a + L)`` change exactly the output rows
``ceil((a + p - (k - 1)) / s) .. floor((a + L - 1 + p) / s)``. So each layer is recomputed only on
that region of every copy, on an input window gathered from the original's activation (computed
once per image) with the copy's changed region pasted in; everything outside the region is the
original's. Point-wise layers (BatchNorm in eval mode, ReLU-family, normalisation by constants)
apply to the region alone; a residual ``a + b`` works on the union of both regions. Where the
region would cover more than ``tau`` of the map, or at any operation not proven local (flatten,
linear, global pooling, unknown functions), the copies are materialised in full and the rest of
the network runs as an ordinary batched forward pass. Output: the same logits as the full
forward pass of every occluded copy (up to float32 summation order).

The model is read through ``torch.fx.symbolic_trace`` (no hooks, no module swaps; the traced
graph shares the model's modules). A model that cannot be traced, or that mutates in place a
tensor that is read again, is refused (``IncrementalOccluder.build`` returns None with the
reason) and the caller falls back to full forward passes.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..device import run_halving

POINTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardtanh, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish,
                     nn.Hardsigmoid, nn.GELU, nn.ELU, nn.Mish, nn.Identity)
DROPOUT_MODULES = (nn.Dropout, nn.Dropout2d, nn.AlphaDropout)
POINTWISE_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.hardtanh, F.silu, torch.sigmoid, torch.tanh, F.gelu,
                       F.hardswish, F.hardsigmoid, F.leaky_relu, F.elu, torch.nn.functional.sigmoid,
                       torch.clamp}
POINTWISE_METHODS = {"relu", "sigmoid", "tanh", "clamp", "contiguous", "float"}
BINARY = {operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub, torch.mul,
          torch.div}


class Unsupported(Exception):
    """The model cannot be run incrementally with a proof of exactness."""


@dataclass
class Inc:
    """Activation of B copies that equal ``base`` (the original's, 1 x C x H x W) except inside a
    ``vals.shape[-2:]`` region at rows ``y`` / columns ``x`` (one per copy), where they are ``vals``."""

    base: torch.Tensor
    y: torch.Tensor
    x: torch.Tensor
    vals: torch.Tensor


def _grid(y, x, h, w):
    return y[:, None] + torch.arange(h, device=y.device), x[:, None] + torch.arange(w, device=x.device)


def gather(base: torch.Tensor, y: torch.Tensor, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """B x C x h x w windows (channels-last memory) of ``base`` (1 x C x H x W) at rows ``y``, columns ``x``."""
    r, c = _grid(y, x, h, w)
    return base[0].permute(1, 2, 0)[r[:, :, None], c[:, None, :]].permute(0, 3, 1, 2)


def paste(dst: torch.Tensor, y: torch.Tensor, x: torch.Tensor, vals: torch.Tensor) -> torch.Tensor:
    """Write ``vals`` (B x C x h x w) into ``dst`` (B x C x H x W) at rows ``y`` / columns ``x`` in place.
    Rows or columns outside ``dst`` must have been redirected to a scratch row/column by the caller."""
    r, c = _grid(y, x, vals.shape[-2], vals.shape[-1])
    b = torch.arange(dst.shape[0], device=dst.device)
    dst.permute(0, 2, 3, 1)[b[:, None, None], r[:, :, None], c[:, None, :]] = vals.permute(0, 2, 3, 1)
    return dst


def materialize(s: Inc) -> torch.Tensor:
    # a copy, never a view: for one copy `expand(1, ...).contiguous()` would be the base itself, and pasting into it
    # would leave this copy's patch in the base activations the next copies start from
    full = s.base.expand(s.vals.shape[0], *s.base.shape[1:]).clone(memory_format=torch.channels_last)
    return paste(full, s.y, s.x, s.vals)


def _fit(start: torch.Tensor, stop: torch.Tensor, size: int) -> tuple[torch.Tensor, int]:
    """One region length for all copies covering each ``[start, stop)`` clipped to ``[0, size)``."""
    start, stop = start.clamp(0, size), stop.clamp(0, size)
    length = max(1, int((stop - start).max()))
    length = min(length, size)
    return start.clamp(max=size - length), length


def expand(s: Inc, y: torch.Tensor, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``s``'s values on a larger region (rows y.., columns x.., h x w) that contains its own."""
    out = gather(s.base, y, x, h, w)
    return paste(out, s.y - y, s.x - x, s.vals)


def _axis(a: torch.Tensor, length: int, k: int, st: int, p: int, d: int, n_out: int):
    """Output interval changed by input rows [a, a+length) and the input window feeding it."""
    reach = d * (k - 1)
    o0 = torch.div(a + p - reach + st - 1, st, rounding_mode="floor")
    o1 = torch.div(a + length - 1 + p, st, rounding_mode="floor") + 1
    start, n = _fit(o0, o1, n_out)
    return start, n, (n - 1) * st + reach + 1


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def spatial_params(m: nn.Module):
    """(kernel, stride, padding, dilation, pad value, fn(window)) of a local sliding-window module, or None."""
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            return None
        return _conv_params(m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)
    if isinstance(m, nn.MaxPool2d):
        if m.return_indices:
            return None
        k, st = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size)
        return (k, st, _pair(m.padding), _pair(m.dilation), float("-inf"),
                lambda t: F.max_pool2d(t, k, st, 0, m.dilation, ceil_mode=False))
    if isinstance(m, nn.AvgPool2d):
        pad = _pair(m.padding)
        if m.ceil_mode or (not m.count_include_pad and any(pad)):
            return None
        k, st = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size)
        return (k, st, pad, (1, 1), 0.0,
                lambda t: F.avg_pool2d(t, k, st, 0, ceil_mode=False, count_include_pad=True,
                                       divisor_override=m.divisor_override))
    return None


def _conv_params(weight, bias, stride, padding, dilation, groups):
    """:func:`spatial_params` of a zero-padded 2-D convolution (module or functional), or None."""
    if (not isinstance(weight, torch.Tensor) or weight.dim() != 4 or isinstance(padding, str)
            or not (bias is None or isinstance(bias, torch.Tensor))):
        return None
    stride, dilation, groups = _pair(stride), _pair(dilation), int(groups)
    return (tuple(weight.shape[-2:]), stride, _pair(padding), dilation, 0.0,
            lambda t: F.conv2d(t, weight, bias, stride, 0, dilation, groups))


def _conv_call_params(args: list, kw: dict):
    """:func:`spatial_params` of a functional ``conv2d(input, weight, bias, stride, padding, dilation, groups)``
    call (a Conv2d subclass whose forward pads first, e.g. TensorFlow 'SAME' ports, is traced into one)."""
    names = ["input", "weight", "bias", "stride", "padding", "dilation", "groups"]
    a = {**dict(zip(names, args)), **kw}
    return _conv_params(a.get("weight"), a.get("bias"), a.get("stride", 1), a.get("padding", 0),
                        a.get("dilation", 1), a.get("groups", 1))


def _shifted_by_pad(s: "Inc", args: list, kw: dict, out_base: torch.Tensor, functional: bool = True):
    """Constant padding of the last two dimensions: the changed region moves by (top, left), unchanged."""
    pad = list(args[1]) if len(args) > 1 else list(kw.get("pad", ()))
    mode = (args[2] if len(args) > 2 else kw.get("mode", "constant")) if functional else "constant"
    if mode != "constant" or len(pad) not in (2, 4) or any(not isinstance(v, int) or v < 0 for v in pad):
        return None
    left, right, top, bottom = (pad + [0, 0])[:4]
    h, w = s.base.shape[-2:]
    if tuple(out_base.shape[-2:]) != (h + top + bottom, w + left + right) or out_base.shape[:2] != s.base.shape[:2]:
        return None
    return Inc(out_base, s.y + top, s.x + left, s.vals)


def _pointwise_module(m: nn.Module) -> bool:
    if isinstance(m, POINTWISE_MODULES):
        return True
    if isinstance(m, DROPOUT_MODULES):
        return not m.training
    if isinstance(m, nn.BatchNorm2d):
        return not m.training and m.running_mean is not None
    return False


def _inplace(node, modules) -> bool:
    if node.op == "call_module":
        return bool(getattr(modules[node.target], "inplace", False))
    if node.op == "call_method":
        return node.target.endswith("_") and not node.target.endswith("__")
    if node.op == "call_function":
        return bool(node.kwargs.get("inplace", False)) or node.target in (operator.iadd, operator.imul,
                                                                            operator.isub, operator.itruediv)
    return False


def _local_const(v) -> bool:
    """A constant operand that broadcasts over channels only (never over the spatial dims)."""
    if isinstance(v, (int, float, bool)):
        return True
    if isinstance(v, torch.Tensor):
        return v.dim() == 0 or (3 <= v.dim() <= 4 and v.shape[-1] == 1 and v.shape[-2] == 1
                                and (v.dim() == 3 or v.shape[0] == 1))
    return False


class IncrementalOccluder:
    """Logits of occluded copies of one image computed incrementally (see the module docstring).

    ``base(img)`` runs the original (1 x C x H x W) once and keeps every activation; ``logits(base,
    y, x, patch)`` returns the logits of the copies with ``patch`` (B x C x h x w) pasted at rows ``y``,
    columns ``x``. ``tau``: region share of a map above which the copies are materialised.
    """

    def __init__(self, gm, tau: float = 0.8):
        self.gm, self.tau = gm, tau
        self.modules = dict(gm.named_modules())
        self.nodes = list(gm.graph.nodes)
        self.stats = {"incremental_ops": 0, "full_ops": 0}
        placeholders = [n for n in self.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise Unsupported("the model must take exactly one input")
        self.input = placeholders[0]
        # nodes that depend on the image
        dep = {self.input}
        for n in self.nodes:
            if any(a in dep for a in n.all_input_nodes):
                dep.add(n)
        self.dep = dep
        for n in self.nodes:
            if _inplace(n, self.modules) and n.all_input_nodes:
                src = n.all_input_nodes[0]
                if len(src.users) > 1:
                    raise Unsupported(f"{n.name} changes {src.name} in place and {src.name} is read elsewhere")

    @classmethod
    def build(cls, model: nn.Module, tau: float = 0.8):
        """(occluder or None, reason it could not be built)."""
        if isinstance(model, torch.jit.ScriptModule):
            return None, "TorchScript model"
        try:
            import torch.fx as fx

            gm = fx.symbolic_trace(model)
            return cls(gm, tau), ""
        except Unsupported as e:
            return None, str(e)
        except Exception as e:  # noqa: BLE001 - any tracing failure means: use full forward passes
            return None, f"not traceable by torch.fx ({type(e).__name__})"

    # ---- the original image: one ordinary forward pass keeping every activation
    def base(self, img: torch.Tensor) -> dict:
        env = {}
        for n in self.nodes:
            if n.op == "placeholder":
                env[n] = img.contiguous(memory_format=torch.channels_last)
                continue
            if n.op == "output":
                break
            args, kwargs = _map((n.args, n.kwargs), lambda a: env[a])
            env[n] = self._call(n, self._writable(n, args, kept=True), kwargs)
        return env

    def _writable(self, n, args, kept: bool):
        """``args`` with a copy of the first where ``n`` writes into it in place and it is ``kept`` (an activation
        of the original, read again by later passes or nodes)."""
        if kept and _inplace(n, self.modules) and args and isinstance(args[0], torch.Tensor):
            return (args[0].clone(),) + tuple(args[1:])
        return args

    def _call(self, n, args, kwargs):
        if n.op == "call_module":
            return self.modules[n.target](*args, **kwargs)
        if n.op == "call_function":
            return n.target(*args, **kwargs)
        if n.op == "call_method":
            return getattr(args[0], n.target)(*args[1:], **kwargs)
        if n.op == "get_attr":
            obj = self.gm
            for part in n.target.split("."):
                obj = getattr(obj, part)
            return obj
        raise Unsupported(n.op)

    # ---- the occluded copies
    def logits(self, base: dict, y: torch.Tensor, x: torch.Tensor, patch: torch.Tensor):
        env = {self.input: Inc(base[self.input], y, x, patch.contiguous())}
        for n in self.nodes:
            if n.op == "placeholder":
                continue
            if n.op == "output":
                return _map(n.args[0], lambda a: self._full(env, a))
            if n not in self.dep:
                env[n] = base[n]
                continue
            env[n] = self._step(n, env, base)
        raise Unsupported("graph has no output")

    def _full(self, env, a):
        v = env[a]
        if isinstance(v, Inc):
            v = env[a] = materialize(v)
            self.stats["full_ops"] += 1
        return v

    def _step(self, n, env, base):
        args = [env[a] if isinstance(a, torch.fx.Node) else a for a in n.args]
        changed = [a for a in n.all_input_nodes if a in self.dep]
        if changed and all(isinstance(env[a], Inc) for a in changed):
            out = self._incremental(n, args, [v for v in args if isinstance(v, Inc)], base[n])
            if out is not None:
                self.stats["incremental_ops"] += 1
                return out
        self.stats["full_ops"] += 1
        fargs, fkwargs = _map((n.args, n.kwargs), lambda a: self._full(env, a) if a in self.dep else base[a])
        first = n.args[0] if n.args else None
        kept = isinstance(first, torch.fx.Node) and first not in self.dep
        return self._call(n, self._writable(n, fargs, kept), fkwargs)

    def _incremental(self, n, args, incs, out_base):
        kw = {k: v for k, v in n.kwargs.items() if k != "inplace"}
        if not isinstance(out_base, torch.Tensor) or out_base.dim() != 4:
            return None
        if not incs or any(isinstance(v, torch.fx.Node) for v in kw.values()):
            return None
        if n.op == "call_module":
            m = self.modules[n.target]
            if len(args) != 1 or n.kwargs:
                return None
            s = incs[0]
            if _pointwise_module(m):
                # an in-place module (ReLU(inplace=True)) gets a copy: s.vals may be shared with an earlier node's
                # region (constant padding only shifts it), which other nodes still read
                vals = s.vals.clone() if getattr(m, "inplace", False) else s.vals
                return Inc(out_base, s.y, s.x, m(vals))
            sp = spatial_params(m)
            if sp is not None:
                return self._sliding(s, sp, out_base)
            return None
        first = args[0] if args else None
        rest = args[1:]
        if n.op == "call_function" and n.target in (F.pad, torch.constant_pad_nd) and isinstance(first, Inc):
            return _shifted_by_pad(first, args, kw, out_base, functional=n.target is F.pad)
        if n.op == "call_function" and n.target in (F.conv2d, torch.conv2d) and isinstance(first, Inc):
            sp = _conv_call_params(args, kw)
            return self._sliding(first, sp, out_base) if sp is not None and len(incs) == 1 else None
        if n.op == "call_function" and n.target in BINARY and len(args) == 2 and not kw:
            a, b = args
            if isinstance(a, Inc) and isinstance(b, Inc):
                if a.base.shape != b.base.shape or a.base.shape != out_base.shape:
                    return None
                y, h = _fit(torch.minimum(a.y, b.y), torch.maximum(a.y + a.vals.shape[-2], b.y + b.vals.shape[-2]),
                            out_base.shape[-2])
                x, w = _fit(torch.minimum(a.x, b.x), torch.maximum(a.x + a.vals.shape[-1], b.x + b.vals.shape[-1]),
                            out_base.shape[-1])
                if h * w > self.tau * out_base.shape[-1] * out_base.shape[-2]:
                    return None
                return Inc(out_base, y, x, n.target(expand(a, y, x, h, w), expand(b, y, x, h, w)))
            s, other = (a, b) if isinstance(a, Inc) else (b, a)
            if not _local_const(other) or s.base.shape != out_base.shape:
                return None
            vals = n.target(s.vals, other) if s is a else n.target(other, s.vals)
            return Inc(out_base, s.y, s.x, vals)
        pointwise = ((n.op == "call_function" and n.target in POINTWISE_FUNCTIONS)
                     or (n.op == "call_method" and n.target in POINTWISE_METHODS))
        if pointwise and isinstance(first, Inc) and len(incs) == 1 and all(_local_const(v) or v is None for v in rest) \
                and all(_local_const(v) or v is None for v in kw.values()) and first.base.shape == out_base.shape:
            fn = n.target if n.op == "call_function" else getattr(torch.Tensor, n.target)
            return Inc(out_base, first.y, first.x, fn(first.vals, *rest, **kw))
        return None

    def _sliding(self, s: Inc, sp, out_base):
        (kh, kw), (sh, sw), (ph, pw), (dh, dw), pad_value, fn = sp
        H, W = s.base.shape[-2:]
        Ho, Wo = out_base.shape[-2:]
        y0, nh, wh = _axis(s.y, s.vals.shape[-2], kh, sh, ph, dh, Ho)
        x0, nw, ww = _axis(s.x, s.vals.shape[-1], kw, sw, pw, dw, Wo)
        if nh * nw > self.tau * Ho * Wo:
            return None
        # padded original (+1 scratch row/column for the parts of the copies' regions no output reads)
        pb = max(0, (Ho - 1) * sh - ph + dh * (kh - 1) + 1 - H) + 1
        pr = max(0, (Wo - 1) * sw - pw + dw * (kw - 1) + 1 - W) + 1
        bp = F.pad(s.base, (pw, pr, ph, pb), value=pad_value)
        win = gather(bp, y0 * sh, x0 * sw, wh + 1, ww + 1)
        ry, rx = _grid(s.y + ph - y0 * sh, s.x + pw - x0 * sw, s.vals.shape[-2], s.vals.shape[-1])
        ry = torch.where((ry >= 0) & (ry < wh), ry, wh)
        rx = torch.where((rx >= 0) & (rx < ww), rx, ww)
        b = torch.arange(win.shape[0], device=win.device)
        win.permute(0, 2, 3, 1)[b[:, None, None], ry[:, :, None], rx[:, None, :]] = s.vals.permute(0, 2, 3, 1)
        out = fn(win[:, :, :wh, :ww])
        return Inc(out_base, y0, x0, out)


def _map(a, fn):
    import torch.fx as fx

    return fx.node.map_aggregate(a, lambda v: fn(v) if isinstance(v, fx.Node) else v)


# Occluded copies per incremental pass when the batch size is automatic. Each pass interprets the traced graph in
# Python, and most copies are small regions, so wider passes pay: one MobileNetV2 image at 224 px, 169 positions,
# 2 threads: 2.31 s at 3 copies per pass, 1.06 s at 16, 0.88 s at 32, 1.36 s at 64.
INCREMENTAL_BATCH = 32


def occlusion_logits(occ: IncrementalOccluder, img: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor,
                     fill: torch.Tensor, wy: int, wx: int, batch_size: int) -> torch.Tensor:
    """Logits of ``img`` (1 x C x H x W) with a ``wy`` x ``wx`` square of ``fill`` (C) at each (ys[i], xs[i]);
    ``batch_size`` copies per pass (halved on CUDA out-of-memory)."""
    base = occ.base(img)
    c = img.shape[1]
    ys, xs = ys.to(img.device), xs.to(img.device)

    def run(a, b):
        patch = fill.to(img).view(1, c, 1, 1).expand(b - a, c, wy, wx)
        return occ.logits(base, ys[a:b], xs[a:b], patch).float()

    return torch.cat(run_halving(run, len(ys), batch_size))
