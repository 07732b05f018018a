"""The attribution maps of the run, one map function per method and options, shared by the attribution sections
(saliency, smoothgrad, integrated_gradients, gradcam), sanity and faithfulness: every map goes through the run's
:mod:`._map_store`, so a map one section computed is never computed again by another. Each :class:`MapMethod` is
``fn(model, x, targets, image indices) -> B x H x W`` numpy (higher = more important) with a :class:`MapSpec` (its
name and the options that change its map), so the same method can be rerun on a randomised copy or for another
class. Faithfulness scores every attribution method this run's configuration enables, with each method's own
options, plus two baselines. Not a technique (leading underscore)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .. import attribution as A
from ..attribution import faithfulness as FM
from ..inspection.layers import resolve_layer
from ..registry import get
from ..attribution.incremental import IncrementalOccluder
from ..device import device_batch_size, gradient_batch_size, inference_model
from ._explain import (CostScaled, attention_reason, cam_layer_choice, cost_scaled_window, incremental_batch_size,
                       make_baseline, resolve_window)
from ._map_store import ORIGINAL, SALIENCY_SPEC, MapSpec, maps_for

MapFn = Callable[[torch.nn.Module, torch.Tensor, np.ndarray, list[int]], np.ndarray]


@dataclass(frozen=True)
class MapMethod:
    """One method at fixed options: ``fn(model, x, targets, image indices)``; ``fast``: the trained model's maps use
    ``ctx.output_model`` (BatchNorm folded: the same gradients, faster), else ``ctx.pixel_model``; ``window``: the
    occlusion window when it was grown for an expensive model."""

    spec: MapSpec
    fn: MapFn
    fast: bool = False
    window: CostScaled | None = None

    def maps(self, ctx, idx: Sequence[int], x: torch.Tensor, targets: Sequence[int] | np.ndarray, model=None,
             variant: str = ORIGINAL) -> np.ndarray:
        """B x H x W maps of images ``idx`` for ``targets`` on ``model`` (default: the trained model, ``variant``
        names any other), from the run's store where they are, else computed and kept there."""
        if model is None:
            model = ctx.output_model if self.fast else ctx.pixel_model
        return maps_for(ctx, self.spec, idx, x, targets, lambda xx, tt, ii: self.fn(model, xx, tt, ii), variant)


def ig_spec(baseline: str, steps: int, tol: float, max_steps: int) -> MapSpec:
    return MapSpec("Integrated Gradients", (baseline, int(steps), float(tol), int(max_steps)))


def integrated_gradients(ctx, baseline: str, steps: int, tol: float, max_steps: int) -> MapMethod:
    """Integrated Gradients (sum over RGB of |IG|) with these options, on the gradient passes' chunk size."""
    chunk = gradient_batch_size(ctx)

    def ig(pm, x, t, _idx):
        r = A.integrated_gradients(pm, x, t, baseline=make_baseline(x, baseline), steps=steps, tol=tol,
                                   max_steps=max_steps, chunk=chunk)
        return _np(A.to_map(r.attributions, "abssum"))

    return MapMethod(ig_spec(baseline, steps, tol, max_steps), ig, fast=True)


def smoothgrad(ctx, samples: int, noise: float) -> MapMethod:
    """SmoothGrad (max over RGB of |mean gradient|), each image's noise from its own seeded stream, so an image's map
    does not depend on which images share its batch."""
    chunk = gradient_batch_size(ctx)

    def sg(pm, x, t, idx):
        out = [A.to_map(A.smoothgrad(pm, x[k:k + 1], t[k:k + 1], n_samples=samples, noise=noise,
                                     generator=ctx.generator(f"smoothgrad/noise/{idx[k]}"), chunk=chunk))
               for k in range(len(x))]
        return _np(torch.cat(out))

    return MapMethod(MapSpec("SmoothGrad", (int(samples), float(noise))), sg, fast=True)


SALIENCY = MapMethod(SALIENCY_SPEC, lambda pm, x, t, _i: _np(A.to_map(A.saliency(pm, x, t))), fast=True)
GUIDED_BACKPROP = MapMethod(MapSpec("guided backprop"),
                            lambda pm, x, t, _i: _np(A.to_map(A.guided_backprop(pm, x, t))))


def cams(name: str, guided: bool = True) -> dict[str, MapMethod]:
    """Grad-CAM, Grad-CAM++ and (``guided``) Guided Grad-CAM at layer ``name``, upsampled to the image."""

    def cam(pm, x, t, _i):
        return _np(A.gradcam(pm, resolve_layer(pm.model, name), x, t, size=tuple(x.shape[-2:])))

    def campp(pm, x, t, _i):
        return _np(A.gradcam_plus_plus(pm, resolve_layer(pm.model, name), x, t, size=tuple(x.shape[-2:])))

    def gg(pm, x, t, _i):
        return _np(A.to_map(A.guided_gradcam(pm, resolve_layer(pm.model, name), x, t)))

    out = {"Grad-CAM": MapMethod(MapSpec("Grad-CAM", (name,)), cam),
           "Grad-CAM++": MapMethod(MapSpec("Grad-CAM++", (name,)), campp)}
    if guided:
        out["Guided Grad-CAM"] = MapMethod(MapSpec("Guided Grad-CAM", (name,)), gg)
    return out


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


