"""Activations of named layers for a batch, and the automatic choice of "block output" layers.

:func:`activations` is the one feature extractor that feature inversion, the Gram matrices, texture synthesis,
style transfer and fast style transfer use (torchvision's ``create_feature_extractor`` idea, with forward hooks
instead of a traced graph): the model runs in eval mode with frozen parameters, every hook is removed
afterwards, the pass stops after the deepest requested layer, and each output is cloned when it is produced, so
an in-place op later in the network (``ReLU(inplace=True)``) cannot rewrite what was captured.

:func:`block_layers` lists the outputs of a network's stages (post-activation), :func:`spread_layers` picks some
at fractions of the depth (about 1/4, 1/2, 3/4 and the last block by default).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import torch
from torch import nn

from .hooks import StopForward, capture_outputs, eval_mode, frozen_params
from .layers import activation_after, conv_layers, resolve_layer


def activations(model: nn.Module, layers: Sequence[str], x: torch.Tensor, *, root: nn.Module | None = None,
                grad: bool = False, fit: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> dict[str, torch.Tensor]:
    """``{name: output of layer name}`` for the batch ``x`` (``model(x)`` is run once, up to the deepest layer).

    ``root`` resolves the dotted names (pass ``ctx.model`` when ``model`` is ``ctx.pixel_model``). With
    ``grad=False`` the outputs are detached clones computed under ``no_grad`` (ordinary tensors, usable as
    targets in a later loss); with ``grad=True`` they stay in the graph (clones too: gradients flow to ``x``
    and, for training, to whatever produced ``x``), the model's own parameters frozen. Each output is in its
    grid view (B, C, h, w) (token sequences and channels-last maps converted, :mod:`.layout`). ``fit``
    (``ctx.fit_input``) first resizes ``x`` to a size the model accepts."""
    names = list(dict.fromkeys(layers))
    mods = {n: resolve_layer(root if root is not None else model, n) for n in names}
    with contextlib.ExitStack() as stack:
        stack.enter_context(eval_mode(model))
        stack.enter_context(frozen_params(model))
        stack.enter_context(torch.enable_grad() if grad else torch.no_grad())
        if fit is not None:
            x = fit(x)
        store = stack.enter_context(capture_outputs(mods, detach=not grad, stop_when_complete=True,
                                                    grid=(int(x.shape[-2]), int(x.shape[-1]))))
        try:
            model(x)
        except StopForward:
            pass
        out = dict(store)
    missing = [n for n in names if n not in out]
    if missing:
        raise RuntimeError(f"layers {missing} were not called during the forward pass")
    return {n: out[n] for n in names}


def _trunk(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The nn.Sequential / nn.ModuleList with the most direct children that are or contain a convolution (the
    backbone)."""
    best, best_n = None, 1
    for name, m in model.named_modules():
        if not isinstance(m, (nn.Sequential, nn.ModuleList)):
            continue
        n = sum(1 for c in m.children() if any(isinstance(d, nn.Conv2d) for d in c.modules()))
        if n > best_n:
            best, best_n = (name, m), n
    return best


def repeated_blocks(model: nn.Module) -> list[str]:
    """Outermost non-leaf modules with a sibling of the same class (a transformer's encoder blocks, a Swin
    model's stages), in registration order."""
    out: list[str] = []
    for name, m in model.named_modules():
        kids = list(m.named_children())
        for cname, c in kids:
            full = f"{name}.{cname}" if name else cname
            if (list(c.children()) and sum(type(d) is type(c) for _, d in kids) >= 2
                    and any(True for _ in c.parameters()) and not any(full.startswith(o + ".") for o in out)):
                out.append(full)
    return out


def block_layers(model: nn.Module, called: set[str] | None = None) -> list[str]:
    """Dotted names of the backbone's stage outputs, shallow to deep, post-activation.

    A child of the backbone that contains convolutions (a block) is taken whole (its output comes after its
    own activation or residual sum); a bare convolution is replaced by the activation that follows it. Models
    without an nn.Sequential backbone fall back to every convolution (or its activation); models whose
    convolutions are at most a stem (ViT, Swin) to their repeated blocks (:func:`repeated_blocks`). ``called``
    (``ctx.probe().called``) drops modules that do not run in eval mode (Inception's ``AuxLogits``)."""
    trunk = _trunk(model)
    out: list[str] = []
    if trunk is not None:
        tname, tmod = trunk
        for cname, child in tmod.named_children():
            full = f"{tname}.{cname}" if tname else cname
            if isinstance(child, nn.Conv2d):
                out.append(activation_after(model, full) or full)
            elif any(isinstance(d, nn.Conv2d) for d in child.modules()):
                out.append(full)
    if not out:
        out = [activation_after(model, n) or n for n in conv_layers(model)]
    if called is not None:
        out = [n for n in out if n in called]
    if len(out) < 2:
        blocks = [n for n in repeated_blocks(model) if called is None or n in called]
        out = blocks if len(blocks) >= 2 else out
    return list(dict.fromkeys(out))


def spread_layers(model: nn.Module, fractions: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
                  called: set[str] | None = None) -> list[str]:
    """Block outputs at these fractions of the depth (0: the first block, 1: the last), deduplicated."""
    blocks = block_layers(model, called)
    if not blocks:
        return []
    picks = [blocks[min(len(blocks) - 1, max(0, round(f * len(blocks)) - 1))] for f in fractions]
    return list(dict.fromkeys(picks))


__all__ = ["activations", "block_layers", "repeated_blocks", "spread_layers"]
