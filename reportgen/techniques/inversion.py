"""Feature inversion (Mahendran & Vedaldi, CVPR 2015): which image has these features?

For an image ``x0`` and a layer ``l``, find ``x* = argmin_x ||phi_l(x) - phi_l(x0)||^2 / ||phi_l(x0)||^2 +
lambda R_TV^beta(x)`` from random noise (the TV^beta prior keeps the result image-like). Reconstructions from
layers of increasing depth show what each depth keeps: from early layers the image comes back almost exactly
(colours, edges, position); from deep layers only what the class needs survives (object parts and textures in
roughly the right places, colours and exact geometry lost). Each reconstruction is reported with its final
relative feature error (did the optimisation match the features?) and its pixel error against the original.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np

from .. import optvis
from ..inspection.activations import activations, spread_layers
from ..pictures import unit_to_uint8
from ..optvis import objectives as O
from ..optvis.plotting import history_plot
from ..papers import MAHENDRAN_VEDALDI_2015
from ..results_schema import result_type, to_json
from ..registry import Range, technique
from ..report import Block, Figure, Grid, GridItem, ImageData, KeyValues, Note, NoteKind, Section
from ..sampling import spread_indices
from ..synthesis.style import resize_to, resolve_parameterization

if TYPE_CHECKING:
    from ..context import Ctx


# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)


@result_type
class InversionResults:
    layers: list[str]
    """the layers inverted"""
    feature_error: dict[str, float]
    """per layer: mean relative feature error ||phi(x) - phi(x0)||^2 / ||phi(x0)||^2 of the reconstructions"""
    pixel_rms: dict[str, float]
    """per layer: mean RMS pixel distance of the reconstructions from the originals (RGB in [0, 1])"""
    loss_fell: dict[str, bool]
    """per layer: the loss fell for every image"""


RESULTS = InversionResults  # report.json "results" of this section (docs/results.md is generated from it)

@dataclass
class InversionOptions:
    layers: list[str] | None = None
    """Layers to invert, shallow to deep (None: block outputs at about 1/4, 1/2, 3/4 of the depth and the last)."""
    max_images: Annotated[int, Range(ge=1)] = 2
    """How many images (seeded, spread over the classes)."""
    image_size: Annotated[int, Range(ge=1)] | None = 128
    """Side of the reconstructed image, at most the model's input size (None: the input size)."""
    steps: Annotated[int, Range(ge=1)] = 200
    """Optimisation steps per layer."""
    optimizer: Literal["adam", "lbfgs"] = "adam"
    """adam or lbfgs."""
    lr: Annotated[float, Range(gt=0)] = 0.05
    """Adam learning rate (pixel units); L-BFGS uses 1 with a line search."""
    tv_weight: Annotated[float, Range(ge=0)] = 15.0
    """lambda: weight of the TV^beta prior per pixel at 128 px, scaled by (size/128)^2 for other sizes (neighbour
    differences grow as an image shrinks); the feature loss is relative, about 1 at the start."""
    tv_beta: Annotated[float, Range(gt=0)] = 2.0
    """beta of R_TV^beta (Mahendran & Vedaldi use 1 to 2)."""
    parameterization: Literal["fft", "pixel", "auto"] = "auto"
    """fft (Olah et al.'s decorrelated Fourier image: fewer high-frequency artefacts), pixel (the paper's) or auto
    (fft from 96 px up, where high-frequency artefacts appear; pixel below, where it converges faster)."""


@dataclass(frozen=True)
class InversionResult:
    """What the section shows; :meth:`results` is its report.json entry."""

    layers: list[str]
    images: list[int]
    size: int  # side of the reconstructions
    parameterization: str  # "fft" or "pixel"
    tv_lambda: float  # lambda of the TV prior at this size
    originals: Any  # torch.Tensor, B x 3 x size x size in [0, 1]
    runs: dict[str, Any]  # layer -> optvis.OptResult (reconstructions, loss history, wall time)
    feature_error: dict[str, np.ndarray]  # layer -> per image relative feature error
    pixel_rms: dict[str, np.ndarray]  # layer -> per image RMS pixel distance from the original

    @property
    def mean_feature_error(self) -> dict[str, float]:
        return {n: float(np.mean(v)) for n, v in self.feature_error.items()}

    @property
    def mean_pixel_rms(self) -> dict[str, float]:
        return {n: float(np.mean(v)) for n, v in self.pixel_rms.items()}

    def results(self) -> InversionResults:
        return InversionResults(layers=self.layers, feature_error=self.mean_feature_error,
                                pixel_rms=self.mean_pixel_rms,
                                loss_fell={n: bool(r.improved().all()) for n, r in self.runs.items()})


