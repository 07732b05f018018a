"""Class visualisation by gradient ascent (Simonyan et al. 2014; Yosinski et al. 2015; Olah et al. 2017).

Starting near the mean image, Adam ascends ``argmax_I S_c(I) - lambda ||I - mu||^2`` (``S_c``: the class
score before the softmax, ``mu``: the model's normalisation mean, i.e. the lecture's "zero" image;
Simonyan et al.). With the L2 penalty alone the result is high-frequency texture that the network scores
highly but a person cannot read. The regularised variant ascends ``S_c(I)`` with Yosinski et al.'s
regularisers as implemented here — multiplicative L2 decay ``I <- mu + (1 - d)(I - mu)`` after each step, a
Gaussian blur every few steps, and resetting pixels with small norm and small contribution — plus the
random jitter, scaling and rotation of each step's input that DeepDream (Mordvintsev et al. 2015) and
Olah et al. (2017) use for transformation robustness. Each image is labelled with the probability and
rank the network gives its class; a class that is not reached (rank > 1 or low p) is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import torch

from .. import optvis
from ..pictures import unit_to_uint8
from ..optvis import objectives as O
from ..optvis import regularizers as R
from ..optvis import transforms as T
from ..optvis.plotting import history_plot
from ..papers import MORDVINTSEV_2015, OLAH_2017, SIMONYAN_2014, YOSINSKI_2015
from ..registry import Range, technique
from ..report import Figure, Grid, GridItem, ImageData, KeyValues, Note, Row, Section
from ..results_schema import named, result_type, to_json

if TYPE_CHECKING:
    from ..context import Ctx

# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)


@result_type
class ClassVisualizationScore:
    logit: float
    """the class's logit on the final image"""
    p: float
    """its softmax probability"""
    rank: int
    """its rank among the classes (1: the top class)"""
    reached: bool
    """rank 1 and p >= min_prob"""


@result_type
class ClassVisualizationClass:
    class_: str
    """class name"""
    class_index: int
    """class index"""
    l2_only: ClassVisualizationScore = named("L2 only")
    """{logit, p, rank, reached} of the final L2-only image"""
    regularised: ClassVisualizationScore
    """{logit, p, rank, reached} of the final regularised image"""


@result_type
class ClassVisualizationResults:
    classes: list[ClassVisualizationClass]
    image_size: int
    """side of the optimised images"""
    steps: int
    """optimisation steps per variant"""
    min_prob: float
    """probability below which a class counts as not reached"""
    reached: dict[str, int]
    """{variant: classes reached (rank 1 and p >= min_prob)}"""


RESULTS = ClassVisualizationResults  # report.json "results" of this section (docs/results.md is generated from it)


@dataclass
class ClassVisualizationOptions:
    num_classes: Annotated[int, Range(ge=1)] = 4
    """How many classes (the run's --classes, else the most predicted classes of the image set)."""
    image_size: Annotated[int, Range(ge=1)] | None = 160
    """Side of the optimised image in pixels, at most the model's input size (None: the input size)."""
    steps: Annotated[int, Range(ge=1)] = 200
    """Gradient-ascent steps (Adam) for each variant."""
    lr: Annotated[float, Range(gt=0)] = 0.05
    """Adam learning rate in pixel units ([0, 1] scale)."""
    l2_weight: Annotated[float, Range(ge=0)] = 3e-3
    """lambda of the L2 penalty, the squared distance of the image from the mean image (L2-only variant)."""
    l2_decay: Annotated[float, Range(ge=0, lt=1)] = 0.005
    """Regularised variant: Yosinski et al.'s multiplicative L2 decay I <- mu + (1 - d)(I - mu) after each step."""
    min_prob: Annotated[float, Range(ge=0, le=1)] = 0.5
    """An image whose class is not rank 1, or has probability below this, is flagged as not reaching its class."""
    init: Literal["grey", "noise", "zeros"] = "noise"
    """Start image: grey (the normalisation mean), noise (mean + small Gaussian noise) or zeros (black)."""
    jitter: Annotated[int, Range(ge=0)] = 16
    """Regularised variant: random roll of up to this many pixels each step."""
    scale_rotate: bool = True
    """Regularised variant: also rescale (±10%) and rotate (±5°) the image randomly each step."""
    blur_every: Annotated[int, Range(ge=0)] = 4
    """Regularised variant: Gaussian blur every this many steps (0: never)."""
    blur_sigma: Annotated[float, Range(ge=0)] = 1.0
    """Regularised variant: blur standard deviation in pixels."""
    clip_norm_percentile: Annotated[float, Range(ge=0, le=100)] = 5.0
    """Regularised variant: pixels whose colour norm is in this lowest percentile are reset (with every blur)."""
    clip_contribution_percentile: Annotated[float, Range(ge=0, le=100)] = 5.0
    """Regularised variant: pixels with the smallest abs((I - mean) . dS/dI) (percentile) are reset (with every
    blur)."""
    parameterization: Literal["fft", "pixel"] = "fft"
    """Regularised variant's image: fft (Olah et al. 2017's decorrelated Fourier image, with the jitter/scale/rotate
    transforms and no blur or clipping) or pixel (Yosinski et al.'s blur and clipping). The minimal preset uses
    pixel: a Fourier image barely moves in its 12 steps."""


