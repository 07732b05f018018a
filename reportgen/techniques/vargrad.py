"""VarGrad (Adebayo et al. 2018): the variance of the gradient over noisy copies of the image.

``VG(x) = max_c Var_k[dS/dx_c (x + eps_k)]``, ``eps_k ~ N(0, sigma^2)``, ``sigma = noise * (max x - min x)``: the
variance over the ``n`` copies, ``(1/n) sum_k (g_k - mean g)^2``, of the gradient of the class score ``S`` (the logit),
maximised over the colour channels. Introduced in "Local explanation methods for deep neural networks lack
sensitivity to parameter values" (Adebayo, Gilmer, Goodfellow & Kim, ICLR workshop 2018) and put through the
randomisation checks in "Sanity Checks for Saliency Maps" (Adebayo et al. 2018). Where SmoothGrad averages the noisy
gradients, VarGrad keeps how much they disagree: bright where the score's slope changes near the image (ReLUs
switching, the model's non-linear evidence), dark where the score is flat or linear there. The method is this one
module: declared on the technique, so faithfulness scores it and sanity checks it whenever it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import numpy as np
import torch

from .. import attribution as A
from ..device import gradient_batch_size
from ..papers import ADEBAYO_2018, SMILKOV_2017
from ..registry import AttributionMethod, Range, SanityCheck, technique
from ..report import Block, Grid, Note, Section
from ..results_schema import result_type, to_json
from ._explain import Batch, cell_width, explain_batch, heat_item, input_item
from ._faith_maps import MapMethod, as_numpy
from ._map_store import MapSpec

if TYPE_CHECKING:
    from ..context import Ctx

@result_type
class VarGradImage:
    image: str
    """image name"""
    class_: str
    """class explained (the true label where known, else the prediction)"""
    top5pct_mass: float
    """share of the map's total in its brightest 5% of pixels (0.05: flat)"""
    rank_corr_to_gradient: float
    """Spearman rank correlation of the map with the plain |gradient|"""


@result_type
class VarGradResults:
    samples: int
    """noisy copies per image the variance is taken over"""
    noise: float
    """noise sigma as a share of the image's value range"""
    median_rank_corr_to_gradient: float | None
    """median Spearman rank correlation of VarGrad with the plain |gradient| (null: no image)"""
    zero_maps: list[str]
    """images whose VarGrad map is zero everywhere (the gradient did not change under the noise)"""
    images: list[VarGradImage]


RESULTS = VarGradResults  # report.json "results" of this section (docs/results.md is generated from it)


@dataclass
class VarGradOptions:
    max_images: Annotated[int, Range(ge=1)] = 4
    """How many images (the same ones saliency shows)."""
    samples: Annotated[int, Range(ge=2)] = 16
    """Noisy copies per image (a variance needs at least 2; sanity reruns them on every randomised model)."""
    noise: Annotated[float, Range(gt=0)] = 0.15
    """Noise standard deviation as a share of the image's value range (SmoothGrad's)."""


def gradient_variance(model: torch.nn.Module, x: torch.Tensor, target: A.Target, samples: int, noise: float,
                      generator: torch.Generator | None = None, chunk: int = 8) -> torch.Tensor:
    """``Var_k[dS/dx (x + eps_k)]`` per image and channel (B x C x H x W), the noise of each copy from ``generator``
    (CPU, image after image, ``samples`` copies of shape C x H x W in order), ``chunk`` copies per pass."""
    t = torch.as_tensor(np.asarray(target), dtype=torch.long).reshape(-1).expand(len(x))
    out = []
    for b in range(len(x)):
        xb = x[b:b + 1].detach()
        sigma = noise * float(xb.max() - xb.min())
        grads = []
        for s in range(0, samples, chunk):
            m = min(chunk, samples - s)
            eps = torch.randn((m, *xb.shape[1:]), generator=generator, dtype=torch.float32).to(x.device, x.dtype)
            grads.append(A.gradient(model, xb + sigma * eps, t[b].repeat(m)).float())
        out.append(torch.cat(grads).var(0, unbiased=False))
    return torch.stack(out)


def vargrad_method(ctx: Ctx, samples: int, noise: float) -> MapMethod:
    """VarGrad maps (max over RGB of the gradient's variance), each image's noise from its own seeded stream, so an
    image's map does not depend on which images share its batch."""
    chunk = gradient_batch_size(ctx)

    def fn(pm, x, t, idx):
        return as_numpy(torch.cat([gradient_variance(pm, x[k:k + 1], t[k:k + 1], samples, noise,
                                                     ctx.generator(f"vargrad/noise/{idx[k]}"), chunk).amax(1)
                                   for k in range(len(x))]))

    return MapMethod(MapSpec("VarGrad", (int(samples), float(noise))), fn, fast=True)


