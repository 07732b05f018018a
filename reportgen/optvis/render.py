"""The one image-optimisation loop (objective + parameterisation + transforms + optimiser + schedule).

Each step: ``img = param.image()``; ``x = transforms(img)``; forward ``model(x)`` while the layers the
objective names are captured (the forward stops early when the logits are not needed); ``v =
objective(acts, img)`` (one value per image, recorded in ``history``); backprop ``-sum(v)`` to the
parameters; optionally normalise the gradient; regularisers' ``on_grad``; optimiser step (``"lbfgs"``:
``opt.step(closure)``, the closure being that whole forward/backward, re-run by the line search);
``param.project()``; regularisers' ``after_step``. ``stop(acts)`` can end the run per image (an image
that is done is frozen and its step count recorded): the adversarial attack stops when fooled.

Runs with the model in eval mode and its parameters frozen, and restores both; every hook is
removed afterwards. Deterministic on the CPU for a given ``generator``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..inspection.hooks import StopForward, capture_outputs, capture_until_complete, eval_mode, frozen_params
from ..inspection.layers import resolve_layer
from .objectives import INPUT, LOGITS, Objective
from .param import ImageParam
from .regularizers import Regularizer
from .transforms import Transform, compose


@dataclass
class OptResult:
    """What :func:`render` returns. ``history[k, b]``: objective of image ``b`` at the start of step ``k``."""

    images: torch.Tensor  # B x 3 x H x W in [0, 1], on the CPU
    history: np.ndarray  # steps_run x B
    steps: int  # optimiser steps run (the same for all images; see steps_taken)
    steps_taken: np.ndarray  # per image: steps until ``stop`` held (== steps when it never did)
    done: np.ndarray  # per image: whether ``stop`` held
    final: np.ndarray | None = None  # objective of the final images without transforms (evaluate_final)
    final_logits: torch.Tensor | None = None  # model output for the final images (evaluate_final)
    wall_time_s: float = 0.0
    info: dict = field(default_factory=dict)

    def improved(self, window: int = 1) -> np.ndarray:
        """Per image: is the mean of the last ``window`` recorded values above the first ``window``?"""
        h = self.history
        if self.final is not None:
            h = np.concatenate([h, self.final[None]], 0)
        w = max(1, min(window, len(h) // 2))
        return h[-w:].mean(0) > h[:w].mean(0)


def _make_optimizer(optimizer, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if callable(optimizer) and not isinstance(optimizer, str):
        return optimizer(params, lr)
    name = str(optimizer).lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "lbfgs":  # one L-BFGS iteration per step (its history persists), strong-Wolfe line search
        return torch.optim.LBFGS(params, lr=lr, max_iter=1, history_size=20, line_search_fn="strong_wolfe")
    raise ValueError(f"unknown optimizer {optimizer!r} (adam, sgd, lbfgs or a callable(params, lr))")


def _memory_format(model: nn.Module) -> torch.memory_format | None:
    """channels_last when the model's convolution weights are stored that way (the image itself stays NCHW:
    L-BFGS flattens its parameters with ``view``, which fails on a channels_last tensor)."""
    for p in model.parameters():
        if p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last):
            return torch.channels_last
    return None


def normalize_gradient(g: torch.Tensor, how: str | None) -> torch.Tensor:
    """Per-image gradient normalisation: ``mean_abs`` (DeepDream), ``l2``, ``linf``, ``sign`` (FGSM)."""
    if how is None:
        return g
    dims = tuple(range(1, g.dim()))
    if how == "mean_abs":
        return g / (g.abs().mean(dims, keepdim=True) + 1e-12)
    if how == "l2":
        return g / (g.flatten(1).norm(dim=1).view(-1, *[1] * (g.dim() - 1)) + 1e-12)
    if how == "linf":
        return g / (g.abs().amax(dims, keepdim=True) + 1e-12)
    if how == "sign":
        return g.sign()
    raise ValueError(f"unknown gradient normalisation {how!r} (mean_abs, l2, linf, sign)")


def render(
    model: nn.Module,
    objective: Objective,
    param: ImageParam,
    *,
    transforms: Sequence[Transform] | Transform = (),
    optimizer: str | Callable = "adam",
    steps: int = 100,
    lr: float = 0.05,
    regularizers: Sequence[Regularizer] = (),
    generator: torch.Generator | None = None,
    grad_norm: str | None = None,
    layer_root: nn.Module | None = None,
    stop: Callable[[dict], torch.Tensor] | None = None,
    evaluate_final: bool = False,
    progress: Callable | None = None,
    desc: str = "Optimising the image",
    fit: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> OptResult:
    """Maximise ``objective`` over ``param``'s image with ``model`` (RGB in [0, 1] -> logits).

    ``layer_root`` resolves the objective's dotted layer names (default: ``model``; pass
    ``ctx.model`` when ``model`` is ``ctx.pixel_model``). ``grad_norm`` normalises each image's
    gradient before the step (``mean_abs`` for DeepDream, ``sign`` for FGSM-like steps). ``fit``
    (``ctx.fit_input``) resizes each transformed batch to a size the model accepts before the forward pass (a
    fixed-size ViT, Inception's minimum); layer outputs are captured in their grid view (B, C, h, w).
    """
    t0 = time.perf_counter()
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    tf = transforms if callable(transforms) else compose(list(transforms))
    root = layer_root if layer_root is not None else model
    modules = {name: resolve_layer(root, name) for name in objective.layers}
    need_logits = objective.needs_logits or stop is not None or evaluate_final or not modules
    params = param.parameters()
    opt = _make_optimizer(optimizer, params, lr)
    lbfgs = isinstance(opt, torch.optim.LBFGS)
    if lbfgs and stop is not None:
        raise ValueError("stop= is not supported with L-BFGS (its line search re-evaluates the objective)")
    history: list[np.ndarray] = []
    batch = param.image().shape[0]
    done = torch.zeros(batch, dtype=torch.bool)
    steps_taken = np.full(batch, steps, dtype=np.int64)
    frozen: torch.Tensor | None = None
    it = range(steps) if progress is None else progress(range(steps), desc, total=steps)
    steps_run = 0

    cur_grid: list[int] = [int(v) for v in param.image().shape[-2:]]

    def forward(x: torch.Tensor, store: dict) -> dict:
        fed = fit(x) if fit is not None else x
        cur_grid[:] = [int(v) for v in fed.shape[-2:]]
        store.clear()
        logits = None
        try:
            logits = model(fed)
        except StopForward:
            pass
        acts = dict(store)
        acts[INPUT] = x
        if logits is not None:
            acts[LOGITS] = logits[0] if isinstance(logits, (tuple, list)) else logits
        return acts

    with contextlib.ExitStack() as stack:
        stack.enter_context(eval_mode(model))
        stack.enter_context(frozen_params(model))
        stack.enter_context(torch.enable_grad())
        if need_logits:
            store = stack.enter_context(capture_outputs(modules, detach=False, grid=lambda: (cur_grid[0], cur_grid[1])))
        else:
            store = stack.enter_context(capture_until_complete(modules, grid=lambda: (cur_grid[0], cur_grid[1])))
        fmt = _memory_format(model)
        state: dict = {}

        def closure() -> torch.Tensor:
            """One forward/backward pass; the optimiser may call it several times per step (L-BFGS)."""
            opt.zero_grad(set_to_none=True)
            img = param.image()
            if img.requires_grad and not img.is_leaf:
                img.retain_grad()
            x = tf(img, gen)
            if fmt is not None:
                x = x.contiguous(memory_format=fmt)
            acts = forward(x, store)
            values = objective(acts, img)
            state["evals"] = state.get("evals", 0) + 1
            if "values" not in state:  # the step's first evaluation is the one recorded
                state.update(values=values.detach(), acts=acts, img=img)
            active = (~done).to(values.device, values.dtype)
            loss = -(values * active).sum()
            loss.backward()
            image_grad = img.grad.detach() if img.grad is not None else None
            if grad_norm is not None:
                for p in params:
                    if p.grad is not None:
                        p.grad.copy_(normalize_gradient(p.grad, grad_norm))
            for r in regularizers:
                r.on_grad(state["step"], param, image_grad, [p.grad for p in params])
            state.setdefault("image_grad", image_grad)
            return loss

        for step in it:
            for k in ("values", "acts", "img", "image_grad"):
                state.pop(k, None)
            state["step"] = step
            if lbfgs:
                opt.step(closure)  # type: ignore[arg-type]  # L-BFGS takes a closure that returns the loss tensor
            else:
                closure()
            history.append(state["values"].float().cpu().numpy().copy())
            if stop is not None:
                now = stop(state["acts"]).detach().cpu().bool().reshape(-1) & ~done
                if now.any():
                    snap = state["img"].detach().clone()
                    mask = now.view(-1, 1, 1, 1).to(snap.device)
                    frozen = snap if frozen is None else torch.where(mask, snap, frozen)
                    steps_taken[now.numpy()] = step
                    done |= now
                if bool(done.all()):
                    break
            if not lbfgs:
                opt.step()
            param.project()
            for r in regularizers:
                r.after_step(step, param, state["image_grad"])
            if frozen is not None and bool(done.any()):
                with torch.no_grad():
                    cur = param.image().detach()
                    param.set_image(torch.where(done.view(-1, 1, 1, 1).to(cur.device), frozen, cur))
            steps_run = step + 1

        final = final_logits = None
        result_img = param.image().detach()
        if frozen is not None:
            result_img = torch.where(done.view(-1, 1, 1, 1).to(result_img.device), frozen, result_img)
        if evaluate_final or (stop is not None and not bool(done.all())):
            with torch.no_grad():
                acts = forward(result_img, store)
                if stop is not None:  # the last update's image has not been checked yet
                    now = stop(acts).detach().cpu().bool().reshape(-1) & ~done
                    steps_taken[now.numpy()] = steps_run
                    done |= now
                if evaluate_final:
                    final = objective(acts, result_img).float().cpu().numpy()
                    final_logits = acts[LOGITS].detach().float().cpu()
    return OptResult(
        images=result_img.float().cpu(),
        history=np.stack(history) if history else np.zeros((0, batch), dtype=np.float32),
        steps=steps_run,
        steps_taken=steps_taken,
        done=done.numpy().copy(),
        final=final,
        final_logits=final_logits,
        wall_time_s=time.perf_counter() - t0,
        info={"objective": objective.name, "optimizer": str(optimizer), "lr": lr,
              "regularizers": [repr(r) for r in regularizers], "grad_norm": grad_norm,
              "evaluations": int(state.get("evals", 0))},
    )
