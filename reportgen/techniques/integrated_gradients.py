"""Integrated Gradients (Sundararajan et al. 2017) with the completeness check shown.

``IG_i(x) = (x_i - x'_i) * int_0^1 dS_k(x' + a (x - x'))/dx_i da`` for a baseline ``x'`` (default: a
black image). By completeness, ``sum_i IG_i = S_k(x) - S_k(x')``: the map splits the score difference
between the image and the baseline among the pixels. The integral is computed with Gauss-Legendre
quadrature; per image, the step count doubles until the sum is within ``tolerance`` of the score
difference (the table shows each image's final steps and remaining gap). Shown as ``sum_c |IG|``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
import torch

from .. import attribution as A
from ..papers import SUNDARARAJAN_2017
from ..registry import AttributionMethod, Range, SanityCheck, technique
from ..report import Grid, Note, Section, Table, plural
from ..results_schema import result_type, to_json
from ..device import gradient_batch_size
from ..features.split import split_rows
from ._explain import cell_width, explain_batch, heat_item, input_item, make_baseline
from ._faith_maps import MapMethod, as_numpy
from ._map_store import MapSpec, put_maps

if TYPE_CHECKING:
    from ..context import Ctx

BASELINES = {"black": "a black image (all pixels 0)", "grey": "a uniform mid-grey image (0.5)",
             "blur": "the image blurred (Gaussian, sigma = side / 8)"}


# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)


@result_type
class IntegratedGradientsImage:
    image: str
    """image name"""
    class_: str
    """class explained"""
    score_x: float
    """logit S(x) of the class"""
    score_baseline: float
    """logit of the class at the baseline"""
    sum_ig: float
    """sum of the attributions (completeness: equals score_x - score_baseline)"""
    steps: int
    """steps this image's map was computed with"""
    gap: float
    """this image's completeness gap (relative)"""


@result_type
class IntegratedGradientsResults:
    baseline: str
    """the baseline image (black, grey or blur)"""
    steps: int
    """Gauss-Legendre steps of the last round (the most any image needed, or the limit)"""
    tolerance: float
    """completeness tolerance, as a share of the image's score difference"""
    converged: bool
    """every image met the tolerance"""
    worst_gap: float
    """largest |sum of IG - (S(x) - S(baseline))| relative to the image's score range"""
    tried: list[list[float]]
    """[steps, worst gap] of each doubling round"""
    images: list[IntegratedGradientsImage]


RESULTS = IntegratedGradientsResults  # report.json "results" of this section (docs/results.md is generated from it)

@dataclass
class IntegratedGradientsOptions:
    max_images: Annotated[int, Range(ge=1)] = 6
    """How many images (the same ones saliency shows)."""
    baseline: Literal["black", "grey", "blur"] = "black"
    """The reference input x': black, grey or blur."""
    tolerance: Annotated[float, Range(gt=0)] = 0.01
    """Largest accepted |sum IG - (S(x) - S(x'))| / |S(x) - S(x')|."""
    steps: Annotated[int, Range(ge=1)] = 16
    """Initial quadrature steps (doubled, per image, until completeness holds)."""
    max_steps: Annotated[int, Range(ge=1)] = 256
    """Upper limit for the step count."""


def ig_spec(baseline: str, steps: int, tol: float, max_steps: int) -> MapSpec:
    return MapSpec("Integrated Gradients", (baseline, int(steps), float(tol), int(max_steps)))


def ig_maps(ctx: Ctx, baseline: str, steps: int, tol: float, max_steps: int) -> MapMethod:
    """Integrated Gradients (sum over RGB of |IG|) with these options, on the gradient passes' chunk size."""
    chunk = gradient_batch_size(ctx)

    def ig(pm, x, t, _idx):
        r = A.integrated_gradients(pm, x, t, baseline=make_baseline(x, baseline), steps=steps, tol=tol,
                                   max_steps=max_steps, chunk=chunk)
        return as_numpy(A.to_map(r.attributions, "abssum"))

    return MapMethod(ig_spec(baseline, steps, tol, max_steps), ig, fast=True)


METHOD = AttributionMethod(
    "Integrated Gradients", lambda ctx, o: ig_maps(ctx, o.baseline, o.steps, o.tolerance, o.max_steps), order=30,
    # sanity runs it with a black baseline and its own fixed step count (no doubling: maps compared with each other)
    sanity=SanityCheck(maps=lambda ctx, so: ig_maps(ctx, "black", so.ig_steps, 0.01, so.ig_steps), always=True,
                       order=4))
def split_ig(ctx: Ctx, idx: list[int], x: torch.Tensor, targets: np.ndarray, base: torch.Tensor,
             opts: IntegratedGradientsOptions) -> A.IGResult:
    """:func:`reportgen.attribution.integrated_gradients` of the images, their share on each rank under torchrun
    (:func:`reportgen.features.split.split_rows`; each image doubles its own steps, so the split changes nothing):
    the per-image results joined, each round's worst gap the worst over the shares that ran that round."""
    pos = {(int(i), int(t)): k for k, (i, t) in enumerate(zip(idx, targets))}

    def rows(keys: list) -> list:
        sel = torch.as_tensor([pos[k] for k in keys], device=x.device)
        r = A.integrated_gradients(ctx.output_model, x[sel], targets[sel.cpu().numpy()], baseline=base[sel],
                                   steps=opts.steps, tol=opts.tolerance, max_steps=opts.max_steps,
                                   chunk=gradient_batch_size(ctx))
        per = r.steps_per_image if r.steps_per_image is not None else np.full(len(keys), r.steps)
        return [(r.attributions[k].cpu(), float(r.gap[k]), float(r.delta[k]), float(r.total[k]), int(per[k]),
                 r.tried) for k in range(len(keys))]

    got = split_rows(ctx, list(pos), rows)
    worst: dict[int, float] = {}
    for *_, tried in got:
        for s, g in tried:
            worst[s] = max(worst.get(s, g), g)
    gap = np.asarray([g[1] for g in got], dtype=np.float64)
    per_image = np.asarray([g[4] for g in got], dtype=np.int64)
    attr = torch.stack([g[0] for g in got]).to(x.device) if got else torch.zeros_like(x, dtype=torch.float32)
    return A.IGResult(attr, int(per_image.max(initial=0)), gap, np.asarray([g[2] for g in got], dtype=np.float64),
                      np.asarray([g[3] for g in got], dtype=np.float64), opts.tolerance,
                      float(gap.max(initial=0.0)) <= opts.tolerance, sorted(worst.items()), per_image)


