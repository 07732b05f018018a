"""Receptive fields: which input pixels a unit of a layer can see, for any architecture.

Two methods:

* :func:`gradient_receptive_field` (exact, any architecture): on a throw-away copy of the model
  every weight is a positive constant (``1 / fan_in``), biases are 0, normalisation layers and
  activations become the identity and max-pools become average pools of the same geometry.
  The network is then a positive linear map, so no path can cancel or be switched off, and the
  support of the gradient of one output unit w.r.t. the input (its non-zero pixels) is exactly
  the unit's receptive field, whatever the wiring (branches, residuals, asymmetric 'SAME'
  padding done in ``forward``, dilation). Computed in float64 so far-away pixels, whose
  gradient is tiny, do not underflow. A fast variant first collapses every layer to one channel
  (all channels of the constant model are identical); it falls back to the full-width copy if
  the model's code depends on channel counts.
* :func:`analytic_receptive_field` (cheap): composes kernel / stride / padding / dilation of the
  Conv and Pool layers in definition order up to the layer. Exact for plain chains (VGG,
  AlexNet); only an estimate for branching networks.

Both return a :class:`ReceptiveField`: the size of the field, the step in input pixels between
neighbouring units, and the (unclipped) box of any unit, for cropping maximally activating
patches (Zeiler & Fergus 2014).
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..cache import MemoKey
from . import layers as layers_mod
from .hooks import StopForward
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..context import Ctx

MAX_INPUT = 2048  # the gradient method grows its input up to this size to fit a whole field
GROW_BUDGET = 1 << 30  # ... while the next size's activations (4x this size's) stay within these bytes

_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus,
    nn.Softsign, nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.Dropout, nn.Dropout2d, nn.AlphaDropout,
)
#: squeeze-and-excitation gates (torchvision's SqueezeExcitation, timm's SqueezeExcite / SEModule): a per-image
#: scaling of each channel by a function of its global average. The copy drops them, so the field is the
#: convolutional path's (the convention); kept, they make every field the whole image and square the copy's scale
#: in every block until float64 overflows (EfficientNetV2-S).
_SE_NAMES = ("SqueezeExcitation", "SqueezeExcite", "SEModule", "SELayer")
_NORMS = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm, nn.LayerNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.LocalResponseNorm, nn.CrossMapLRN2d,
)


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of the units of one layer, in input pixels.

    Unit ``(y, x)`` of the layer's output sees input rows ``origin[0] + y * jump[0]`` up to (not
    including) that plus ``size[0]``, and likewise for columns; the box may extend past the image
    (zero padding), see :meth:`clipped_box`.
    """

    layer: str
    size: tuple[int, int]  # (height, width) of the field of an interior unit
    jump: tuple[int, int]  # input pixels between neighbouring units (the layer's total stride)
    origin: tuple[int, int]  # top-left (y0, x0) of unit (0, 0)'s field; may be negative
    method: str = "gradient"
    clipped: bool = False  # True when the whole field did not fit the largest input tried
    input_size: int = 0  # input side the field was measured at

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """Unclipped ``(y0, x0, y1, x1)`` (end exclusive) of unit ``(y, x)``."""
        y0 = self.origin[0] + y * self.jump[0]
        x0 = self.origin[1] + x * self.jump[1]
        return y0, x0, y0 + self.size[0], x0 + self.size[1]

    def clipped_box(self, y: int, x: int, height: int, width: int) -> tuple[int, int, int, int]:
        """The part of unit ``(y, x)``'s field inside an image of ``height`` x ``width``."""
        y0, x0, y1, x1 = self.box(y, x)
        return max(0, y0), max(0, x0), min(height, y1), min(width, x1)

    def to_dict(self) -> dict:
        return {"layer": self.layer, "size": list(self.size), "jump": list(self.jump),
                "origin": list(self.origin), "method": self.method, "clipped": self.clipped,
                "input_size": self.input_size}


