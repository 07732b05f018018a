"""Class activation maps on tensors: Grad-CAM (Selvaraju et al. 2017), Grad-CAM++ (Chattopadhay et al.
2018) and Guided Grad-CAM; ``relu(sum_c w_c A_c)`` over a spatial layer ``A`` with per-channel weights
``w_c`` from the class score's gradient. Maps are B x h x w at the layer's resolution (``size`` upsamples)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..inspection.hooks import capture_outputs, eval_mode, frozen_params
from ..inspection.layout import detect, to_grid
from ..inspection.probe import ModelProbe, trace_layouts
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
        (g,) = torch.autograd.grad(z.gather(1, t[:, None]).sum(), a, allow_unused=True)
    if g is None:
        raise NoCamLayer("the class score's gradient does not reach the layer's output (the classifier reads "
                         "another path), so Grad-CAM is not defined there; choose a layer the classifier reads")
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


class NoCamLayer(ValueError):
    """No layer with a spatial output reaches the class score (or the named one does not): Grad-CAM cannot apply."""


@dataclass(frozen=True)
class CamChoice:
    """The layer Grad-CAM reads and why it is not the model's default block (None: it is, or the user chose);
    ``name`` None: no layer fits, and ``why`` says why."""

    name: str | None
    why: str | None = None


def gradient_reach(model: nn.Module, layers: dict[str, nn.Module], x: torch.Tensor,
                   target: Target | None = None) -> dict[str, float | None]:
    """One forward/backward pass: per layer, the largest ``|dS_k/dA|`` over its output's grid cells (a token
    sequence's patch tokens, :mod:`reportgen.inspection.layout`); 0.0: the output reaches the score only through
    other positions (a class token); None: it does not reach the score at all, or did not run. ``target`` None:
    each image's predicted class."""
    out: dict[str, float | None] = {n: None for n in layers}
    size = (int(x.shape[-2]), int(x.shape[-1]))
    with eval_mode(model), frozen_params(model), torch.enable_grad(), \
            capture_outputs(layers, detach=False, clone=False) as store:
        z = model(x.detach().clone().requires_grad_(True))
        names = [n for n in layers if n in store and store[n].requires_grad]
        if not names:
            return out
        t = _targets(z.detach().argmax(1) if target is None else target, len(x), z.device)
        grads = torch.autograd.grad(z.gather(1, t[:, None]).sum(), [store[n] for n in names], allow_unused=True)
    for n, g in zip(names, grads):
        if g is not None:
            out[n] = float(to_grid(g, detect(store[n], size, layers[n])).abs().max())
    return out


def _candidates(probe: ModelProbe, block: str) -> list[str]:
    """``block``, then the spatial blocks that return before it, latest first (leaves too where ``block`` is one)."""
    stem, recs = probe.stem(), probe.records
    i = next(k for k, r in enumerate(recs) if r.name == block)
    leaf_ok = recs[i].leaf
    return [block] + [r.name for r in reversed(recs[:i])
                      if r.layout.spatial and r.name not in stem and (leaf_ok or not r.leaf)]


def _fits(reach: float | None, layout) -> bool:
    """Grad-CAM can read a layer whose output the score's gradient reaches, at its grid cells for a token
    sequence (a zero gradient at a convolutional map is taken as it is: its maps come out zero and say so)."""
    return reach is not None and (reach > 0 or layout is None or layout.kind != "tokens")


def choose_cam_layer(model: nn.Module, probe: ModelProbe, x: torch.Tensor,
                     named: dict[str, nn.Module] | None = None) -> CamChoice:
    """Grad-CAM's layer, checked in one forward/backward pass on ``x`` (one image) for the predicted class: the
    named layer (one entry of ``named``) as given when the class score's gradient reaches its output; else the
    default block (:meth:`ModelProbe.default_block`) when its grid cells get gradient, else the last spatial
    block before it whose cells do. A ViT's classifier reads only the last block's class token, so that block's
    patch tokens get none (the block before it is pytorch-grad-cam's ViT recipe); PiT's last stage returns a
    patch map that nothing reads. ``name`` None with the reason where no layer fits."""
    block = probe.default_block()
    cands = _candidates(probe, block) if block is not None else []
    mods = {**{n: probe.modules[n] for n in cands if n in probe.modules}, **(named or {})}
    reach = gradient_reach(model, mods, x) if mods else {}
    auto = next((n for n in cands if _fits(reach.get(n), probe.layout(n))), None)
    if named:
        (n,) = named
        if reach.get(n) is not None:
            return CamChoice(n)
        return CamChoice(None, f"The class score's gradient does not reach the output of {n}, the layer given for "
                               "Grad-CAM (the classifier reads another path), so Grad-CAM is not defined there"
                               + (f"; the automatic choice is {auto}." if auto else "."))
    if block is None:
        return CamChoice(None, "The model has no layer with a spatial (B x C x h x w, B x h x w x C or token grid) "
                               "output for Grad-CAM to weight; pass the layer's name if one exists.")
    if auto is None and any(reach.get(n) is not None for n in cands):  # in the graph, but zero gradient everywhere
        used = next(n for n in cands if reach.get(n) is not None)
        return CamChoice(used, f"The class score's gradient is zero at every spatial layer on the probe image (a "
                               f"zero-initialised classifier does this), so Grad-CAM's maps are zero; they use {used}, "
                               "the last spatial block the score depends on.")
    if auto is None:
        return CamChoice(None, f"No layer with a spatial output reaches the class score (the last one, {block}, and "
                               "every spatial layer before it are not used by the logits), so Grad-CAM has nothing "
                               "to weight.")
    if auto == block:
        return CamChoice(block)
    if reach.get(block) == 0.0:
        why = (f"The last block, {block}, passes only its class token to the classifier, so its patch tokens get no "
               f"gradient and Grad-CAM there is zero everywhere; the maps use {auto}, the last spatial layer before "
               "it whose patch tokens reach the class score.")
    else:
        why = (f"The output of {block}, the last block with a spatial output, does not reach the class score (the "
               "classifier reads another path, such as a class token kept apart from the patch grid), so Grad-CAM "
               f"has no gradient there; the maps use {auto}, the last spatial layer before it whose output does.")
    return CamChoice(auto, why)


def last_spatial_block(model: nn.Module, example: torch.Tensor) -> str:
    """Dotted name of Grad-CAM's usual layer (:func:`choose_cam_layer`): the last block to *finish* with a spatial
    output whose cells the class score's gradient reaches: ``features`` in VGG/MobileNet, ``layer4`` in ResNet,
    a transformer's last block that passes patch tokens on (token sequences and channels-last maps count as
    spatial, :mod:`reportgen.inspection.layout`), never the stem or the patch embedding."""
    choice = choose_cam_layer(model, trace_layouts(model, example), example[:1])
    if choice.name is None:
        raise NoCamLayer(choice.why)
    return choice.name