@technique(
    "integrated_gradients", "Integrated Gradients", role="review", options=IntegratedGradientsOptions, order=47,
    needs_autograd=True,
    references=[SUNDARARAJAN_2017],
    presets={"minimal": {"max_images": 2, "steps": 8, "max_steps": 64}, "full": {"max_images": 12}},
    methods=[METHOD],
)
def integrated_gradients(ctx: Ctx, opts: IntegratedGradientsOptions) -> Section:
    """Gradients averaged along the straight path from a baseline image to the input, times the pixel difference:
    the map divides the class score's difference between input and baseline among the pixels. The table checks that
    the attributions add up to that difference (completeness)."""
    b = explain_batch(ctx, opts.max_images)
    base = make_baseline(b.x, opts.baseline)
    res = split_ig(ctx, b.idx, b.x, b.targets, base, opts)
    maps = A.to_map(res.attributions, "abssum").cpu().numpy()
    assert res.steps_per_image is not None  # integrated_gradients always fills it
    put_maps(ctx, ig_spec(opts.baseline, opts.steps, opts.tolerance, opts.max_steps), b.idx, b.targets, maps)
    with torch.inference_mode():
        logits = ctx.pixel_model(b.x).float()
    spread = (logits.amax(1) - logits.amin(1)).cpu().numpy()
    sx_all = logits.gather(1, torch.as_tensor(b.targets, device=logits.device)[:, None])[:, 0].cpu().numpy()
    items: list = []
    rows: list[list] = []
    for k, i in enumerate(b.idx):
        img = ctx.images.display(i)
        items += [input_item(ctx, b, k), heat_item(ctx, img, maps[k], "IG", "", over=False),
                  heat_item(ctx, img, maps[k], "IG over the image")]
        sx, d = float(sx_all[k]), float(res.delta[k])
        rows.append([ctx.images.name(i), ctx.class_name(int(b.targets[k])), round(sx, 4), round(sx - d, 4),
                     round(d, 4), round(float(res.total[k]), 4), int(res.steps_per_image[k]),
                     f"{100 * float(res.gap[k]):.2f}%"])
    sec = Section(id="integrated_gradients", title="Integrated Gradients")
    sec.add(Grid(items, columns=6, cell_width=cell_width(ctx), caption=(
        f"Baseline: {BASELINES[opts.baseline]}. Each image, sum over RGB of |IG| (black = 0, white = the map's "
        "99.5th percentile), and the same over the image.")))
    sec.add(Table(["image", "class", "S(x)", "S(baseline)", "S(x) - S(baseline)", "sum of IG", "steps", "gap"],
                  rows, numeric=[2, 3, 4, 5, 6, 7], caption=(
                      "Completeness per image, with the Gauss-Legendre steps its map was computed with (an image "
                      "stops doubling once within tolerance; tried: "
                      + ", ".join(f"{s} -> worst gap {100 * g:.2f}%" for s, g in res.tried) + ").")))
    worst = float(res.gap.max(initial=0.0))
    if res.converged:
        sec.add(Note(f"Completeness holds within {100 * opts.tolerance:g}% for every image by {res.steps} steps "
                     f"(worst gap {100 * worst:.2f}%): each map accounts for its score difference."))
    else:
        bad = [r[0] for r, g in zip(rows, res.gap) if g > opts.tolerance]
        sec.add(Note(f"Completeness is NOT within {100 * opts.tolerance:g}% at the limit of {res.steps} steps for "
                     f"{len(bad)} of {plural(len(rows), 'image')} ({', '.join(bad)}; worst gap {100 * worst:.2f}%): "
                     "those maps are approximate.", kind="warning"))
    small = [r[0] for r, d, w in zip(rows, res.delta, spread) if abs(float(d)) < 0.05 * max(float(w), 1e-6)]
    if small:
        sec.add(Note("The baseline scores almost as high as the input for " + ", ".join(small)
                     + " (the score difference is under 5% of the image's logit range): there is little to attribute, "
                     "so those maps are weak.", kind="warning"))
    sec.params["images"] = [ctx.images.name(i) for i in b.idx]
    sec.results = to_json(IntegratedGradientsResults(
        baseline=opts.baseline, steps=res.steps, tolerance=opts.tolerance, converged=res.converged,
        worst_gap=round(worst, 6), tried=[[s, round(g, 6)] for s, g in res.tried],
        images=[IntegratedGradientsImage(image=r[0], class_=r[1], score_x=r[2], score_baseline=r[3], sum_ig=r[5],
                                         steps=r[6], gap=round(float(g), 6))
                for r, g in zip(rows, res.gap)]))
    return sec
