"""Gradient attributions on tensors: functions of ``(model, x, target)``, no RunContext needed.

``model`` maps a batch ``x`` (B x C x H x W) to logits (B x K); ``target`` is an int or a length-B
sequence/tensor of class indices. Every function is batched (one forward/backward per batch or per
chunk of interpolation/noise samples), restores the model's train/eval flags and ``requires_grad``
flags (:mod:`reportgen.inspection.hooks`) and leaves no hook behind.

* :func:`gradient` / :func:`saliency` — Simonyan et al. (2014): ``dS_k/dx`` and ``|dS_k/dx|``.
* :func:`smoothgrad` — Smilkov et al. (2017): ``mean_n A(x + N(0, sigma^2))``.
* :func:`integrated_gradients` — Sundararajan et al. (2017):
  ``(x - x') * int_0^1 dS_k(x' + a (x - x'))/dx da`` with a completeness check
  (``sum IG = S_k(x) - S_k(x')``); the step count is raised until the gap is within ``tol``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..inspection.hooks import eval_mode, frozen_params

Target = int | Sequence[int] | torch.Tensor | np.ndarray


def _targets(target: Target, n: int, device) -> torch.Tensor:
    t = torch.as_tensor(target, dtype=torch.long, device=device).reshape(-1)
    if t.numel() == 1 and n != 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"got {t.numel()} targets for a batch of {n}")
    return t


def class_scores(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """``S_k(x)`` per image (the logit of each image's target), without gradients."""
    with eval_mode(model), torch.inference_mode():
        z = model(x)
    return z.gather(1, _targets(target, len(x), z.device)[:, None])[:, 0].float()


def gradient(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """``dS_k/dx`` for each image (B x C x H x W): one forward and one backward for the batch."""
    with eval_mode(model), frozen_params(model), torch.enable_grad():
        xr = x.detach().clone().requires_grad_(True)
        z = model(xr)
        t = _targets(target, len(x), z.device)
        (g,) = torch.autograd.grad(z.gather(1, t[:, None]).sum(), xr)
    return g.detach()


def saliency(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """Simonyan et al. (2014): ``|dS_k/dx|`` per channel (captum ``Saliency(abs=True)``)."""
    return gradient(model, x, target).abs()


def to_map(attr: torch.Tensor, reduce: str = "absmax") -> torch.Tensor:
    """B x C x H x W attribution -> B x H x W map: ``absmax`` (saliency), ``abssum`` or ``sum`` over C."""
    if reduce == "absmax":
        return attr.abs().amax(1)
    if reduce == "abssum":
        return attr.abs().sum(1)
    if reduce == "sum":
        return attr.sum(1)
    raise ValueError(f"unknown reduction {reduce!r}")


def smoothgrad(model: nn.Module, x: torch.Tensor, target: Target, n_samples: int = 25, noise: float = 0.15,
               generator: torch.Generator | None = None, squared: bool = False,
               attribute: Callable[..., torch.Tensor] = gradient, chunk: int = 8) -> torch.Tensor:
    """Smilkov et al. (2017): ``mean_n A(x + eps_n)``, ``eps_n ~ N(0, sigma^2)``, ``sigma = noise * (max x - min x)``.

    ``attribute`` is the base method (default the plain gradient, as in the paper); ``squared``
    averages ``A^2`` (SmoothGrad-Squared). Noise is drawn from ``generator`` (CPU), one batch-shaped draw per
    sample, so runs repeat whatever ``chunk`` (noisy copies of the batch per pass) is.
    """
    b = len(x)
    flat = x.detach().flatten(1)
    sigma = (noise * (flat.amax(1) - flat.amin(1))).view(b, *([1] * (x.dim() - 1)))
    t = _targets(target, b, x.device)
    total = torch.zeros_like(x, dtype=torch.float32)
    done = 0
    while done < n_samples:
        m = min(chunk, n_samples - done)
        # one x-shaped draw per sample: torch fills normals in blocks of 16, so one (m, *x.shape) draw would change
        # the noise with chunk where x.numel() is not a multiple of 16
        eps = torch.stack([torch.randn(x.shape, generator=generator, dtype=torch.float32)
                           for _ in range(m)]).to(x.device, x.dtype)
        xn = (x.detach()[None] + eps * sigma[None]).reshape(m * b, *x.shape[1:])
        a = attribute(model, xn, t.repeat(m)).float().reshape(m, *x.shape)
        total += (a * a if squared else a).sum(0)
        done += m
    return total / max(1, n_samples)


@dataclass
class IGResult:
    """Integrated gradients of a batch and its completeness check.

    ``gap[i] = |sum IG_i - (S(x_i) - S(x'_i))| / max(|S(x_i) - S(x'_i)|, floor)`` — relative error of
    the completeness axiom; ``converged`` when every gap is within ``tol``.
    """

    attributions: torch.Tensor  # B x C x H x W
    steps: int
    gap: np.ndarray  # per image, relative
    delta: np.ndarray  # per image, S(x) - S(baseline)
    total: np.ndarray  # per image, sum of attributions
    tol: float
    converged: bool
    tried: list[tuple[int, float]]  # (steps, worst gap among the images recomputed at that count) per attempt
    steps_per_image: np.ndarray | None = None  # the node count each image's result comes from


def _gauss_legendre(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes in (0, 1) and weights summing to 1 (captum's default ``gausslegendre`` rule)."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return (nodes + 1) / 2, weights / 2


def _ig_fixed(model, x, baseline, t, steps, chunk):
    alphas, weights = _gauss_legendre(steps)
    b = len(x)
    diff = (x - baseline).detach()
    acc = torch.zeros_like(x, dtype=torch.float32)
    per = max(1, chunk // max(1, b))  # alphas per pass
    for s in range(0, steps, per):
        a = torch.as_tensor(alphas[s:s + per], dtype=x.dtype, device=x.device)
        w = torch.as_tensor(weights[s:s + per], dtype=torch.float32, device=x.device)
        shape = (len(a), 1, *([1] * (x.dim() - 1)))
        xs = (baseline.detach()[None] + a.view(shape) * diff[None]).reshape(len(a) * b, *x.shape[1:])
        g = gradient(model, xs, t.repeat(len(a))).float().reshape(len(a), *x.shape)
        for j in range(len(a)):  # node by node: the same sum whatever the passes (and images) the nodes went in
            acc += g[j] * w[j]
    return acc * diff.float()


def integrated_gradients(model: nn.Module, x: torch.Tensor, target: Target, baseline: torch.Tensor | float = 0.0,
                         steps: int = 32, tol: float = 0.01, max_steps: int = 512, chunk: int = 64,
                         floor: float = 1e-3) -> IGResult:
    """Sundararajan et al. (2017): ``IG_i = (x_i - x'_i) * int_0^1 dS_k(x' + a (x - x'))/dx_i da``.

    The integral uses Gauss-Legendre quadrature with ``steps`` nodes. Completeness
    (``sum_i IG_i = S_k(x) - S_k(x')``) is checked per image; the images whose relative gap still exceeds
    ``tol`` are recomputed with twice the nodes (up to ``max_steps``), the others keep their result, so one
    hard image does not make the whole batch pay for its step count. ``chunk`` interpolated images per pass.
    """
    x = x.detach()
    base = torch.as_tensor(baseline, dtype=x.dtype).to(x.device).expand_as(x).detach().clone()
    t = _targets(target, len(x), x.device)
    delta = (class_scores(model, x, t) - class_scores(model, base, t)).cpu().numpy().astype(np.float64)
    attr = torch.zeros_like(x, dtype=torch.float32)
    total = np.zeros(len(x))
    gap = np.full(len(x), np.inf)
    per_image = np.zeros(len(x), dtype=np.int64)
    tried = []
    s = max(1, int(steps))
    active = np.arange(len(x))
    while len(active):
        sel = torch.as_tensor(active, device=x.device)
        a = _ig_fixed(model, x[sel], base[sel], t[sel], s, chunk)
        attr[sel] = a
        total[active] = a.flatten(1).sum(1).double().cpu().numpy()
        gap[active] = np.abs(total[active] - delta[active]) / np.maximum(np.abs(delta[active]), floor)
        per_image[active] = s
        tried.append((s, float(gap[active].max())))
        if s >= max_steps:
            break
        active = active[gap[active] > tol]
        s = min(max_steps, 2 * s)
    worst = float(gap.max(initial=0.0))
    return IGResult(attr, int(per_image.max(initial=0)), gap, delta, total, tol, worst <= tol, tried, per_image)