def crop_field(image: np.ndarray, rf: ReceptiveField, y: int, x: int,
               fill: tuple[int, int, int] | int = 128) -> np.ndarray:
    """Crop unit ``(y, x)``'s receptive field from ``image`` (HxW[xC] uint8), keeping its full size.

    Parts of the field outside the image (the zero padding the unit also sees) are filled with
    ``fill`` (a neutral grey), so every patch of a layer has the same size and the unit's centre
    stays at the patch centre.
    """
    h, w = image.shape[:2]
    y0, x0, y1, x1 = rf.box(y, x)
    shape = (y1 - y0, x1 - x0) + image.shape[2:]
    out = np.empty(shape, dtype=image.dtype)
    out[...] = np.asarray(fill, dtype=image.dtype) if image.ndim == 3 else (
        fill if np.isscalar(fill) else int(np.mean(fill)))
    cy0, cx0, cy1, cx1 = max(0, y0), max(0, x0), min(h, y1), min(w, x1)
    if cy1 > cy0 and cx1 > cx0:
        out[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] = image[cy0:cy1, cx0:cx1]
    return out


# ----------------------------------------------------------------------------------------------
# gradient support on a positive, linear copy of the model


class _AvgPoolAny(nn.Module):
    """An average pool with a max-pool's geometry (also with dilation)."""

    def __init__(self, pool: nn.MaxPool2d):
        super().__init__()
        pair = nn.modules.utils._pair
        self.k, self.s = pair(pool.kernel_size), pair(pool.stride or pool.kernel_size)
        self.p, self.d = pair(pool.padding), pair(pool.dilation)
        self.ceil = bool(pool.ceil_mode)

    def forward(self, x):
        if self.d == (1, 1):
            return F.avg_pool2d(x, self.k, self.s, self.p, ceil_mode=self.ceil, count_include_pad=True)
        c = x.shape[1]
        w = torch.ones(c, 1, *self.k, dtype=x.dtype, device=x.device) / (self.k[0] * self.k[1])
        return F.conv2d(x, w, None, self.s, self.p, self.d, groups=c)


class _MeanFeatures(nn.Module):
    """Collapsed stand-in for a Linear layer: the mean of the input features (one output)."""

    def forward(self, x):
        return x.mean(dim=-1, keepdim=True)


def _const(shape, value: float) -> torch.Tensor:
    return torch.full((), float(value), dtype=torch.float64).expand(*shape)


def _constant_copy(model: nn.Module, collapse: bool, keep: str = "") -> nn.Module:
    """A deep copy of ``model`` made positive and linear (see the module docstring). The module ``keep`` (the
    layer measured) and its ancestors are never dropped (a convolution inside a squeeze-and-excitation gate).

    Parameters are not copied (the memo maps them to placeholders), so even a model with a huge
    classifier costs no memory: the new weights are stride-0 expanded constants.
    """
    memo: dict[int, object] = {}
    for t in itertools.chain(model.parameters(), model.buffers()):
        memo[id(t)] = nn.Parameter(torch.empty(0), requires_grad=False) if isinstance(t, nn.Parameter) \
            else torch.empty(0)
    cp = copy.deepcopy(model, memo)
    orig = dict(model.named_modules())
    replace: dict[str, nn.Module] = {}
    for name, m in cp.named_modules():
        om = orig[name]
        inside = bool(keep) and (keep == name or keep.startswith(name + "."))
        if isinstance(m, _ACTIVATIONS) or isinstance(m, _NORMS) or (type(m).__name__ in _SE_NAMES and not inside):
            replace[name] = nn.Identity()
            continue
        if isinstance(m, nn.MaxPool2d):
            replace[name] = _AvgPoolAny(m)
            continue
        if isinstance(m, nn.AdaptiveMaxPool2d):
            replace[name] = nn.AdaptiveAvgPool2d(m.output_size)
            continue
        if collapse and isinstance(m, nn.Linear):
            replace[name] = _MeanFeatures()
            continue
        for pname, p in list(om._parameters.items()):
            if p is None:
                continue
            value: torch.Tensor | None
            if isinstance(m, nn.modules.conv._ConvNd) and pname == "weight":
                if collapse:
                    k = p.shape[2:]
                    value = torch.ones(1, 1, *k, dtype=torch.float64) / float(np.prod(k))
                else:
                    fan_in = int(np.prod(p.shape[1:])) if not isinstance(m, nn.modules.conv._ConvTransposeNd) \
                        else int(p.shape[0] * np.prod(p.shape[2:]))
                    value = _const(p.shape, 1.0 / max(1, fan_in))
            elif isinstance(m, nn.Linear) and pname == "weight":
                value = _const(p.shape, 1.0 / max(1, p.shape[1]))
            elif pname == "bias" or "bias" in pname:
                value = None if collapse and isinstance(m, nn.modules.conv._ConvNd) else _const(p.shape, 0.0)
            else:
                value = _const(p.shape, 1.0)
            m._parameters[pname] = None if value is None else nn.Parameter(value, requires_grad=False)
        for bname, b in list(om._buffers.items()):
            if b is None:
                continue
            b = b.detach().to("cpu", copy=True)  # the copy always runs on the CPU
            m._buffers[bname] = b.double() if b.is_floating_point() else b
        if collapse and isinstance(m, nn.modules.conv._ConvNd):
            m.in_channels = m.out_channels = 1
            m.groups = 1
    for name, new in replace.items():
        parent_name, _, child = name.rpartition(".")
        parent = cp.get_submodule(parent_name) if parent_name else cp
        setattr(parent, child, new)
    cp.eval()
    return cp


