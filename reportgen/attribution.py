"""Attribution on tensors (captum-style): functions of ``(model, x, target)``, no RunContext needed.

``model`` maps a batch ``x`` (B x C x H x W) to logits (B x K); ``target`` is an int or a length-B
sequence/tensor of class indices. Every function is batched (one forward/backward per batch or per
chunk of interpolation/noise samples), restores the model's train/eval flags and ``requires_grad``
flags (:mod:`reportgen.hooks`) and leaves no hook behind.

* :func:`gradient` / :func:`saliency` — Simonyan et al. (2014): ``dS_k/dx`` and ``|dS_k/dx|``.
* :func:`smoothgrad` — Smilkov et al. (2017): ``mean_n A(x + N(0, sigma^2))``.
* :func:`integrated_gradients` — Sundararajan et al. (2017):
  ``(x - x') * int_0^1 dS_k(x' + a (x - x'))/dx da`` with a completeness check
  (``sum IG = S_k(x) - S_k(x')``); the step count is raised until the gap is within ``tol``.
* :func:`gradcam` — Selvaraju et al. (2017): ``relu(sum_c w_c A_c)``, ``w_c = mean_ij dS_k/dA_cij``;
  :func:`gradcam_plus_plus` — Chattopadhay et al. (2018); :func:`guided_gradcam` — guided backprop
  times the upsampled Grad-CAM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .hooks import capture_outputs, eval_mode, frozen_params

Target = int | Sequence[int] | torch.Tensor


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
    averages ``A^2`` (SmoothGrad-Squared). Noise is drawn from ``generator`` (CPU) so runs repeat;
    ``chunk`` noisy copies of the batch go through the model at once.
    """
    b = len(x)
    flat = x.detach().flatten(1)
    sigma = (noise * (flat.amax(1) - flat.amin(1))).view(b, *([1] * (x.dim() - 1)))
    t = _targets(target, b, x.device)
    total = torch.zeros_like(x, dtype=torch.float32)
    done = 0
    while done < n_samples:
        m = min(chunk, n_samples - done)
        eps = torch.randn((m, *x.shape), generator=generator, dtype=torch.float32).to(x.device, x.dtype)
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
    tried: list[tuple[int, float]]  # (steps, worst gap) per attempt


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
        acc += (g * w.view(shape)).sum(0)
    return acc * diff.float()


def integrated_gradients(model: nn.Module, x: torch.Tensor, target: Target, baseline: torch.Tensor | float = 0.0,
                         steps: int = 32, tol: float = 0.01, max_steps: int = 512, chunk: int = 64,
                         floor: float = 1e-3) -> IGResult:
    """Sundararajan et al. (2017): ``IG_i = (x_i - x'_i) * int_0^1 dS_k(x' + a (x - x'))/dx_i da``.

    The integral uses Gauss-Legendre quadrature with ``steps`` nodes. Completeness
    (``sum_i IG_i = S_k(x) - S_k(x')``) is checked per image; while the worst relative gap exceeds
    ``tol`` the step count doubles (up to ``max_steps``). ``chunk`` interpolated images per pass.
    """
    x = x.detach()
    base = torch.as_tensor(baseline, dtype=x.dtype).to(x.device).expand_as(x).detach().clone()
    t = _targets(target, len(x), x.device)
    delta = (class_scores(model, x, t) - class_scores(model, base, t)).cpu().numpy().astype(np.float64)
    tried = []
    s = max(1, int(steps))
    while True:
        attr = _ig_fixed(model, x, base, t, s, chunk)
        total = attr.flatten(1).sum(1).double().cpu().numpy()
        gap = np.abs(total - delta) / np.maximum(np.abs(delta), floor)
        tried.append((s, float(gap.max(initial=0.0))))
        if gap.max(initial=0.0) <= tol or s >= max_steps:
            break
        s = min(max_steps, 2 * s)
    return IGResult(attr, s, gap, delta, total, tol, bool(gap.max(initial=0.0) <= tol), tried)


# ----- class activation maps ------------------------------------------------------------------

def _layer_and_grad(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: Target):
    """Activation ``A`` of ``layer`` (B x C x h x w) and ``dS_k/dA`` in one forward/backward pass."""
    with eval_mode(model), frozen_params(model), torch.enable_grad(), \
            capture_outputs({"layer": layer}, detach=False, clone=False) as store:
        z = model(x.detach().clone().requires_grad_(True))
        if "layer" not in store:
            raise RuntimeError("the layer was not called during the forward pass")
        a = store["layer"]
        if not a.requires_grad:
            raise RuntimeError("the layer's output does not depend on the input")
        t = _targets(target, len(x), z.device)
        (g,) = torch.autograd.grad(z.gather(1, t[:, None]).sum(), a)
    if a.dim() != 4:
        raise ValueError(f"Grad-CAM needs a spatial layer (B x C x h x w output), got shape {tuple(a.shape)}")
    return a.detach().float(), g.detach().float()