def compute_inversion(ctx: Ctx, opts: InversionOptions) -> InversionResult:
    """Every chosen image reconstructed from each layer's features, with its feature and pixel errors."""
    if opts.layers:
        names = [n for n in opts.layers if ctx.layer(n) is not None]
    else:
        ctx.require_hooks()
        names = spread_layers(ctx.model, called=ctx.probe().called) or [ctx.chosen_layer()]
    size = int(min(opts.image_size or ctx.pre.size, ctx.pre.size))
    idx = spread_indices(ctx, min(max(1, opts.max_images), len(ctx.images)), "inversion/images")
    x0 = resize_to(ctx.images.batch(idx), size)
    x0d = ctx.to_device(x0)
    targets = activations(ctx.pixel_model, names, x0d, root=ctx.model, fit=ctx.fit_input)
    pixels = size * size
    lam = opts.tv_weight * (size / 128) ** 2
    par = resolve_parameterization(opts.parameterization, size)
    runs = {}
    for k, name in enumerate(names):
        objective = -(O.feature_loss(name, targets[name]) + (lam / pixels) * O.total_variation(opts.tv_beta))
        g = ctx.generator(f"inversion/init/{k}")
        param = (optvis.param.fourier_image(len(idx), size, generator=g, device=ctx.device)
                 if par == "fft" else
                 optvis.pixel_image(len(idx), size, "uniform", generator=g, device=ctx.device))
        lr = 1.0 if opts.optimizer == "lbfgs" else opts.lr
        runs[name] = optvis.render(ctx.pixel_model, objective, param, optimizer=opts.optimizer, steps=opts.steps,
                                   lr=lr, generator=ctx.generator(f"inversion/jitter/{k}"), layer_root=ctx.model,
                                   progress=ctx.progress, desc=f"Inverting {name}", fit=ctx.fit_input)

    feat_err = {}
    pix_err = {}
    for name, res in runs.items():
        got = activations(ctx.pixel_model, [name], ctx.to_device(res.images), root=ctx.model,
                          fit=ctx.fit_input)[name]
        feat_err[name] = O.relative_sq_error(got, targets[name]).cpu().numpy()
        pix_err[name] = (res.images - x0).pow(2).flatten(1).mean(1).sqrt().numpy()  # RMS in [0, 1] units
    return InversionResult(names, list(idx), size, par, lam, x0, runs, feat_err, pix_err)


def present_inversion(ctx: Ctx, res: InversionResult, opts: InversionOptions) -> list[Block]:
    """The report blocks of an :class:`InversionResult`."""
    names, runs, size, x0 = res.layers, res.runs, res.size, res.originals
    items = []
    for j, i in enumerate(res.images):
        items.append(GridItem(ImageData(unit_to_uint8(x0[j].permute(1, 2, 0).numpy())), label=ctx.images.name(i),
                              sublabel="original", alt=f"original image {ctx.images.name(i)}"))
        for name, run in runs.items():
            items.append(GridItem(
                ImageData(unit_to_uint8(run.images[j].permute(1, 2, 0).numpy())), label=name,
                sublabel=f"feature err {res.feature_error[name][j]:.3f}, pixel RMS {res.pixel_rms[name][j]:.3f}",
                alt=f"reconstruction of {ctx.images.name(i)} from layer {name}"))
    cell = min(224, max(96, 2 * size))
    blocks: list[Block] = [Grid(
        items, columns=len(names) + 1, cell_width=cell,
        caption="One row per image: the original, then x* reconstructed from each layer (shallow to deep). "
                "feature err = ||φ(x*) − φ(x0)||² / ||φ(x0)||²; pixel RMS = root-mean-square difference "
                "from the original in [0, 1] units.")]
    mean_pix, mean_feat = res.mean_pixel_rms, res.mean_feature_error
    first, last = names[0], names[-1]
    if len(names) > 1 and mean_pix[first] < mean_pix[last]:
        text = (f"The early layer {first} keeps almost everything: its reconstruction is {mean_pix[first]:.3f} RMS "
                f"from the original, against {mean_pix[last]:.3f} from {last}, where only what the class needs "
                "survives (parts and textures, not colour or exact geometry).")
        kind: NoteKind = "info"
    else:
        text = ("In this run the deep reconstructions are not further from the original than the early ones "
                f"({', '.join(f'{n}: {v:.3f}' for n, v in mean_pix.items())} RMS); more steps or a different TV "
                "weight may be needed before the usual pattern (early layers keep almost everything) shows.")
        kind = "warning"
    blocks.append(Note(text, kind=kind))
    weak = [n for n, v in mean_feat.items() if v > 0.5]
    if weak:
        blocks.append(Note("The features were matched only loosely for " + ", ".join(weak) + " (relative feature "
                           "error above 0.5): these reconstructions show less than the layer keeps.", kind="warning"))
    curves = {n: -run.history.mean(1) for n, run in runs.items()}
    blocks.append(Figure(history_plot(curves, title="loss per step (mean over images)", ylabel="feature loss + λ·TV"),
                         caption="Total loss per step for each layer.", alt="inversion loss per step"))
    blocks.append(KeyValues([
        ("objective", f"||φ_l(x) − φ_l(x0)||² / ||φ_l(x0)||² + λ R_TV^β(x) / (H·W), λ = {res.tv_lambda:.3g}, "
                      f"β = {opts.tv_beta:g}"),
        ("optimiser", f"{'L-BFGS' if opts.optimizer == 'lbfgs' else 'Adam, lr %g' % opts.lr}, {opts.steps} steps "
                      f"from noise, {res.parameterization} parameterisation"),
        ("image", f"{size}×{size} pixels"),
        ("time", ", ".join(f"{n}: {r.wall_time_s:.1f} s" for n, r in runs.items())),
    ], title="Settings"))
    return blocks


@technique(
    "inversion", "Feature inversion", options=InversionOptions, order=110, needs_autograd=True, needs_layers=True,
    references=[MAHENDRAN_VEDALDI_2015],
    presets={
        "minimal": {"max_images": 1, "steps": 30, "image_size": None},
        "full": {"max_images": 4, "steps": 400, "image_size": 224},
    },
)
def inversion(ctx: Ctx, opts: InversionOptions) -> Section:
    """Each image is rebuilt from noise so that one layer's activations match the original's (plus a smoothness
    prior). From early layers the reconstruction is almost the photograph; from deep layers only what the class
    needs survives: parts and textures in roughly the right place, colour and exact shape lost."""
    res = compute_inversion(ctx, opts)
    sec = Section(id="inversion", title="Feature inversion")
    sec.add(*present_inversion(ctx, res, opts))
    sec.params.update(layers=res.layers, image_size=res.size, parameterization=res.parameterization,
                      images=[ctx.images.name(i) for i in res.images])
    sec.results = to_json(res.results())
    return sec