def _attention(ctx) -> MapMethod | None:
    """Attention rollout (Abnar & Zuidema 2020) when one probing pass finds global self-attention over one token
    sequence (:func:`reportgen.attribution.attention.probe_layout`); None otherwise (no rollout row)."""
    from ..attribution import attention as AT

    probe = AT.probe_layout(ctx.model, ctx.to_device(ctx.images.batch([0])),
                            getattr(ctx.model, "num_prefix_tokens", None), ctx.pixel_model)
    if isinstance(probe, str):
        return None

    def fn(pm, x, t, _idx):
        attns, _ = AT.attention_weights(pm, AT.find_attention(pm), x)
        prefix, (h, w) = AT.token_layout(attns[0].shape[-1], tuple(x.shape[-2:]), probe.prefix)
        row = AT.class_row(AT.rollout(attns), prefix)
        return _np(A.upsample(row.reshape(len(x), h, w), tuple(x.shape[-2:])))

    return MapMethod(MapSpec("attention rollout"), fn)


def _occlusion(ctx, o) -> MapMethod:
    """Occlusion maps (``p(x) - heat``) with the occlusion section's options and cost scaling, by exact incremental
    inference where the model allows it."""
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

    def many(pm, x, targets, _idx):
        t = np.asarray(targets, dtype=np.int64)[:, None]  # B x 1
        occ = occluder(pm)
        run = inference_model(ctx) if occ is None and pm is ctx.pixel_model else pm
        grid = A.occlusion_grid(run, x.float(), t, cs.window, cs.stride, fill,
                                incremental_batch_size(ctx) if occ is not None else batch, occ is not None,
                                occluder=occ)
        with torch.inference_mode():
            p = torch.softmax(pm(x).float(), 1).gather(1, torch.as_tensor(t, device=x.device)).cpu()
        size = tuple(x.shape[-2:])
        return p[:, 0].numpy()[:, None, None] - A.coverage_average(grid[:, 0], size, cs.window, cs.stride,
                                                                   p[:, 0]).numpy()

    return MapMethod(occlusion_spec(cs.window, cs.stride, fill), many, window=cs)


def occlusion_spec(window: int, stride: int, fill: np.ndarray) -> MapSpec:
    """Occlusion's map (``p(x) - heat``) at this window, stride and fill colour."""
    return MapSpec("occlusion", (int(window), int(stride), tuple(round(float(v), 6) for v in fill)))


def method_functions(ctx) -> tuple[dict[str, MapMethod], bool]:
    """method -> :class:`MapMethod`, for the attribution techniques enabled in this run (all of them, flagged False,
    when none is), with each technique's configured options."""
    enabled = {t.id for t in ctx.config.enabled()}
    chosen = [tid for tid in SOURCES if tid in enabled]
    from_config = bool(chosen)
    fns: dict[str, MapMethod] = {}
    for tid in chosen or list(SOURCES):
        o = _opts(ctx, tid)
        if tid == "saliency":
            fns["saliency"] = SALIENCY
        elif tid == "smoothgrad":
            fns["SmoothGrad"] = smoothgrad(ctx, o.samples, o.noise)
        elif tid == "integrated_gradients":
            fns["Integrated Gradients"] = integrated_gradients(ctx, o.baseline, o.steps, o.tolerance, o.max_steps)
        elif tid == "gradcam":
            cam = cam_layer_choice(ctx, o.layer).name
            if cam is not None:  # else no layer reaches the class score: no Grad-CAM rows
                fns.update(cams(cam, o.guided))
        elif tid == "guided_backprop":
            fns["guided backprop"] = GUIDED_BACKPROP
        elif tid == "occlusion":
            fns["occlusion"] = _occlusion(ctx, o)
        elif tid == "attention":
            roll = _attention(ctx)
            if roll is not None:
                fns["attention rollout"] = roll
    return fns, from_config


def baseline_maps(ctx, x: torch.Tensor) -> dict[str, np.ndarray]:
    """The two baselines' maps for the batch ``x``: a seeded uniform random map and a fixed centre Gaussian."""
    return {RANDOM: _np(FM.random_map((len(x), *x.shape[-2:]), ctx.generator("faithfulness/random-map"))),
            CENTRE: _np(FM.centre_map(len(x), *x.shape[-2:]))}