def gradcam(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: Target,
            size: tuple[int, int] | None = None) -> torch.Tensor:
    """Selvaraju et al. (2017): ``relu(sum_c w_c A_c)``, ``w_c = mean_ij dS_k/dA_cij`` (B x h x w).

    ``size`` upsamples bilinearly (e.g. to the input's H x W); the values are not normalised.
    """
    a, g = _layer_and_grad(model, layer, x, target)
    cam = F.relu((g.mean((2, 3), keepdim=True) * a).sum(1))
    return upsample(cam, size) if size else cam


def gradcam_plus_plus(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: Target,
                      size: tuple[int, int] | None = None) -> torch.Tensor:
    """Chattopadhay et al. (2018): ``w_c = sum_ij alpha_cij relu(dS/dA_cij)``,
    ``alpha = g^2 / (2 g^2 + sum_ij A_cij g^3)`` (the closed form for ``exp(S)``); map ``relu(sum_c w_c A_c)``.
    """
    a, g = _layer_and_grad(model, layer, x, target)
    g2, g3 = g ** 2, g ** 3
    denom = 2 * g2 + (a.sum((2, 3), keepdim=True) * g3)
    denom = torch.where(denom != 0, denom, torch.ones_like(denom))
    alpha = g2 / denom
    w = (alpha * F.relu(g)).sum((2, 3), keepdim=True)
    cam = F.relu((w * a).sum(1))
    return upsample(cam, size) if size else cam


def guided_backprop(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """Springenberg et al. (2015): ``dS_k/dx`` with ``relu(g)·[x>0]`` at every ReLU (B x C x H x W)."""
    from .gradrules import gradient_rule

    with gradient_rule(model, "guided"):
        return gradient(model, x, target)


def guided_gradcam(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: Target,
                   cam: torch.Tensor | None = None) -> torch.Tensor:
    """Selvaraju et al. (2017): guided backprop (B x C x H x W) times Grad-CAM upsampled to H x W."""
    if cam is None:
        cam = gradcam(model, layer, x, target)
    up = upsample(cam, tuple(x.shape[-2:]))
    return guided_backprop(model, x, target) * up[:, None].to(x.device)


def upsample(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B x h x w -> B x H x W, bilinear."""
    return F.interpolate(cam[:, None].float(), size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def normalise(m: torch.Tensor) -> torch.Tensor:
    """Per-image min-max to [0, 1] (a flat map becomes 0)."""
    flat = m.flatten(1)
    lo, hi = flat.amin(1), flat.amax(1)
    shape = (len(m), *([1] * (m.dim() - 1)))
    return (m - lo.view(shape)) / (hi - lo).clamp_min(1e-12).view(shape)


def last_spatial_block(model: nn.Module, example: torch.Tensor) -> str:
    """Dotted name of the last module to *finish* with a spatial output (B x C x h x w, h*w > 1).

    Forward hooks fire when a module returns, so this is the outermost block around the last spatial
    operation (``features`` in VGG/MobileNet, ``layer4`` in ResNet), i.e. Grad-CAM's usual layer.
    """
    mods = {n: m for n, m in model.named_modules() if n}
    with eval_mode(model), torch.inference_mode(), capture_outputs(mods) as store:
        model(example[:1])
    best = None
    for name, t in store.items():  # insertion order = order in which modules first returned
        if isinstance(t, torch.Tensor) and t.dim() == 4 and t.shape[2] * t.shape[3] > 1:
            best = name
    if best is None:
        raise ValueError("the model has no layer with a spatial (B x C x h x w) output")
    return best


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps (ties get average ranks); 0 when either is constant."""
    from scipy.stats import rankdata

    ra, rb = rankdata(np.ravel(a)), rankdata(np.ravel(b))
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> float:
    """Structural similarity (Wang et al. 2004) of two maps, each min-max scaled to [0, 1] first;
    Gaussian window ``sigma``, ``C1 = 0.01^2``, ``C2 = 0.03^2``."""
    import cv2

    def unit(m):
        m = np.asarray(m, dtype=np.float64)
        r = m.max() - m.min()
        return (m - m.min()) / r if r > 0 else np.zeros_like(m)

    x, y = unit(a), unit(b)
    blur = lambda m: cv2.GaussianBlur(m, (0, 0), sigmaX=sigma)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


__all__ = [
    "class_scores", "gradient", "saliency", "to_map", "smoothgrad", "IGResult", "integrated_gradients",
    "gradcam", "gradcam_plus_plus", "guided_backprop", "guided_gradcam", "upsample", "normalise",
    "last_spatial_block", "rank_correlation", "ssim",
]
