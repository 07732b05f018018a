"""Objectives: what an image optimisation maximises (lucent's ``optvis.objectives`` idea).

An :class:`Objective` wraps ``fn(acts, image) -> Tensor[B]``: ``acts`` maps the dotted layer names
in ``objective.layers`` to their outputs for the current (transformed) model input, plus
``acts["logits"]`` (the model output, when ``needs_logits``) and ``acts["input"]`` (the transformed
image the model saw); ``image`` is the parameterised image itself (B x 3 x H x W in [0, 1], before
transforms). It returns one value per batch element; :func:`reportgen.optvis.render` *maximises*
their sum. Objectives compose: ``class_logit(3) - 1e-3 * l2()``, ``0.5 * a + b``, ``-a``, ``a * b``.

Penalties (:func:`l2`, :func:`total_variation`, :func:`l1`) are positive quantities: subtract them.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

LOGITS = "logits"
INPUT = "input"
SPECIAL = (LOGITS, INPUT)

ObjectiveFn = Callable[[dict, torch.Tensor], torch.Tensor]
IntOrSeq = int | Sequence[int] | torch.Tensor


class Objective:
    """A differentiable score of the captured activations and the image, one value per batch element."""

    def __init__(self, fn: ObjectiveFn, layers: Sequence[str] = (), name: str = "", needs_logits: bool = False):
        self.fn = fn
        self.layers = tuple(dict.fromkeys(n for n in layers if n not in SPECIAL))
        self.needs_logits = bool(needs_logits or LOGITS in layers)
        self.name = name or getattr(fn, "__name__", "objective")

    def __call__(self, acts: dict, image: torch.Tensor) -> torch.Tensor:
        v = self.fn(acts, image)
        if not isinstance(v, torch.Tensor):
            v = torch.as_tensor(v, dtype=image.dtype, device=image.device)
        if v.dim() == 0:
            v = v.expand(image.shape[0])
        return v

    def __repr__(self) -> str:
        return f"Objective({self.name})"

    # ----- composition ------------------------------------------------------------------------
    @staticmethod
    def _combine(a: "Objective", b: "Objective", op: Callable, sym: str) -> "Objective":
        return Objective(lambda acts, img: op(a(acts, img), b(acts, img)), a.layers + b.layers,
                         f"({a.name} {sym} {b.name})", a.needs_logits or b.needs_logits)

    def __add__(self, other):
        if isinstance(other, (int, float)):
            if other == 0:
                return self
            return Objective(lambda acts, img: self(acts, img) + other, self.layers, f"({self.name} + {other:g})",
                             self.needs_logits)
        return self._combine(self, _as_objective(other), torch.add, "+")

    def __radd__(self, other):  # sum([...]) starts from 0
        return self.__add__(other)

    def __sub__(self, other):
        if isinstance(other, (int, float)):
            return self + (-other)
        return self._combine(self, _as_objective(other), torch.sub, "-")

    def __rsub__(self, other):
        return (-self) + other

    def __neg__(self):
        return Objective(lambda acts, img: -self(acts, img), self.layers, f"-{self.name}", self.needs_logits)

    def __mul__(self, other):
        if isinstance(other, (int, float)):
            return Objective(lambda acts, img: other * self(acts, img), self.layers, f"{other:g}·{self.name}",
                             self.needs_logits)
        return self._combine(self, _as_objective(other), torch.mul, "·")

    __rmul__ = __mul__

    def __truediv__(self, other):
        if not isinstance(other, (int, float)):
            raise TypeError("an objective can only be divided by a number")
        return self * (1.0 / other)


def _as_objective(x) -> Objective:
    if isinstance(x, Objective):
        return x
    raise TypeError(f"cannot combine an Objective with {type(x).__name__}")


def objective(layers: Sequence[str] = (), name: str = "", needs_logits: bool = False):
    """Decorator: ``@objective(layers=["features.3"])`` turns ``fn(acts, image)`` into an Objective."""

    def deco(fn: ObjectiveFn) -> Objective:
        return Objective(fn, layers, name or fn.__name__, needs_logits)

    return deco


def _per_batch(idx: IntOrSeq, batch: int, device) -> torch.Tensor:
    t = torch.as_tensor(idx, dtype=torch.long, device=device).flatten()
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise ValueError(f"got {t.numel()} indices for a batch of {batch}")
    return t


def _get(acts: dict, name: str) -> torch.Tensor:
    try:
        return acts[name]
    except KeyError:
        raise RuntimeError(f"layer {name!r} was not called during the forward pass") from None


# ----- scores ----------------------------------------------------------------------------------
def class_logit(c: IntOrSeq) -> Objective:
    """The unnormalised class score ``S_c(I)`` (one class, or one class per batch element)."""

    def fn(acts, img):
        z = _get(acts, LOGITS)
        return z.gather(1, _per_batch(c, z.shape[0], z.device)[:, None])[:, 0]

    return Objective(fn, (LOGITS,), f"logit[{c}]", True)


def class_log_prob(c: IntOrSeq) -> Objective:
    """``log softmax(S(I))_c``: raises class c and lowers the others."""

    def fn(acts, img):
        z = torch.log_softmax(_get(acts, LOGITS), 1)
        return z.gather(1, _per_batch(c, z.shape[0], z.device)[:, None])[:, 0]

    return Objective(fn, (LOGITS,), f"log_p[{c}]", True)


def channel(layer: str, c: IntOrSeq) -> Objective:
    """Mean activation of channel ``c`` of ``layer`` (over all positions)."""

    def fn(acts, img):
        a = _get(acts, layer)
        idx = _per_batch(c, a.shape[0], a.device)
        sel = a[torch.arange(a.shape[0], device=a.device), idx]
        return sel.flatten(1).mean(1) if sel.dim() > 1 else sel

    return Objective(fn, (layer,), f"{layer}:{c}")


def neuron(layer: str, c: IntOrSeq, y: int | None = None, x: int | None = None) -> Objective:
    """One unit ``a[c, y, x]`` of a conv layer (centre position by default)."""

    def fn(acts, img):
        a = _get(acts, layer)
        idx = _per_batch(c, a.shape[0], a.device)
        sel = a[torch.arange(a.shape[0], device=a.device), idx]
        if sel.dim() == 1:
            return sel
        yy = sel.shape[1] // 2 if y is None else y
        xx = sel.shape[2] // 2 if x is None else x
        return sel[:, yy, xx]

    return Objective(fn, (layer,), f"{layer}:{c}@({y},{x})")


def layer_l2(layer: str) -> Objective:
    """DeepDream: ``0.5 * ||a_l(I)||^2``; its gradient w.r.t. the activation is the activation itself."""

    def fn(acts, img):
        return 0.5 * _get(acts, layer).pow(2).flatten(1).sum(1)

    return Objective(fn, (layer,), f"0.5·||{layer}||²")


# ----- image penalties (positive: subtract them) -----------------------------------------------
def l2(center: float | Sequence[float] = 0.5) -> Objective:
    """``||I - center||^2`` per image (pixel units; ``center`` is the 'zero' of a mean-subtracted image)."""

    def fn(acts, img):
        cen = torch.as_tensor(center, dtype=img.dtype, device=img.device).reshape(1, -1, 1, 1)
        return (img - cen).pow(2).flatten(1).sum(1)

    return Objective(fn, (), "||I||²")


def l1(center: float | Sequence[float] = 0.5) -> Objective:
    """``|I - center|_1`` per image."""

    def fn(acts, img):
        cen = torch.as_tensor(center, dtype=img.dtype, device=img.device).reshape(1, -1, 1, 1)
        return (img - cen).abs().flatten(1).sum(1)

    return Objective(fn, (), "|I|₁")


def tv_beta(img: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """``R_TV^beta(x) = sum_(c,i,j) ((x[i,j+1] - x[i,j])^2 + (x[i+1,j] - x[i,j])^2)^(beta/2)`` per image
    (Mahendran & Vedaldi 2015). Exactly 0 for a constant image; for ``beta < 2`` a tiny epsilon keeps the
    gradient finite where both differences vanish (and is subtracted again)."""
    dx = img[:, :, :-1, 1:] - img[:, :, :-1, :-1]
    dy = img[:, :, 1:, :-1] - img[:, :, :-1, :-1]
    s = dx.pow(2) + dy.pow(2)
    if beta == 2.0:
        return s.flatten(1).sum(1)
    eps = 1e-8
    return ((s + eps).pow(beta / 2) - eps ** (beta / 2)).flatten(1).sum(1)


def total_variation(beta: float = 2.0) -> Objective:
    """``sum (dx^2 + dy^2)^(beta/2)`` per image (Mahendran & Vedaldi's TV^beta prior, :func:`tv_beta`)."""

    def fn(acts, img):
        return tv_beta(img, beta)

    return Objective(fn, (), "TV" if beta == 2.0 else f"TV^{beta:g}")


# ----- feature statistics: inversion, texture and style (Mahendran & Vedaldi 2015; Gatys et al. 2015/2016) ----
def gram_matrix(f: torch.Tensor) -> torch.Tensor:
    """``G = F F^T / (H W)`` for a B x C x H x W feature map (F: C x HW): channel co-activations, B x C x C."""
    b, c = f.shape[:2]
    flat = f.reshape(b, c, -1)
    return flat @ flat.transpose(1, 2) / flat.shape[-1]


def relative_sq_error(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``||x - t||^2 / ||t||^2`` per batch element (``target`` broadcasts over the batch)."""
    t = target.expand_as(x)
    return (x - t).pow(2).flatten(1).sum(1) / t.pow(2).flatten(1).sum(1).clamp_min(1e-12)


def feature_loss(layer: str, target: torch.Tensor) -> Objective:
    """Feature matching (inversion, content loss): ``||phi_l(x) - phi_l(x0)||^2 / ||phi_l(x0)||^2``.
    Positive: subtract it. ``target`` is 1 x ... or B x ... (one target per image)."""

    def fn(acts, img):
        return relative_sq_error(_get(acts, layer), target.to(img.device))

    return Objective(fn, (layer,), f"feat[{layer}]")


def gram_loss(layers: Sequence[str], targets: dict, weights: torch.Tensor | None = None) -> Objective:
    """Gram (style / texture) loss ``sum_l w_l ||G_l(x) - G_l(target)||^2 / ||G_l(target)||^2``.

    ``targets[layer]`` is 1 x C x C or B x C x C; ``weights`` is None (1 for every layer) or a B x L
    tensor (e.g. a growing set of layers per image). Positive: subtract it."""
    names = list(layers)

    def fn(acts, img):
        total = 0.0
        for k, name in enumerate(names):
            e = relative_sq_error(gram_matrix(_get(acts, name)), targets[name].to(img.device))
            w = 1.0 if weights is None else weights[:, k].to(e)
            total = total + w * e
        return total

    return Objective(fn, names, "gram[" + ",".join(names) + "]")


def per_image(objectives: Sequence[Objective]) -> Objective:
    """Batch element ``b`` is scored by ``objectives[b]`` (e.g. one DeepDream layer per image)."""
    objs = list(objectives)

    def fn(acts, img):
        if img.shape[0] != len(objs):
            raise ValueError(f"per_image has {len(objs)} objectives for a batch of {img.shape[0]}")
        return torch.stack([o(acts, img)[b] for b, o in enumerate(objs)])

    layers = tuple(n for o in objs for n in o.layers)
    return Objective(fn, layers, "[" + ", ".join(o.name for o in objs) + "]", any(o.needs_logits for o in objs))