def _support(cp: nn.Module, layer: nn.Module, size: int, collapse: bool,
             used: list[int] | None = None, rescale: bool = False) -> tuple[np.ndarray, tuple[int, int], tuple]:
    """Gradient support of the centre unit (sample 0) and its lower-right neighbour (sample 1). ``used`` (when
    given) receives the bytes of every module output of the pass (about what its backward holds). ``rescale``
    divides every leaf module's output by its largest value (a positive constant: the support is unchanged), for
    copies whose values overflow float64 (a layer inside a squeeze-and-excitation gate keeps the gates before it,
    and each gate multiplies a map by a function of itself, squaring its scale)."""
    handles: list[torch.utils.hooks.RemovableHandle] = []
    store: dict[str, torch.Tensor] = {}
    total = [0]

    def count(_m, _i, out):
        if isinstance(out, torch.Tensor):
            total[0] += out.numel() * out.element_size()
            if rescale and out.is_floating_point():
                return out / out.detach().abs().amax().clamp_min(1e-300)
        return None

    def stop(_m, _i, out):
        store["out"] = out[0] if isinstance(out, (tuple, list)) else out
        raise StopForward

    def mean_channels(_m, inp):
        x = inp[0]
        if x.dim() >= 3 and x.shape[1] != 1:
            x = x.mean(dim=1, keepdim=True)
        return (x,) + tuple(inp[1:])

    try:  # hooks on our own private copy, removed right away
        handles.extend(m.register_forward_hook(count) for m in cp.modules() if not list(m.children()))
        handles.append(layer.register_forward_hook(stop))
        if collapse:
            for m in cp.modules():
                if isinstance(m, nn.modules.conv._ConvNd):
                    handles.append(m.register_forward_pre_hook(mean_channels))
        x = torch.ones(2, 3, size, size, dtype=torch.float64, requires_grad=True)
        with torch.enable_grad():
            try:
                cp(x)
            except StopForward:
                pass
            if "out" not in store:
                raise RuntimeError("the layer was not called during the forward pass")
            out = store["out"]
            if out.dim() == 2:
                out = out[:, :, None, None]
            elif out.dim() == 3:
                out = out[:, :, None, :]
            h, w = out.shape[-2:]
            yc, xc = h // 2, w // 2
            y2, x2 = min(yc + 1, h - 1), min(xc + 1, w - 1)
            score = out[0, :, yc, xc].sum() + out[1, :, y2, x2].sum()
            (g,) = torch.autograd.grad(score, x)
            if not torch.isfinite(g).all():
                raise RuntimeError("non-finite gradient on the constant copy (weight standardisation or similar?)")
    finally:
        for hd in handles:
            hd.remove()
        if used is not None:
            used.append(total[0])
    sup = (g.abs().sum(dim=1) > 0).numpy()  # 2 x S x S
    return sup, (int(h), int(w)), ((yc, xc), (y2, x2))