@dataclass(frozen=True)
class VarGradResult:
    """The images' VarGrad maps beside their plain |gradient|; :meth:`results` is the report.json entry."""

    batch: Batch
    names: tuple[str, ...]
    classes: tuple[str, ...]
    maps: np.ndarray  # B x H x W
    gradient: np.ndarray  # B x H x W, max over RGB of |dS/dx|
    samples: int
    noise: float

    def top5(self, k: int) -> float:
        m = self.maps[k].ravel()
        return float(np.sort(m)[::-1][:max(1, m.size // 20)].sum() / max(float(m.sum()), 1e-12))

    def corr(self, k: int) -> float:
        return float(A.rank_correlation(self.gradient[k], self.maps[k]))

    @property
    def zero(self) -> list[str]:
        return [n for n, m in zip(self.names, self.maps) if float(m.max()) <= 0]

    def results(self) -> VarGradResults:
        corr = [self.corr(k) for k in range(len(self.names))]
        return VarGradResults(
            samples=self.samples, noise=self.noise,
            median_rank_corr_to_gradient=round(float(np.median(corr)), 4) if corr else None, zero_maps=self.zero,
            images=[VarGradImage(image=n, class_=c, top5pct_mass=round(self.top5(k), 4),
                                 rank_corr_to_gradient=round(corr[k], 4))
                    for k, (n, c) in enumerate(zip(self.names, self.classes))])


def compute_vargrad(ctx: Ctx, opts: VarGradOptions) -> VarGradResult:
    """The maps of the images saliency shows, through the run's map store (faithfulness and sanity reuse them)."""
    b = explain_batch(ctx, opts.max_images)
    maps = vargrad_method(ctx, opts.samples, opts.noise).maps(ctx, b.idx, b.x, b.targets)
    grad = as_numpy(A.to_map(A.gradient(ctx.output_model, b.x, b.targets)))
    return VarGradResult(b, tuple(ctx.images.name(i) for i in b.idx),
                         tuple(ctx.class_name(int(t)) for t in b.targets), maps, grad, opts.samples, opts.noise)


def present_vargrad(ctx: Ctx, res: VarGradResult) -> list[Block]:
    """Each image, its plain |gradient|, VarGrad, and VarGrad over the image; a note on what the numbers say."""
    items = []
    for k, i in enumerate(res.batch.idx):
        img = ctx.images.display(i)
        items += [input_item(ctx, res.batch, k), heat_item(ctx, img, res.gradient[k], "|gradient|", "", over=False),
                  heat_item(ctx, img, res.maps[k], "VarGrad", f"rank corr. to |gradient| {res.corr(k):.2f}",
                            over=False),
                  heat_item(ctx, img, res.maps[k], "VarGrad over the image")]
    blocks: list[Block] = [Grid(items, columns=4, cell_width=cell_width(ctx), caption=(
        f"Each image, |d score/d pixel| (max over RGB), and the variance of that gradient over {res.samples} copies "
        f"with Gaussian noise of sigma = {res.noise:g} x the image's value range (max over RGB), alone and over the "
        "image. Grey maps: black = 0, white = the map's 99.5th percentile."))]
    if res.zero:
        blocks.append(Note(f"VarGrad is zero everywhere for {', '.join(res.zero)}: the gradient did not change under "
                           "this noise (the score is linear there), so these maps say nothing.", kind="warning"))
    corr = [res.corr(k) for k in range(len(res.names))]
    if corr:
        med = float(np.median(corr))
        blocks.append(Note(f"Median rank correlation of VarGrad with the plain gradient: {med:.2f}. "
                           + ("VarGrad ranks the pixels much as the gradient does here." if med >= 0.5 else
                              "VarGrad ranks the pixels differently from the gradient here; the faithfulness "
                              "section, with saliency enabled too, says which of the two follows the model's "
                              "evidence.")))
    return blocks


@technique(
    "vargrad", "VarGrad", role="review", options=VarGradOptions, order=45, needs_autograd=True, runs_in=("full",),
    references=[ADEBAYO_2018, SMILKOV_2017],
    presets={"minimal": {"max_images": 2, "samples": 8}, "full": {"max_images": 6}},
    methods=[AttributionMethod("VarGrad", lambda ctx, o: vargrad_method(ctx, o.samples, o.noise), order=25,
                               sanity=SanityCheck())],
)
def vargrad(ctx: Ctx, opts: VarGradOptions) -> Section:
    """How much the gradient changes over noisy copies of the image: bright pixels are where the class score's slope
    is unstable nearby (the model's non-linear evidence), dark where it is flat or linear. Faithfulness and sanity
    score this map like the other attribution methods whenever this section runs."""
    res = compute_vargrad(ctx, opts)
    sec = Section(id="vargrad", title="VarGrad", results=to_json(res.results()))
    sec.params["images"] = list(res.names)
    return sec.add(*present_vargrad(ctx, res))
