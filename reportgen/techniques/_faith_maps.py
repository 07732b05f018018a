"""The attribution maps the faithfulness section scores: every attribution method this run's configuration enables,
recomputed with :mod:`reportgen.attribution` on the same images and with each method's own options, plus two
baselines. Each entry is ``fn(model, x, targets) -> B x H x W`` numpy (higher = more important), so the same
method can be rerun on a randomised copy or for another class. Not a technique (leading underscore)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .. import attribution as A
from ..attribution import faithfulness as FM
from ..inspection.layers import resolve_layer
from ..registry import get
from ..attribution.incremental import IncrementalOccluder
from ..device import device_batch_size, gradient_batch_size, inference_model
from ._explain import (CostScaled, attention_reason, cam_layer, cost_scaled_window, incremental_batch_size,
                       make_baseline, resolve_window)

MapFn = Callable[[torch.nn.Module, torch.Tensor, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class MapMethod:
    """A map function that also computes maps for several class vectors at once from shared passes (occlusion:
    one set of occluded copies serves every class); called like a :data:`MapFn`."""

    fn: MapFn
    together: Callable[[torch.nn.Module, torch.Tensor, list[np.ndarray]], list[np.ndarray]]
    window: CostScaled | None = None

    def __call__(self, pm, x, t):
        return self.fn(pm, x, t)


def maps_for(f, pm, x, targets: list[np.ndarray]) -> list[np.ndarray]:
    """``[f(pm, x, t) for t in targets]``, from shared passes where ``f`` is a :class:`MapMethod`."""
    if isinstance(f, MapMethod):
        return f.together(pm, x, targets)
    return [f(pm, x, t) for t in targets]
RANDOM, CENTRE = "random map (baseline)", "centre Gaussian (baseline)"
BASELINES = (RANDOM, CENTRE)
# technique id -> the methods it shows
SOURCES = {"saliency": ("saliency",), "smoothgrad": ("SmoothGrad",), "integrated_gradients": ("Integrated Gradients",),
           "gradcam": ("Grad-CAM", "Grad-CAM++", "Guided Grad-CAM"), "guided_backprop": ("guided backprop",),
           "occlusion": ("occlusion",), "attention": ("attention rollout",)}


def _opts(ctx, tid: str):
    try:
        return ctx.config.options(tid)
    except KeyError:
        return get(tid).default_options(ctx.config.preset)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _attention(ctx) -> MapFn | None:
    """Attention rollout (Abnar & Zuidema 2020) when one probing pass finds global self-attention over one token
    sequence (:func:`reportgen.attribution.attention.probe_layout`); None otherwise (no rollout row)."""
    from ..attribution import attention as AT

    probe = AT.probe_layout(ctx.model, ctx.to_device(ctx.images.batch([0])),
                            getattr(ctx.model, "num_prefix_tokens", None), ctx.pixel_model)
    if isinstance(probe, str):
        return None

    def fn(pm, x, t):
        attns, _ = AT.attention_weights(pm, AT.find_attention(pm), x)
        prefix, (h, w) = AT.token_layout(attns[0].shape[-1], tuple(x.shape[-2:]), probe.prefix)
        row = AT.class_row(AT.rollout(attns), prefix)
        return _np(A.upsample(row.reshape(len(x), h, w), tuple(x.shape[-2:])))

    return fn


def _occlusion(ctx, o) -> MapMethod:
    """Occlusion maps (``p(x) - heat``) with the occlusion section's options and cost scaling; every class asked
    for comes from the same occluded passes, by exact incremental inference where the model allows it."""
    cs = cost_scaled_window(ctx, *resolve_window(ctx.pre.size, o.window, o.stride), scale=o.scale_with_cost)
    fill = ctx.features().mean_rgb if o.fill == "mean" else np.full(3, 0.5, dtype=np.float32)
    batch = device_batch_size(ctx)
    reuse = attention_reason(ctx) is None

    def occluder(pm):
        if not reuse:
            return None
        if pm is ctx.pixel_model:
            return ctx.memo("occlusion:occluder", lambda: IncrementalOccluder.build(ctx.pixel_model))[0]
        return IncrementalOccluder.build(pm)[0]

    def many(pm, x, targets):
        t = np.stack([np.asarray(v, dtype=np.int64) for v in targets], 1)  # B x K
        occ = occluder(pm)
        run = inference_model(ctx) if occ is None and pm is ctx.pixel_model else pm
        grid = A.occlusion_grid(run, x.float(), t, cs.window, cs.stride, fill,
                                incremental_batch_size(ctx) if occ is not None else batch, occ is not None,
                                occluder=occ)
        with torch.inference_mode():
            p = torch.softmax(pm(x).float(), 1).gather(1, torch.as_tensor(t, device=x.device)).cpu()
        size = tuple(x.shape[-2:])
        return [p[:, k].numpy()[:, None, None] - A.coverage_average(grid[:, k], size, cs.window, cs.stride,
                                                                    p[:, k]).numpy() for k in range(t.shape[1])]

    return MapMethod(lambda pm, x, t: many(pm, x, [t])[0], many, cs)


def method_functions(ctx) -> tuple[dict[str, MapFn], bool]:
    """method -> map function, for the attribution techniques enabled in this run (all of them, flagged False,
    when none is), with each technique's configured options."""
    enabled = {t.id for t in ctx.config.enabled()}
    chosen = [tid for tid in SOURCES if tid in enabled]
    from_config = bool(chosen)
    chosen = chosen or list(SOURCES)
    chunk = gradient_batch_size(ctx)
    fns: dict[str, MapFn] = {}
    for tid in chosen:
        o = _opts(ctx, tid)
        if tid == "saliency":
            fns["saliency"] = lambda pm, x, t: _np(A.to_map(A.saliency(pm, x, t)))
        elif tid == "smoothgrad":
            def sg(pm, x, t, o=o):
                return _np(A.to_map(A.smoothgrad(pm, x, t, n_samples=o.samples, noise=o.noise,
                                                 generator=ctx.generator("faithfulness/smoothgrad"),
                                                 chunk=max(1, chunk // len(x)))))
            fns["SmoothGrad"] = sg
        elif tid == "integrated_gradients":
            def ig(pm, x, t, o=o):
                r = A.integrated_gradients(pm, x, t, baseline=make_baseline(x, o.baseline), steps=o.steps,
                                           tol=o.tolerance, max_steps=o.max_steps, chunk=chunk)
                return _np(A.to_map(r.attributions, "abssum"))
            fns["Integrated Gradients"] = ig
        elif tid == "gradcam":
            name = cam_layer(ctx, o.layer)

            def cam(pm, x, t, n=name):
                return _np(A.gradcam(pm, resolve_layer(pm.model, n), x, t, size=tuple(x.shape[-2:])))

            def campp(pm, x, t, n=name):
                return _np(A.gradcam_plus_plus(pm, resolve_layer(pm.model, n), x, t, size=tuple(x.shape[-2:])))
            fns["Grad-CAM"], fns["Grad-CAM++"] = cam, campp
            if o.guided:
                def guided(pm, x, t, n=name):
                    return _np(A.to_map(A.guided_gradcam(pm, resolve_layer(pm.model, n), x, t)))
                fns["Guided Grad-CAM"] = guided
        elif tid == "guided_backprop":
            fns["guided backprop"] = lambda pm, x, t: _np(A.to_map(A.guided_backprop(pm, x, t)))
        elif tid == "occlusion":
            fns["occlusion"] = _occlusion(ctx, o)
        elif tid == "attention":
            roll = _attention(ctx)
            if roll is not None:
                fns["attention rollout"] = roll

    def rnd(pm, x, t):
        return _np(FM.random_map((len(x), *x.shape[-2:]), ctx.generator("faithfulness/random-map")))

    fns[RANDOM] = rnd
    fns[CENTRE] = lambda pm, x, t: _np(FM.centre_map(len(x), *x.shape[-2:]))
    return fns, from_config