def _support_finite(cp, layer, size, collapse, used):
    """:func:`_support`, retried with every output rescaled when the plain constant copy overflows."""
    try:
        return _support(cp, layer, size, collapse, used)
    except RuntimeError as e:
        if "non-finite" not in str(e):
            raise
        return _support(cp, layer, size, collapse, used, rescale=True)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise RuntimeError("the unit's gradient is zero everywhere (the layer does not depend on the input?)")
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def gradient_receptive_field(model: nn.Module, layer: str, input_size: int = 224,
                             max_input: int = MAX_INPUT, grow: bool = True) -> ReceptiveField:
    """Exact receptive field of ``layer``'s units from the gradient support of one unit.

    Measured for the centre unit of an ``input_size`` input; while that field touches the image
    border (so it may be cut off) the input is doubled, up to ``max_input`` and while the doubled pass's
    activations (4x the last one's) stay within :data:`GROW_BUDGET` (a Swin-T's last stage at 448 px in float64
    would hold ~3 GB); a field still cut off is marked clipped. The user's model is never modified (all work
    happens on a constant copy).
    """
    last_err: Exception | None = None
    threads = torch.get_num_threads()
    for collapse in (True, False):
        # the one-channel copy is a chain of tiny ops: one thread avoids thread-pool sync overhead
        torch.set_num_threads(1 if collapse else threads)
        try:
            cp = _constant_copy(model, collapse, keep=layer)
            mod = layers_mod.resolve_layer(cp, layer)
            limit = max_input if collapse else min(max_input, 1024)
            size = int(input_size)
            used: list[int] = []
            res = _support_finite(cp, mod, size, collapse, used)
            while (grow and _touches(_bbox(res[0][0]), size) and size * 2 <= limit
                   and 4 * used[-1] <= GROW_BUDGET):
                try:
                    bigger = _support_finite(cp, mod, size * 2, collapse, used)
                except Exception:  # noqa: BLE001 - some models only run at their own size
                    break
                size, res = size * 2, bigger
            return _field_from_support(layer, res, size, "gradient" + ("" if collapse else " (full width)"))
        except Exception as e:  # noqa: BLE001 - collapsed copy unsupported: try full width
            last_err = e
            continue
        finally:
            torch.set_num_threads(threads)
    raise RuntimeError(f"could not compute the receptive field of {layer!r}: {last_err}")


def _touches(b: tuple[int, int, int, int], size: int) -> bool:
    return b[0] == 0 or b[1] == 0 or b[2] == size or b[3] == size


def _field_from_support(layer: str, res, size: int, method: str) -> ReceptiveField:
    sup, (h, w), ((yc, xc), (y2, x2)) = res
    b0, b1 = _bbox(sup[0]), _bbox(sup[1])
    clipped = _touches(b0, size)

    def step(lo0, lo1, hi0, hi1, c, c2, n):
        if c2 == c:  # a single unit along this axis: the step is meaningless
            return max(1, round(size / max(1, n)))
        if lo0 > 0:
            return lo1 - lo0
        if hi1 < size:
            return hi1 - hi0
        return max(1, round(size / max(1, n)))  # field wider than the image on both sides

    jy = step(b0[0], b1[0], b0[2], b1[2], yc, y2, h)
    jx = step(b0[1], b1[1], b0[3], b1[3], xc, x2, w)
    return ReceptiveField(
        layer=layer, size=(b0[2] - b0[0], b0[3] - b0[1]), jump=(int(jy), int(jx)),
        origin=(b0[0] - yc * jy, b0[1] - xc * jx), method=method, clipped=bool(clipped), input_size=size,
    )


# ----------------------------------------------------------------------------------------------
# analytic composition


