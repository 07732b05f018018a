"""Contrastive targets: attribute the logit difference ``S_P - S_T`` ("why P rather than T").

:func:`logit_difference` wraps a model so that its single output is ``S_P(x) - S_T(x)`` per image
(``P``, ``T`` per image); every attribution function of :mod:`reportgen.attribution` that takes
``(model, x, target)`` then explains the difference with ``target=0`` (Grad-CAM:
``relu(sum_c w_c A_c)``, ``w_c = mean_ij d(S_P - S_T)/dA_cij``; gradient x input:
``sum_c x_c d(S_P - S_T)/dx_c``). The wrapped model's modules are the original ones, so a layer of
``model`` still hooks; nothing is copied and nothing is left behind.
"""

from __future__ import annotations

import torch
from torch import nn

from .cam import gradcam, upsample
from .gradients import Target, _targets, gradient


class LogitDifference(nn.Module):
    """``model(x)[:, P] - model(x)[:, T]`` as a B x 1 output (``P``, ``T``: an int or one per image)."""

    def __init__(self, model: nn.Module, positive: Target, negative: Target):
        super().__init__()
        self.model = model
        self.positive = positive
        self.negative = negative

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x)
        p = _targets(self.positive, len(x), z.device)[:, None]
        n = _targets(self.negative, len(x), z.device)[:, None]
        return z.gather(1, p) - z.gather(1, n)


def logit_difference(model: nn.Module, positive: Target, negative: Target) -> LogitDifference:
    """A model whose one output is ``S_positive - S_negative`` (explain it with ``target=0``)."""
    return LogitDifference(model, positive, negative)


def contrastive_gradcam(model: nn.Module, layer: nn.Module, x: torch.Tensor, positive: Target, negative: Target,
                        size: tuple[int, int] | None = None) -> torch.Tensor:
    """Grad-CAM of ``S_P - S_T`` at ``layer`` (B x h x w, or B x H x W with ``size``): where the layer's features
    raise P's logit more than T's."""
    return gradcam(logit_difference(model, positive, negative), layer, x, 0, size=size)


def contrastive_gradient_x_input(model: nn.Module, x: torch.Tensor, positive: Target,
                                 negative: Target) -> torch.Tensor:
    """``sum_c x_c d(S_P - S_T)/dx_c`` (B x H x W, signed): positive where a pixel pushes towards P over T."""
    g = gradient(logit_difference(model, positive, negative), x, 0)
    return (g * x.detach()).float().sum(1)


def class_gradcam(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: Target,
                  size: tuple[int, int]) -> torch.Tensor:
    """Plain Grad-CAM upsampled to ``size`` (the per-class maps beside the contrastive ones)."""
    return upsample(gradcam(model, layer, x, target), size)


def gradient_x_input(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """``sum_c x_c dS_k/dx_c`` (B x H x W, signed)."""
    return (gradient(model, x, target) * x.detach()).float().sum(1)
