"""Class activation maps on tensors: Grad-CAM (Selvaraju et al. 2017), Grad-CAM++ (Chattopadhay et al.
2018) and Guided Grad-CAM; ``relu(sum_c w_c A_c)`` over a spatial layer ``A`` with per-channel weights
``w_c`` from the class score's gradient. Maps are B x h x w at the layer's resolution (``size`` upsamples)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..inspection.hooks import capture_outputs, eval_mode, frozen_params
from ..inspection.layout import detect, to_grid
from ..inspection.probe import trace_layouts
from .gradients import Target, _targets
from .guided import guided


def activation_and_gradient(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: Target):
    """Activation ``A`` of ``layer`` (B x C x h x w; a token sequence or a channels-last map in its grid view) and
    ``dS_k/dA`` in one forward/backward pass."""
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
    lay = detect(a, (int(x.shape[-2]), int(x.shape[-1])), layer)  # tokens / channels-last -> B x C x h x w
    a, g = to_grid(a, lay), to_grid(g, lay)
    if a.dim() != 4:
        raise ValueError(f"Grad-CAM needs a spatial layer (B x C x h x w output), got shape {tuple(a.shape)}")
    return a.detach().float(), g.detach().float()


def gradcam(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: Target,
            size: tuple[int, ...] | None = None) -> torch.Tensor:
    """Selvaraju et al. (2017): ``relu(sum_c w_c A_c)``, ``w_c = mean_ij dS_k/dA_cij`` (B x h x w).

    ``size`` upsamples bilinearly (e.g. to the input's H x W); the values are not normalised.
    """
    a, g = activation_and_gradient(model, layer, x, target)
    cam = F.relu((g.mean((2, 3), keepdim=True) * a).sum(1))
    return upsample(cam, size) if size else cam


def gradcam_plus_plus(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: Target,
                      size: tuple[int, ...] | None = None) -> torch.Tensor:
    """Chattopadhay et al. (2018): ``w_c = sum_ij alpha_cij relu(dS/dA_cij)``,
    ``alpha = g^2 / (2 g^2 + sum_ij A_cij g^3)`` (the closed form for ``exp(S)``); map ``relu(sum_c w_c A_c)``.
    """
    a, g = activation_and_gradient(model, layer, x, target)
    g2, g3 = g ** 2, g ** 3
    denom = 2 * g2 + (a.sum((2, 3), keepdim=True) * g3)
    denom = torch.where(denom != 0, denom, torch.ones_like(denom))
    alpha = g2 / denom
    w = (alpha * F.relu(g)).sum((2, 3), keepdim=True)
    cam = F.relu((w * a).sum(1))
    return upsample(cam, size) if size else cam


def guided_gradcam(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: Target,
                   cam: torch.Tensor | None = None) -> torch.Tensor:
    """Selvaraju et al. (2017): guided backprop (B x C x H x W) times Grad-CAM upsampled to H x W."""
    if cam is None:
        cam = gradcam(model, layer, x, target)
    up = upsample(cam, tuple(x.shape[-2:]))
    return guided(model, x, target, "guided") * up[:, None].to(x.device)


def upsample(cam: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """B x h x w -> B x H x W, bilinear."""
    return F.interpolate(cam[:, None].float(), size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def normalise(m: torch.Tensor) -> torch.Tensor:
    """Per-image min-max to [0, 1] (a flat map becomes 0)."""
    flat = m.flatten(1)
    lo, hi = flat.amin(1), flat.amax(1)
    shape = (len(m), *([1] * (m.dim() - 1)))
    return (m - lo.view(shape)) / (hi - lo).clamp_min(1e-12).view(shape)


def last_spatial_block(model: nn.Module, example: torch.Tensor) -> str:
    """Dotted name of the last block to *finish* with a spatial output, Grad-CAM's usual layer: ``features`` in
    VGG/MobileNet, ``layer4`` in ResNet, a transformer's last encoder block (token sequences and channels-last
    maps count as spatial, :mod:`reportgen.inspection.layout`), never the stem or the patch embedding
    (:meth:`reportgen.inspection.probe.ModelProbe.default_block`)."""
    best = trace_layouts(model, example).default_block()
    if best is None:
        raise ValueError("the model has no layer with a spatial (B x C x h x w, B x h x w x C or token grid) output")
    return best