def analytic_receptive_field(model: nn.Module, layer: str) -> ReceptiveField:
    """Compose kernel/stride/padding/dilation of the Conv/Pool layers up to ``layer``.

    Visits leaf modules in definition order up to and including ``layer`` (and its children).
    Exact for plain chains such as VGG and AlexNet; branches, padding done in ``forward`` and
    adaptive pools are invisible to it (use :func:`gradient_receptive_field` for those).
    """
    target = layers_mod.resolve_layer(model, layer)
    inside = {id(m) for m in target.modules()}
    r, j, start = 1.0, 1.0, 0.0  # field size, step, centre of unit 0 (pixel coordinates)
    reached = False
    for _name, m in model.named_modules():
        if list(m.children()):
            continue
        if id(m) in inside:
            reached = True
        elif reached:
            break
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            pair = nn.modules.utils._pair
            if isinstance(m, nn.Conv2d):
                k, s, d = m.kernel_size[0], m.stride[0], m.dilation[0]
                p = m.padding[0] if not isinstance(m.padding, str) else (
                    (d * (k - 1)) // 2 if m.padding == "same" else 0)
            else:
                k, s, p = pair(m.kernel_size)[0], pair(m.stride or m.kernel_size)[0], pair(m.padding)[0]
                d = pair(getattr(m, "dilation", 1))[0]
            keff = d * (k - 1) + 1
            start = start + ((keff - 1) / 2.0 - p) * j
            r = r + (keff - 1) * j
            j = j * s
        elif isinstance(m, nn.Linear) and reached:
            raise ValueError(f"{layer!r} is (after) a Linear layer: its receptive field is the whole input")
    if not reached:
        raise ValueError(f"layer {layer!r} has no leaf modules")
    ri, ji = int(round(r)), int(round(j))
    y0 = int(math.floor(start - (r - 1) / 2.0 + 1e-9))
    return ReceptiveField(layer=layer, size=(ri, ri), jump=(ji, ji), origin=(y0, y0), method="analytic")


TOKEN_PATCH = "token patch"


def token_patch_field(layer: str, grid: tuple[int, int], input_size: int) -> ReceptiveField:
    """The field shown for a token of a ``grid`` of patch tokens: the token's own patch (``input_size / grid``
    pixels). After the first global-attention block every token's receptive field is the whole image, so this is
    where the token sits, not the only pixels its value depends on (``method`` says so)."""
    ph, pw = max(1, input_size // grid[0]), max(1, input_size // grid[1])
    return ReceptiveField(layer, (ph, pw), (ph, pw), (0, 0), method=TOKEN_PATCH, input_size=input_size)


#: the receptive field of a layer at an input size (:func:`field_for`)
RECEPTIVE_FIELD: MemoKey[ReceptiveField] = MemoKey("inspection.receptive_field")


def field_for(ctx: Ctx, layer: str) -> ReceptiveField:
    """Receptive field of ``layer`` of ``ctx.model`` at the run's input size, memoised per run (a token
    sequence's: :func:`token_patch_field`). On a model with attention whose constant copy cannot be followed
    (MaxViT: without its normalisation the attention logits overflow float64), a grid layer's units are shown
    as their own cell too, :data:`TOKEN_PATCH`: after grid or global attention a unit sees the whole image."""
    lay = ctx.probe().layout(layer)
    if lay is not None and lay.kind == "tokens":
        return token_patch_field(layer, lay.grid, ctx.pre.size)

    def measure() -> ReceptiveField:
        try:
            return gradient_receptive_field(ctx.model, layer, ctx.pre.size)
        except RuntimeError:
            if lay is None or not lay.spatial or not layers_mod.attention_types(ctx.model):
                raise
            return token_patch_field(layer, lay.grid, ctx.pre.size)

    return ctx.memo(RECEPTIVE_FIELD.at(layer, ctx.pre.size), measure)


def interior_units(rf: ReceptiveField, grid: tuple[int, int], input_size: int) -> tuple[int, int, int, int] | None:
    """Grid range ``(y0, x0, y1, x1)`` (end exclusive) of the units whose whole field lies inside the input.

    None when no unit's field fits (fields larger than the image).
    """
    out = []
    for a in range(2):
        o, j, s, n = rf.origin[a], max(1, rf.jump[a]), rf.size[a], grid[a]
        lo = max(0, -((o) // j))  # ceil(-o / j): first unit with o + u * j >= 0
        hi = min(n - 1, (input_size - s - o) // j)  # last unit with o + u * j + s <= input_size
        if hi < lo:
            return None
        out.append((lo, hi + 1))
    return out[0][0], out[1][0], out[0][1], out[1][1]


def receptive_field(model: nn.Module, layer: str, input_size: int = 224, method: str = "gradient") -> ReceptiveField:
    """The receptive field of ``layer`` (``method``: "gradient", exact, or "analytic", chains only)."""
    if method == "analytic":
        return analytic_receptive_field(model, layer)
    if method != "gradient":
        raise ValueError(f"unknown receptive-field method {method!r} (gradient or analytic)")
    return gradient_receptive_field(model, layer, input_size)
