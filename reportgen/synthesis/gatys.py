"""The optimisation runs that two sections share (Gatys, Ecker & Bethge 2015 and 2016), memoised per run.

* :func:`gram_synthesis`: Gram-matrix texture synthesis from noise, ``min_x sum_l ||G_l(x) - G_l(s)||^2 /
  ||G_l(s)||^2`` for growing layer sets: drawn by ``texture``, its Gram matrices and errors by ``gram``;
* :func:`style_setup`, :func:`transfer` and :func:`per_image_seconds`: style transfer by optimisation from the
  content image: the grid of ``style_transfer``, whose time per image ``fast_style`` compares with its network.

Each takes the owning section's options (texture's, style_transfer's); a section that reuses them asks the
registry for those options (its defaults when the owner is not enabled), never imports the other technique.
"""

from __future__ import annotations

import numpy as np
import torch

from ..cache import MemoKey
from .. import optvis
from ..inspection.activations import activations
from ..registry import get
from ..sampling import spread_indices
from .style import (
    content_layer, gram_targets, relative_gram_errors, resize_to, source_images, stack_targets, style_layers,
    style_objective, synthesize,
)
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..context import Ctx

#: the runs shared between sections, each for the owning section's options (``key.at(...)``): texture's Gram
#: synthesis (texture and gram), style_transfer's setup (style_transfer and fast_style) and its grid (fast_style
#: compares its time per image)
GRAM_SYNTHESIS: MemoKey[dict] = MemoKey("synthesis.gram_synthesis")
STYLE_SETUP: MemoKey[dict] = MemoKey("synthesis.style_setup")
STYLE_GRID: MemoKey[dict] = MemoKey("synthesis.style_transfer_grid")


def options_of(ctx: Ctx, technique_id: str):
    """The run's options of ``technique_id``, or that technique's defaults when it is not enabled."""
    return ctx.config.options(technique_id) if technique_id in ctx.config.techniques else get(technique_id).options()


def gram_synthesis(ctx: Ctx, opts) -> dict:
    """Gram synthesis of the texture images for growing layer sets, ``opts`` the texture section's options
    (memoised per run: the texture and gram sections show the same run)."""
    key = GRAM_SYNTHESIS.at(opts.layers, opts.image_size, opts.steps, opts.optimizer, opts.parameterization,
                            opts.max_textures)

    def run() -> dict:
        layers = style_layers(ctx, opts.layers)
        # a small model's textures need no more than about twice its input size
        size = min(int(opts.image_size or ctx.pre.size), max(64, 2 * ctx.pre.size))
        textures, where = source_images(ctx, "textures", opts.max_textures, size, square=True)
        src = torch.stack([t.image for t in textures])
        per_tex = [gram_targets(ctx, layers, src[j:j + 1]) for j in range(len(textures))]
        n_sets = len(layers)
        # image (texture j, set k) matches the first k+1 layers
        targets = stack_targets([per_tex[j] for j in range(len(textures)) for _ in range(n_sets)])
        weights = torch.tensor([[1.0 if li <= k else 0.0 for li in range(n_sets)]
                                for _ in textures for k in range(n_sets)])
        # one optimisation per image: a batch would share L-BFGS's line search and curvature estimate
        runs = []
        for b in range(len(textures) * n_sets):
            obj = style_objective(layers, {n: t[b:b + 1] for n, t in targets.items()}, 1.0,
                                  layer_weights=weights[b:b + 1])
            runs.append(synthesize(ctx, obj, "noise", batch=1, size=size, optimizer=opts.optimizer, steps=opts.steps,
                                   parameterization=opts.parameterization, generator=ctx.generator(f"texture/init/{b}"),
                                   desc=f"Gram texture synthesis {b + 1}/{len(textures) * n_sets}"))
        res = optvis.OptResult(
            images=torch.cat([r.images for r in runs]),
            history=np.concatenate([r.history[: min(len(q.history) for q in runs)] for r in runs], 1),
            steps=runs[0].steps, steps_taken=np.array([r.steps for r in runs]), done=np.zeros(len(runs), bool),
            wall_time_s=sum(r.wall_time_s for r in runs),
            info={"evaluations": sum(r.info["evaluations"] for r in runs)})
        errors = relative_gram_errors(ctx, layers, res.images, targets)  # (T*S) x L
        return dict(layers=layers, size=size, textures=textures, where=where, result=res, errors=errors,
                    targets=per_tex, n_sets=n_sets)

    return ctx.memo(key, run)


def style_setup(ctx: Ctx, opts) -> dict:
    """Layers, content images and style targets for the style_transfer section's options ``opts`` (memoised per run:
    style_transfer and fast_style use the same ones)."""
    key = STYLE_SETUP.at(opts.layers, opts.content_layer, opts.image_size, opts.max_contents, opts.max_styles)

    def run():
        layers = style_layers(ctx, opts.layers)
        clayer = content_layer(ctx, opts.content_layer)
        size = min(int(opts.image_size or ctx.pre.size), max(64, 2 * ctx.pre.size))
        idx = spread_indices(ctx, min(max(1, opts.max_contents), len(ctx.images)), "style_transfer/contents")
        contents = resize_to(ctx.images.batch(idx), size)
        styles, where = source_images(ctx, "styles", opts.max_styles, size)
        style_t = [gram_targets(ctx, layers, s.image[None]) for s in styles]
        return dict(layers=layers, content_layer=clayer, size=size, idx=idx, contents=contents, styles=styles,
                    where=where, style_targets=style_t)

    return ctx.memo(key, run)


def transfer(ctx: Ctx, opts, s: dict, pairs: list[tuple[int, int]], weights, desc: str):
    """Stylise content ``ci`` with style ``si`` for every (ci, si) in ``pairs`` (one batch); ``weights`` is a
    number or one style weight per pair."""
    contents = s["contents"][[ci for ci, _ in pairs]]
    targets = stack_targets([s["style_targets"][si] for _, si in pairs])
    ctarget = activations(ctx.pixel_model, [s["content_layer"]], ctx.to_device(contents), root=ctx.model,
                          fit=ctx.fit_input)
    w = torch.as_tensor(weights, dtype=torch.float32) if isinstance(weights, (list, tuple)) else weights
    obj = style_objective(s["layers"], targets, w, content=(s["content_layer"], ctarget[s["content_layer"]]),
                          tv_weight=opts.tv_weight, pixels=s["size"] ** 2)
    res = synthesize(ctx, obj, contents, optimizer=opts.optimizer, steps=opts.steps, lr=opts.lr,
                     parameterization=opts.parameterization, generator=ctx.generator("style_transfer/init"), desc=desc)
    errs = relative_gram_errors(ctx, s["layers"], res.images, targets)
    return res, errs


def per_image_seconds(ctx: Ctx, opts) -> dict:
    """Time per stylised image of the optimisation-based method (the grid's run, memoised; fast_style compares)."""
    return ctx.memo(STYLE_GRID.at(opts), lambda: _grid(ctx, opts))


def _grid(ctx: Ctx, opts):
    s = style_setup(ctx, opts)
    pairs = [(ci, si) for ci in range(len(s["contents"])) for si in range(len(s["styles"]))]
    res, errs = transfer(ctx, opts, s, pairs, opts.style_weight, "Style transfer")
    return dict(pairs=pairs, result=res, errors=errs, seconds_per_image=res.wall_time_s / len(pairs))
