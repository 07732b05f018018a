"""Between-step regularisers (Yosinski et al. 2015) for :func:`reportgen.optvis.render`.

A regulariser may change the gradient before the optimiser step (``on_grad``) and the image after it
(``after_step``). ``image_grad`` is the gradient of the objective w.r.t. the *pixels* (B x 3 x H x W),
``center`` is the pixel value that plays the role of zero in a mean-subtracted image (the model's
normalisation mean, or 0.5).
"""

from __future__ import annotations

from typing import Sequence

import torch

from .param import ImageParam
from .transforms import gaussian_blur


def _center(center, ref: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(center, dtype=ref.dtype, device=ref.device).reshape(1, -1, 1, 1)


def _below_percentile(score: torch.Tensor, pct: float) -> torch.Tensor:
    """B x H x W mask of the entries below each image's ``pct`` percentile."""
    flat = score.flatten(1)
    q = torch.quantile(flat, pct / 100.0, dim=1, keepdim=True)
    return (flat < q).view_as(score)


class Regularizer:
    """Base class: override ``on_grad`` and/or ``after_step``."""

    name = "regularizer"

    def on_grad(self, step: int, param: ImageParam, image_grad: torch.Tensor | None,
                grads: list[torch.Tensor | None]) -> None:
        """Modify ``grads`` (the parameters' gradients) in place before the optimiser step."""

    def after_step(self, step: int, param: ImageParam, image_grad: torch.Tensor) -> None:
        """Modify the image (``param.set_image``) after the optimiser step."""

    def __repr__(self) -> str:
        return self.name


class BlurEvery(Regularizer):
    """Gaussian-blur the image (std ``sigma`` pixels) every ``every`` steps: suppresses high frequencies."""

    def __init__(self, every: int = 4, sigma: float = 0.5):
        self.every, self.sigma = max(1, int(every)), float(sigma)
        self.name = f"blur σ={self.sigma:g}px every {self.every} steps"

    @torch.no_grad()
    def after_step(self, step, param, image_grad):
        if (step + 1) % self.every == 0 and self.sigma > 0:
            param.set_image(gaussian_blur(param.image().detach(), self.sigma))


class _ClipSmall(Regularizer):
    """Set the pixels whose :meth:`score` is below its ``percentile``-th percentile to ``center``
    (every ``every`` steps)."""

    what = ""  # the score's name in the regulariser's name
    needs_grad = False

    def __init__(self, percentile: float = 10.0, center: float | Sequence[float] = 0.5, every: int = 1):
        self.pct, self.center, self.every = float(percentile), center, max(1, int(every))
        self.name = (f"clip pixels with the smallest {self.pct:g}% {self.what}"
                     + (f" every {self.every} steps" if self.every > 1 else ""))

    def score(self, shifted: torch.Tensor, image_grad: torch.Tensor | None) -> torch.Tensor:
        """B x H x W from the centred image ``shifted = I - center``."""
        raise NotImplementedError

    @torch.no_grad()
    def after_step(self, step, param, image_grad):
        if self.pct <= 0 or (self.needs_grad and image_grad is None) or (step + 1) % self.every:
            return
        img = param.image().detach()
        c = _center(self.center, img)
        mask = _below_percentile(self.score(img - c, image_grad), self.pct)[:, None]
        param.set_image(torch.where(mask, c.expand_as(img), img))


class ClipSmallNorm(_ClipSmall):
    """Set the pixels whose colour norm ``||I[:, y, x] - center||`` is below the ``percentile``-th
    percentile to ``center``."""

    what = "norms"

    def score(self, shifted, image_grad):
        return shifted.norm(dim=1)


class ClipSmallContribution(_ClipSmall):
    """Set the pixels with the smallest contribution ``|sum_c (I - center) * dS/dI|`` to ``center``
    (Yosinski's approximation of 'how much the score would drop if the pixel were zeroed')."""

    what = "contributions"
    needs_grad = True

    def score(self, shifted, image_grad):
        return (shifted * image_grad).sum(1).abs()


class ClipSmallGradient(Regularizer):
    """Zero the gradient of the pixels whose gradient norm is below the ``percentile``-th percentile
    (the lecture's 'clip pixels with small gradients to 0'); works for pixel parameterisations."""

    def __init__(self, percentile: float = 10.0):
        self.pct = float(percentile)
        self.name = f"zero the smallest {self.pct:g}% pixel gradients"

    @torch.no_grad()
    def on_grad(self, step, param, image_grad, grads):
        if self.pct <= 0 or image_grad is None:
            return
        mask = _below_percentile(image_grad.norm(dim=1), self.pct)[:, None]
        for g in grads:
            if g is not None and g.shape == image_grad.shape:
                g.masked_fill_(mask.expand_as(g), 0.0)


class L2Decay(Regularizer):
    """Shrink the image towards ``center`` by a factor ``1 - rate`` after each step (weight decay on pixels)."""

    def __init__(self, rate: float = 0.01, center: float | Sequence[float] = 0.5):
        self.rate, self.center = float(rate), center
        self.name = f"L2 decay {self.rate:g}"

    @torch.no_grad()
    def after_step(self, step, param, image_grad):
        if self.rate <= 0:
            return
        img = param.image().detach()
        c = _center(self.center, img)
        param.set_image(c + (1 - self.rate) * (img - c))


class ProjectLinf(Regularizer):
    """Keep the image within ``eps`` (L-inf, pixel units) of ``origin`` (PGD's projection)."""

    def __init__(self, origin: torch.Tensor, eps: float):
        self.origin, self.eps = origin.detach(), float(eps)
        self.name = f"project to the L-inf ball of radius {self.eps * 255:.3g}/255"

    @torch.no_grad()
    def after_step(self, step, param, image_grad):
        img = param.image().detach()
        o = self.origin.to(img)
        param.set_image(torch.max(torch.min(img, o + self.eps), o - self.eps))
