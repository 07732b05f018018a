"""Input gradients under a ReLU rule (Zeiler & Fergus 2014; Springenberg et al. 2015), on tensors.

The three rules differ only in how the upstream gradient ``g`` crosses each ``y = relu(x)``
(:mod:`reportgen.attribution.relu_rules`): ``backprop`` ``g·[x>0]`` (the plain gradient), ``deconvnet``
``relu(g)``, ``guided`` ``relu(g)·[x>0]`` (guided backprop). The output is ``dT/dx`` (B x C x H x W)
for a target ``T`` per image: a class score (:func:`guided`) or any scalar picked from the logits or
from one layer's activation (:func:`rule_gradients`, e.g. one unit per image via :func:`unit_target`).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .relu_rules import RuleReport, gradient_rule
from ..inspection.hooks import capture_outputs, eval_mode, frozen_params
from .gradients import Target, _targets

# selector(logits B x K, activation of ``layer`` or None) -> B scalars whose input gradients are wanted
Selector = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


def rule_gradients(model: nn.Module, x: torch.Tensor, selectors: Sequence[Selector], rule: str = "guided",
                   layer: nn.Module | None = None) -> tuple[list[torch.Tensor], RuleReport]:
    """``d selector(model(x))/dx`` under ``rule`` for each selector, from one forward pass (one backward
    per selector); returns the gradients (B x C x H x W each) and how the rule reached the activations."""
    watch = {"layer": layer} if layer is not None else {}
    with eval_mode(model), frozen_params(model), torch.enable_grad(), gradient_rule(model, rule) as report, \
            capture_outputs(watch, detach=False, grid=(int(x.shape[-2]), int(x.shape[-1]))) as acts:
        xr = x.detach().clone().requires_grad_(True)
        z = model(xr)
        if layer is not None and "layer" not in acts:
            raise RuntimeError("the layer was not called during the forward pass")
        outs = [sel(z, acts.get("layer")) for sel in selectors]
        grads = []
        for i, t in enumerate(outs):
            (g,) = torch.autograd.grad(t.sum(), xr, retain_graph=i < len(outs) - 1)
            grads.append(g.detach())
    return grads, report


def class_target(target: Target) -> Selector:
    """Selector of each image's class score ``S_k`` (logit)."""
    def select(z: torch.Tensor, _a) -> torch.Tensor:
        return z.gather(1, _targets(target, len(z), z.device)[:, None])[:, 0]

    return select


def unit_target(channels: Sequence[int], positions: Sequence[tuple[int, ...]] = ()) -> Selector:
    """Selector of one unit of the layer's activation per image: channel ``channels[b]`` at
    ``positions[b]`` (spatial index; empty for a B x C activation)."""
    def select(_z, a: torch.Tensor | None) -> torch.Tensor:
        if a is None:
            raise ValueError("unit_target needs rule_gradients(..., layer=...)")
        b = torch.arange(len(a), device=a.device)
        sel = a[b, torch.as_tensor(list(channels), device=a.device)]
        if sel.dim() > 1:
            sel = torch.stack([sel[i][tuple(positions[i])] for i in range(len(a))])
        return sel

    return select


def guided(model: nn.Module, x: torch.Tensor, target: Target, rule: str = "guided") -> torch.Tensor:
    """``dS_k/dx`` (B x C x H x W) with ``rule`` (backprop | deconvnet | guided) at every ReLU."""
    return rule_gradients(model, x, [class_target(target)], rule)[0][0]


def guided_backprop(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """Springenberg et al. (2015): ``dS_k/dx`` with ``relu(g)·[x>0]`` at every ReLU (B x C x H x W)."""
    return guided(model, x, target, "guided")
