"""Vanilla saliency maps (Simonyan, Vedaldi & Zisserman 2014).

``M(x) = max_c |d S_k(x) / d x_c|``: the absolute gradient of the unnormalised class score
``S_k`` (the logit, not the softmax probability) w.r.t. each input pixel, maximised over the
colour channels. Bright pixels are those whose small change would change the class score most.
Computed in pixel space (RGB in [0, 1], the normalisation is part of the model) with one
backward pass per batch of images (the sum of the selected class scores: images do not
interact, so each image's gradient is its own). The maps are memoised per run
(:func:`reportgen.techniques._explain.cached_saliency`), so ``segmentation`` reuses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import numpy as np

from .. import attribution as A
from ..attribution.contrast import gradient_x_input
from ..papers import SIMONYAN_2014
from ..registry import AttributionMethod, ClassMaps, Range, SanityCheck, technique
from ..report import Grid, Note, Section
from ..results_schema import result_type, to_json
from ..attribution.visualization import attr_item
from ._explain import cached_saliency, cell_width, image_item, show_indices, smooth
from ._faith_maps import MapMethod, as_numpy
from ._map_store import SALIENCY_SPEC

if TYPE_CHECKING:
    from ..context import Ctx

# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)


@result_type
class SaliencyImage:
    image: str
    """image name"""
    class_: str
    """class explained"""
    class_index: int
    """its index"""
    class_from_label: bool
    """the class is the true label (else the prediction)"""
    p: float
    """softmax probability of the class"""
    predicted: str
    """predicted class"""
    max_abs_grad: float
    """largest |d score / d pixel|"""
    top5pct_mass: float
    """share of the map's total in its brightest 5% of pixels (0.05: flat)"""


@result_type
class SaliencyResults:
    images: list[SaliencyImage]


RESULTS = SaliencyResults  # report.json "results" of this section (docs/results.md is generated from it)


@dataclass
class SaliencyOptions:
    max_images: Annotated[int, Range(ge=1)] = 8
    """How many images to show (chosen deterministically, spread across classes)."""
    percentile: Annotated[float, Range(gt=0, le=100)] = 99.0
    """Map values at or above this percentile are shown white (a few extreme pixels would hide the rest)."""
    smoothed_overlay: bool = True
    """Also show the map Gaussian-smoothed and overlaid on the image (easier to see where it lies)."""


# the section's map (|gradient| max over RGB, of ctx.output_model), as faithfulness and sanity rerun it
SALIENCY = MapMethod(SALIENCY_SPEC, lambda pm, x, t, _i: as_numpy(A.to_map(A.saliency(pm, x, t))), fast=True)
METHODS = (
    AttributionMethod("saliency", lambda ctx, o: SALIENCY, order=10,
                      sanity=SanityCheck(label="gradient", always=True, order=1)),
    # sum_c x_c dS_k/dx_c, positive part: the set-level sections' map at the input's resolution
    AttributionMethod("gradient x input (positive part)", order=95,
                      set_level=ClassMaps("gradient_x_input",
                                          lambda pm, _layer, x, t: gradient_x_input(pm, x, t).clamp_min(0))),
)

@technique(
    "saliency", "Saliency maps", role="review", options=SaliencyOptions, order=44, needs_autograd=True,
    references=[SIMONYAN_2014],
    presets={"minimal": {"max_images": 2}, "full": {"max_images": 16}}, methods=METHODS,
)
def saliency(ctx: Ctx, opts: SaliencyOptions) -> Section:
    """Beside each image is the absolute gradient of its class score with respect to every pixel (max over colour
    channels): bright pixels are those whose change would move the score most. A model that looks at the object
    lights up the object's outline and parts; light on the background or the frame means it relies on context."""
    idx = show_indices(ctx, opts.max_images)
    results = cached_saliency(ctx, idx)
    items = []
    for r in results:
        img = ctx.images.display(r.index)
        name = ctx.images.name(r.index)
        items.append(image_item(ctx, r.index, r.target, r.from_label, r.pred, r.prob))
        items.append(attr_item(r.map, view="map", label="saliency", sublabel=f"max |grad| = {float(r.map.max()):.3g}",
                               alt=f"saliency map of {name} for {ctx.class_name(r.target)}",
                               outlier_perc=100.0 - opts.percentile))
        if opts.smoothed_overlay:
            items.append(attr_item(smooth(r.map, max(1.0, ctx.pre.size / 56.0)), img, "overlay",
                                   label="smoothed, over the image", alt=f"smoothed saliency of {name} over the image",
                                   outlier_perc=0.5, cmap="inferno", alpha=0.55))
    sec = Section(id="saliency", title="Saliency maps")
    any_label = any(r.from_label for r in results)
    any_pred = any(not r.from_label for r in results)
    which = ("the true label" if any_label and not any_pred else "the predicted class" if not any_label
             else "the true label where known, else the predicted class")
    per = 3 if opts.smoothed_overlay else 2
    sec.add(Grid(items, columns=2 * per, cell_width=cell_width(ctx),
                 caption=(f"Each image beside |d score / d pixel| (max over RGB) for {which}, the unnormalised "
                          f"score (logit) of that class. Grey scale per map: black = 0, white = its "
                          f"{opts.percentile:g}th percentile or more"
                          + ("; then the same map Gaussian-smoothed (sigma = input side / 56) over the image."
                             if opts.smoothed_overlay else "."))))
    if not results:
        sec.add(Note("No images to show.", kind="warning"))
    sec.params["images"] = [ctx.images.name(r.index) for r in results]
    sec.results = to_json(SaliencyResults(images=[SaliencyImage(
        image=ctx.images.name(r.index), class_=ctx.class_name(r.target), class_index=int(r.target),
        class_from_label=bool(r.from_label), p=round(float(r.prob), 4), predicted=ctx.class_name(r.pred),
        max_abs_grad=float(r.map.max()),
        # share of the total saliency inside the brightest 5% of pixels: 0.05 = flat, near 1 = concentrated
        top5pct_mass=round(float(np.sort(r.map.ravel())[::-1][:max(1, r.map.size // 20)].sum()
                                 / max(float(r.map.sum()), 1e-12)), 4),
    ) for r in results]))
    return sec

