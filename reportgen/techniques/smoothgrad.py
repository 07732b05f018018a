"""SmoothGrad (Smilkov et al. 2017) beside the plain gradient it smooths.

``M_sg(x) = (1/n) sum_i M(x + eps_i)``, ``eps_i ~ N(0, sigma^2)``, ``sigma = noise * (max x - min x)``,
with ``M`` the gradient of the class logit; shown as ``max_c |M_sg|`` like a saliency map. Averaging
over noisy copies removes the gradient's high-frequency jitter (the score's local wiggles) and keeps
what is stable nearby: the map should look less speckled and more on the object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import numpy as np

from .. import attribution as A
import torch

from ..device import gradient_batch_size
from ..papers import SIMONYAN_2014, SMILKOV_2017
from ..registry import AttributionMethod, Range, technique
from ..report import Grid, Note, Section
from ..results_schema import result_type, to_json
from ._explain import cell_width, explain_batch, heat_item, input_item
from ._faith_maps import MapMethod, as_numpy
from ._map_store import MapSpec

if TYPE_CHECKING:
    from ..context import Ctx


# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)


@result_type
class SmoothGradResults:
    samples: int
    """noisy copies averaged per image"""
    noise: float
    """noise sigma as a share of the image's value range"""
    median_speckle_ratio: float
    """median over images of total variation of SmoothGrad / of the plain gradient (< 1: smoother)"""
    median_rank_corr_to_gradient: float | None
    """median Spearman rank correlation of SmoothGrad with the plain gradient (null: no image)"""


RESULTS = SmoothGradResults  # report.json "results" of this section (docs/results.md is generated from it)

@dataclass
class SmoothGradOptions:
    max_images: Annotated[int, Range(ge=1)] = 6
    """How many images (the same ones saliency shows)."""
    samples: Annotated[int, Range(ge=1)] = 25
    """Noisy copies per image (the paper: 50; the map stops changing after a few dozen)."""
    noise: Annotated[float, Range(ge=0)] = 0.15
    """Noise standard deviation as a share of the image's value range (the paper: 10-20%)."""


def smoothgrad_maps(ctx: Ctx, samples: int, noise: float) -> MapMethod:
    """SmoothGrad (max over RGB of |mean gradient|), each image's noise from its own seeded stream, so an image's map
    does not depend on which images share its batch."""
    chunk = gradient_batch_size(ctx)

    def sg(pm, x, t, idx):
        out = [A.to_map(A.smoothgrad(pm, x[k:k + 1], t[k:k + 1], n_samples=samples, noise=noise,
                                     generator=ctx.generator(f"smoothgrad/noise/{idx[k]}"), chunk=chunk))
               for k in range(len(x))]
        return as_numpy(torch.cat(out))

    return MapMethod(MapSpec("SmoothGrad", (int(samples), float(noise))), sg, fast=True)


def total_variation(m: np.ndarray) -> float:
    """Mean absolute difference of neighbouring pixels relative to the mean value: how speckled a map is."""
    tv = np.abs(np.diff(m, axis=0)).mean() + np.abs(np.diff(m, axis=1)).mean()
    return float(tv / max(float(m.mean()), 1e-12))


@technique(
    "smoothgrad", "SmoothGrad", role="review", options=SmoothGradOptions, order=45, needs_autograd=True,
    references=[SMILKOV_2017, SIMONYAN_2014],
    presets={"minimal": {"max_images": 2, "samples": 8}, "full": {"max_images": 12, "samples": 50}},
    methods=[AttributionMethod("SmoothGrad", lambda ctx, o: smoothgrad_maps(ctx, o.samples, o.noise), order=20)],
)
def smoothgrad(ctx: Ctx, opts: SmoothGradOptions) -> Section:
    """The saliency map averaged over many copies of the image with Gaussian noise added. Noise that the plain
    gradient picks up from the score's local wiggles averages out, so SmoothGrad's map should be less speckled and
    sit more on the object than the plain gradient beside it."""
    b = explain_batch(ctx, opts.max_images)
    pm = ctx.output_model  # BatchNorm folded: same gradients, faster
    plain = A.to_map(A.gradient(pm, b.x, b.targets)).cpu().numpy()
    # through the run's map store (each image's noise from its own stream): faithfulness scores these maps
    sg = smoothgrad_maps(ctx, opts.samples, opts.noise).maps(ctx, b.idx, b.x, b.targets)
    items, tv_ratio, corr = [], [], []
    for k, i in enumerate(b.idx):
        img = ctx.images.display(i)
        ratio = total_variation(sg[k]) / max(total_variation(plain[k]), 1e-12)
        r = A.rank_correlation(plain[k], sg[k])
        tv_ratio.append(ratio)
        corr.append(r)
        items += [input_item(ctx, b, k),
                  heat_item(ctx, img, plain[k], "gradient", "", over=False),
                  heat_item(ctx, img, sg[k], "SmoothGrad", f"speckle x{ratio:.2f}, rank corr. {r:.2f}", over=False),
                  heat_item(ctx, img, sg[k], "SmoothGrad over the image")]
    sec = Section(id="smoothgrad", title="SmoothGrad")
    sec.add(Grid(items, columns=4, cell_width=cell_width(ctx), caption=(
        f"Each image, |d score/d pixel| (max over RGB), SmoothGrad over {opts.samples} copies with noise "
        f"sigma = {opts.noise:g} x the image's value range, and SmoothGrad over the image. Grey maps: black = 0, "
        "white = the map's 99.5th percentile. Speckle: total variation relative to the plain gradient's.")))
    med = float(np.median(tv_ratio)) if tv_ratio else 1.0
    if med < 0.8:
        sec.add(Note(f"Averaging removed speckle: the median total variation is {med:.2f} x the plain gradient's."))
    else:
        sec.add(Note(f"SmoothGrad is about as speckled as the plain gradient here (median ratio {med:.2f}); "
                     f"{opts.samples} samples at noise {opts.noise:g} did not smooth this model's gradients. "
                     "More samples or more noise may.", kind="warning"))
    sec.params["images"] = [ctx.images.name(i) for i in b.idx]
    sec.results = to_json(SmoothGradResults(
        samples=opts.samples, noise=opts.noise, median_speckle_ratio=round(med, 4),
        median_rank_corr_to_gradient=round(float(np.median(corr)), 4) if corr else None))
    return sec