def pick_classes(ctx: Ctx, n: int) -> list[int]:
    """``--classes`` if given (all of them), else the ``n`` most predicted classes over the image set
    (ties and too few distinct predictions: the highest mean probability)."""
    if ctx.general.classes:
        return [int(c) for c in ctx.general.classes]
    feats = ctx.features()
    preds = feats.preds
    probs = feats.probs
    counts = np.bincount(preds, minlength=probs.shape[1]).astype(np.float64)
    score = counts + probs.mean(0)  # counts first, mean probability breaks ties and fills up
    order = np.argsort(-score, kind="stable")
    return [int(c) for c in order[: max(1, n)]]


@dataclass(frozen=True)
class Score:
    """How the network scores its class on one final image."""

    logit: float
    p: float
    rank: int
    reached: bool  # rank 1 and p >= min_prob


@dataclass(frozen=True, eq=False)
class ClassVisualizationResult:
    """What the section computed: the final images, their scores and the objective curves of each variant."""

    classes: tuple[int, ...]
    size: int
    jitter: int
    mean: tuple[float, ...]
    runs: dict[str, Any]  # variant label -> optvis render result (images, history, final_logits, info)
    scores: tuple[dict[str, Score], ...]  # per class: variant label -> its score

    def reached(self, label: str) -> list[bool]:
        return [s[label].reached for s in self.scores]

    def results(self, ctx: Ctx, opts: ClassVisualizationOptions) -> ClassVisualizationResults:
        """The section's report.json ``results``."""
        def score(s: Score) -> ClassVisualizationScore:
            return ClassVisualizationScore(logit=round(s.logit, 4), p=round(s.p, 4), rank=s.rank, reached=s.reached)

        per_class = [ClassVisualizationClass(class_=ctx.class_name(c), class_index=c, l2_only=score(sc["L2 only"]),
                                             regularised=score(sc["regularised"]))
                     for c, sc in zip(self.classes, self.scores)]
        return ClassVisualizationResults(classes=per_class, image_size=self.size, steps=opts.steps,
                                         min_prob=opts.min_prob,
                                         reached={label: int(sum(self.reached(label))) for label in self.runs})


def _variants(opts: ClassVisualizationOptions, jitter: int, mean: tuple[float, ...]) -> dict[str, dict[str, Any]]:
    """Transforms and regularisers of each variant."""
    every = max(1, opts.blur_every)
    variants: dict[str, dict[str, Any]] = {
        "L2 only": dict(transforms=[], regularizers=[]),
        "regularised": dict(
            transforms=([T.jitter(jitter)] if opts.jitter > 0 else [])
            + ([T.random_scale([0.9, 0.95, 1.0, 1.05, 1.1]), T.random_rotate([-5, 0, 5])] if opts.scale_rotate else []),
            regularizers=[
                *([R.L2Decay(opts.l2_decay, mean)] if opts.l2_decay > 0 else []),
                *([R.BlurEvery(opts.blur_every, opts.blur_sigma)] if opts.blur_every > 0 else []),
                *([R.ClipSmallNorm(opts.clip_norm_percentile, mean, every)] if opts.clip_norm_percentile > 0 else []),
                *([R.ClipSmallContribution(opts.clip_contribution_percentile, mean, every)]
                  if opts.clip_contribution_percentile > 0 else []),
            ],
        ),
    }
    if opts.parameterization == "fft":
        variants["regularised"]["regularizers"] = []
    return variants


def compute_class_visualization(ctx: Ctx, opts: ClassVisualizationOptions) -> ClassVisualizationResult:
    """Gradient ascent on each chosen class's logit, L2-only and regularised, and the final images' scores."""
    classes = pick_classes(ctx, opts.num_classes)
    # never larger than what the model was built for: a 28 px model shown a 160 px canvas only paints texture
    size = int(min(opts.image_size or ctx.pre.size, ctx.pre.size))
    jitter = min(opts.jitter, max(1, size // 10))  # the roll is relative to the canvas
    mean = tuple(float(m) for m in ctx.pre.mean)
    g0 = ctx.generator("class_visualization/init")
    init = optvis.pixel_image(len(classes), size, opts.init, center=mean, sd=0.02, generator=g0).image().detach()
    objective = O.class_logit(classes) - opts.l2_weight * O.l2(mean)
    objectives = {"L2 only": objective, "regularised": O.class_logit(classes)}
    runs = {}
    for k, (label, kw) in enumerate(_variants(opts, jitter, mean).items()):
        param = optvis.pixel_image(init=init.clone(), device=ctx.device)
        if label == "regularised" and opts.parameterization == "fft":
            param = optvis.param.fourier_image(len(classes), size,
                                               generator=ctx.generator("class_visualization/fourier"),
                                               device=ctx.device)
        runs[label] = optvis.render(
            ctx.output_model, objectives[label], param, optimizer="adam", steps=opts.steps, lr=opts.lr,
            generator=ctx.generator(f"class_visualization/jitter/{k}"), layer_root=ctx.model, evaluate_final=True,
            progress=ctx.progress, desc=f"Class visualisation ({label})", fit=ctx.fit_input, **kw)
    scores = []
    for j, c in enumerate(classes):
        row = {}
        for label, res in runs.items():
            logit, p, rank = final_score(res.final_logits, j, c)
            row[label] = Score(logit, p, rank, rank == 1 and p >= opts.min_prob)
        scores.append(row)
    return ClassVisualizationResult(tuple(classes), size, jitter, mean, runs, tuple(scores))


def _settings(opts: ClassVisualizationOptions, r: ClassVisualizationResult) -> KeyValues:
    reg = r.runs["regularised"]
    return KeyValues([
        ("image", f"{r.size}×{r.size} pixels, start: {opts.init} around the normalisation mean {r.mean}"),
        ("optimiser", f"Adam (Kingma & Ba), lr {opts.lr:g} (pixel units), {opts.steps} steps, pixels clamped to "
                      "[0, 1], for both variants"),
        ("regularised variant", f"{opts.parameterization} parameterisation; Yosinski et al.'s regularisers: "
         + (", ".join(reg.info["regularizers"]) or "none")
         + "; transformation robustness (DeepDream, Olah et al. 2017): "
         + ", ".join(([f"jitter ±{r.jitter}px"] if opts.jitter > 0 else [])
                     + (["random scale ±10% and rotation ±5°"] if opts.scale_rotate else [])) + "; no L2 penalty term"),
        ("time", ", ".join(f"{k}: {v.wall_time_s:.1f} s" for k, v in r.runs.items())),
    ], title="Settings")


def show_class_visualization(ctx: Ctx, opts: ClassVisualizationOptions, r: ClassVisualizationResult) -> list[Any]:
    """The section's blocks: the image grid beside the objective curves, the settings and the warnings."""
    classes, size = list(r.classes), r.size
    items = [GridItem(
        ImageData(unit_to_uint8(res.images[j].permute(1, 2, 0).numpy()), display_width=min(224, 2 * size)),
        label=f"{ctx.class_name(c)} — {label}",
        sublabel=f"S_c = {s.logit:.1f}, p = {s.p:.3f}, rank {s.rank}" + ("" if s.reached else ": not reached"),
        alt=f"image maximising class {ctx.class_name(c)}, {label}",
        tone="ok" if s.reached else "bad",
    ) for j, c in enumerate(classes) for label, res in r.runs.items() for s in [r.scores[j][label]]]
    src = "--classes" if ctx.general.classes else "the most predicted classes of the image set"
    grid = Grid(items, columns=2, cell_width=min(224, max(96, 2 * size)),
                caption=f"Left: argmax S_c(I) − λ‖I − μ‖² (λ = {opts.l2_weight:g}); right: argmax S_c(I) "
                        + ("over a Fourier-space, colour-decorrelated image (Olah et al. 2017)"
                           if opts.parameterization == "fft" else
                           "with L2 decay, blur and pixel clipping (Yosinski et al.)")
                        + " and random jitter/scale/rotation (DeepDream). "
                        f"Classes: {src}. Green: rank 1 with p ≥ {opts.min_prob:g}; red: not reached (the network "
                        "does not see the class in the image it made).")
    curves = {f"{label}: {ctx.class_name(c)}"[:40]: res.history[:, j]
              for label, res in r.runs.items() for j, c in enumerate(classes[:4])}
    plot = history_plot(curves, title="objective per step (L2 only: S_c − λ‖I−μ‖²; regularised: S_c)",
                        ylabel="objective")
    reg = r.runs["regularised"]
    noisier = "the random transformations" + (" and the pixel resets" if reg.info["regularizers"] else "")
    blocks: list[Any] = [Row([grid, Figure(plot, caption=f"Objective per step (first four classes); the regularised "
                                                         f"curve is noisier because of {noisier}.",
                                           alt="objective per optimisation step")]), _settings(opts, r)]
    weak = [ctx.class_name(c) for j, c in enumerate(classes) if not reg.improved()[j]]
    if weak:
        blocks.append(Note("The objective did not increase for: " + ", ".join(weak)
                           + " (try more steps or a larger lr).", kind="warning"))
    for label in r.runs:
        missed = [ctx.class_name(c) for c, ok in zip(classes, r.reached(label)) if not ok]
        if missed:
            blocks.append(Note(f"{label}: {len(missed)} of {len(classes)} classes were not reached (not rank 1 or "
                               f"p < {opts.min_prob:g}): {', '.join(missed)}. Those images show what raises the "
                               "score, not what the network recognises as the class.", kind="warning"))
    return blocks


@technique(
    "class_visualization", "Class visualisation (gradient ascent)", options=ClassVisualizationOptions, order=80,
    needs_autograd=True,
    references=[SIMONYAN_2014, YOSINSKI_2015, MORDVINTSEV_2015, OLAH_2017],
    presets={
        "minimal": {"num_classes": 2, "image_size": None, "steps": 12, "lr": 0.05, "jitter": 2, "blur_every": 3,
                    "parameterization": "pixel"},
        "full": {"num_classes": 8, "image_size": 224, "steps": 300, "jitter": 12},
    },
)
def class_visualization(ctx: Ctx, opts: ClassVisualizationOptions) -> Section:
    """Synthetic images that maximise one class score, found by gradient ascent on the pixels: on the left with only
    an L2 penalty, on the right regularised, by a Fourier-space colour-decorrelated image (Olah et al.; the default)
    or by L2 decay, periodic blur and pixel clipping (Yosinski et al.), with random jitter, scaling and rotation (as
    in DeepDream). Each image gives the probability and rank the network assigns its class;
    only images that reach rank 1 with a high probability show what the network responds to for that class, and the
    others are flagged."""
    r = compute_class_visualization(ctx, opts)
    sec = Section(id="class_visualization", title="Class visualisation (gradient ascent)")
    for block in show_class_visualization(ctx, opts, r):
        sec.add(block)
    sec.params["classes"] = list(r.classes)
    sec.params["image_size"] = r.size
    sec.results = to_json(r.results(ctx, opts))
    return sec


def final_score(logits: torch.Tensor, j: int, c: int) -> tuple[float, float, int]:
    """(logit S_c, softmax p_c, rank of c: 1 = top) of image ``j`` of the final images."""
    z = logits[j].float()
    return float(z[c]), float(torch.softmax(z, 0)[c]), int((z > z[c]).sum()) + 1
