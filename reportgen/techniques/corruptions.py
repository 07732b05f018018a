"""Common corruptions: does the model hold up when a photo is a little noisy, blurred, compressed, brighter or flat?

Hendrycks & Dietterich (ICLR 2019) corrupt the test images with ordinary shifts at five severities. Here Gaussian
noise, Gaussian blur, JPEG compression, brightness, contrast and pixelation (the paper's parameters: ImageNet-C's
for inputs of 64 px and more, CIFAR-10-C's below, the blur's sigma scaled to the input side) are applied to a spread
sample of the images in the model's input space (RGB in [0, 1] at input size, before normalisation; the noise seeded
per image). For image i with clean prediction k_i: flip = [argmax f(c(x_i)) != k_i], drop = p_k(x_i) - p_k(c(x_i));
accuracy where labels exist. Flip rates need no labels; the most damaging corruption is the one with the highest
flip rate averaged over the severities, checked against the others by a paired bootstrap over images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Literal, get_args, overload

import numpy as np
import torch

from ..device import device_batch_size, inference_model
from ..papers import HENDRYCKS_DIETTERICH_2019
from ..pictures import figure_to_png, new_figure, unit_to_uint8
from ..results_schema import result_type, to_json
from ..registry import Range, technique
from ..report import Figure, Grid, GridItem, ImageData, KeyValues, Note, Section, Table, Tone
from ..robustness import evaluate as E
from ..robustness.corruptions import (CORRUPTIONS, LABELS, TABLE_NAMES, TABLE_SIDE, Corruption, choose_table,
                                      corrupt, level)
from ..sampling import spread_indices
from ._explain import cell_width


if TYPE_CHECKING:
    from ..context import Ctx

@result_type
class CorruptionsLevel:
    corruption: str
    """corruption name"""
    severity: int
    """the paper's severity level"""
    parameter: float | None
    """the corruption's parameter at this input side (noise std, blur sigma in px, JPEG quality, brightness delta,
    contrast factor, pixelation factor)"""
    parameter_text: str
    """the parameter in words"""
    accuracy: float | None
    """accuracy on the corrupted images (null without labels)"""
    flip_rate: float
    """share of images whose prediction differs from the clean prediction"""
    flip_rate_ci95: list[float]
    """Wilson 95% interval of the flip rate"""
    mean_prob_drop: float
    """mean drop of the clean-predicted class's softmax probability"""
    images: int
    """images evaluated"""


@result_type
class CorruptionsExample:
    image: str
    """an image that flips at its corruption's lowest severity (shown)"""
    corruption: str
    """the corruption"""
    severity: int
    """its severity"""
    clean: str
    """the clean prediction"""
    corrupted: str
    """the prediction on the corrupted image"""


@result_type
class CorruptionsResults:
    parameters: str | None
    """the paper's parameter table used: imagenet_c or cifar_10_c"""
    input_side: int
    """the model's input side in px (the blur's sigma is scaled to it)"""
    severities: list[int]
    """the paper's severity levels run (1 mildest .. 5)"""
    images: int
    """images evaluated (a spread sample of the set)"""
    labelled: bool
    """whether the evaluated images have labels (accuracy is null without)"""
    clean_accuracy: float | None
    """(with labels) accuracy of the clean predictions on the evaluated images"""
    per_corruption: list[CorruptionsLevel]
    """one row per corruption and severity run"""
    fragility: dict[str, float]
    """corruption -> flip rate averaged over the severities run"""
    most_fragile: str | None
    """the corruption with the highest averaged flip rate (ties: the larger probability drop)"""
    most_fragile_tied_with: list[str]
    """corruptions whose paired bootstrap 95% interval of the difference to it reaches 0"""
    mildest_severity: int | None
    """the lowest severity run"""
    mildest_flips: int
    """images whose prediction flips under at least one corruption at the lowest severity run"""
    examples: list[CorruptionsExample]
    """the flipping images shown (clean | corrupted pairs)"""


RESULTS = CorruptionsResults  # report.json "results" of this section (docs/results.md is generated from it)


@dataclass
class CorruptionsOptions:
    max_images: Annotated[int, Range(ge=1, le=100000)] = 256
    """Images corrupted and evaluated (a seeded spread across classes)."""
    corruptions: list[Corruption] = field(default_factory=lambda: list(get_args(Corruption)))
    """Which corruptions."""
    severities: list[Literal[1, 2, 3, 4, 5]] = field(default_factory=lambda: [1, 3, 5])
    """The paper's severity levels to run (1 mildest, 5 strongest)."""
    parameters: Literal["auto", "imagenet_c", "cifar_10_c"] = "auto"
    """Parameter table: ImageNet-C (made at 224 px) or CIFAR-10-C (32 px); auto: CIFAR-10-C under 64 px inputs."""
    show_flips: Annotated[int, Range(ge=0, le=64)] = 6
    """Images shown that flip at their corruption's lowest severity, clean and corrupted side by side."""
    bootstrap: Annotated[int, Range(ge=100, le=100000)] = 1000
    """Bootstrap resamples of the images for the tie test between corruptions."""


@dataclass
class Measured:
    """What :func:`measure` computed: the run, its rows and ranking, and the flip examples' pictures."""

    run: E.CorruptionRun
    indices: list[int]
    table: str
    rows: list[E.Row]
    frag: E.Fragility
    mildest: tuple[int | None, int]
    examples: list[tuple[int, int, np.ndarray]]  # (level index, position, corrupted uint8 picture)
    p_pred: np.ndarray


def _noise_for(ctx: Ctx, indices: list[int]) -> E.NoiseFn:
    """Standard-normal noise per image from a stream named by the image's content id: the same noise whatever the
    batch size or the image's position in the sample."""
    def fn(pos: list[int], shape: tuple[int, ...]) -> torch.Tensor:
        gens = [ctx.generator(f"corruptions/noise/{ctx.images.image_id(indices[p])}") for p in pos]
        return torch.stack([torch.randn(tuple(shape[1:]), generator=g) for g in gens])
    return fn


def measure(ctx: Ctx, opts: CorruptionsOptions) -> Measured:
    side = int(ctx.pre.size)
    table = choose_table(side, opts.parameters)
    names = [c for c in CORRUPTIONS if c in set(opts.corruptions)]
    levels = [level(c, int(s), side, table) for c in names for s in sorted(set(opts.severities))]
    feats = ctx.features()  # the shared clean pass: clean predictions are never recomputed here
    probs = feats.probs
    idx = spread_indices(ctx, opts.max_images, "corruptions/images")
    clean_preds = probs.argmax(1)[idx].astype(np.int64)
    clean_p = probs[idx, clean_preds].astype(np.float32)
    labels = ctx.images.labels[idx].astype(np.int64)
    bs = device_batch_size(ctx, cap=ctx.batch_size)
    forward = inference_model(ctx)
    noise_for = _noise_for(ctx, idx)

    def batches():
        for s in range(0, len(idx), bs):
            yield list(range(s, min(len(idx), s + bs))), ctx.to_device(ctx.images.batch(idx[s:s + bs]))

    nb = (len(idx) + bs - 1) // bs
    preds, pcls, p_pred = E.run_levels(forward, batches(), levels, clean_preds, noise_for,
                                       progress=lambda it, desc: ctx.progress(it, desc, total=nb))
    run = E.CorruptionRun(levels, preds, pcls, clean_preds, clean_p, labels)
    frag = E.fragility(run, ctx.rng("corruptions/bootstrap"), opts.bootstrap)
    order = [frag.most_fragile] + [c for c in names if c != frag.most_fragile]
    examples = []
    for li, p in E.flip_examples(run, order, opts.show_flips):
        x = ctx.to_device(ctx.images.batch([idx[p]]))
        y = corrupt(x, levels[li], noise=noise_for([p], tuple(x.shape)))
        examples.append((li, p, unit_to_uint8(y[0].permute(1, 2, 0).float().cpu().numpy())))
    return Measured(run, idx, table, E.rows(run), frag, E.mildest(run), examples, p_pred)


@technique(
    "corruptions", "Common corruptions: noise, blur, JPEG, brightness, contrast, pixelation", role="review",
    options=CorruptionsOptions, order=51, references=[HENDRYCKS_DIETTERICH_2019],
    presets={"minimal": {"max_images": 64, "show_flips": 4, "bootstrap": 500}, "full": {"max_images": 1000}},
)
def corruptions(ctx: Ctx, opts: CorruptionsOptions) -> Section:
    """Each line of the chart is one corruption: accuracy (with labels; else the share of predictions that change)
    against the paper's severity, 0 being the clean image. The table gives every corruption's parameter at this
    input size, the flip rate (prediction differs from the clean one, no labels needed) with its 95 % interval and
    the mean drop of the clean class's probability. The pictures are images that already flip at the mildest
    severity: clean on the left, corrupted on the right, with both predictions. A model that reads fine texture
    breaks under noise and blur; one that reads global brightness breaks under brightness and contrast."""
    sec = Section(id="corruptions", title="Common corruptions: noise, blur, JPEG, brightness, contrast, pixelation")
    if not opts.corruptions or not opts.severities:
        sec.add(Note("No corruption or no severity was chosen (corruptions.corruptions / corruptions.severities): "
                     "nothing to measure.", kind="warning"))
        sec.results = to_json(CorruptionsResults(
            parameters=None, input_side=int(ctx.pre.size), severities=[], images=0,
            labelled=bool(ctx.images.has_labels), clean_accuracy=None, per_corruption=[], fragility={},
            most_fragile=None, most_fragile_tied_with=[], mildest_severity=None, mildest_flips=0, examples=[]))
        return sec
    return present(ctx, measure(ctx, opts), sec)


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%" if v < 0.1 else f"{100 * v:.0f}%"


def present(ctx: Ctx, m: Measured, sec: Section) -> Section:
    """The report blocks and results of a :class:`Measured` run."""
    run, n = m.run, len(m.indices)
    known = run.labels >= 0
    clean_acc = float((run.clean_preds[known] == run.labels[known]).mean()) if known.any() else None
    severities = sorted({lv.severity for lv in run.levels})
    names = [c for c in CORRUPTIONS if any(lv.corruption == c for lv in run.levels)]
    side = int(ctx.pre.size)
    sec.add(_parameters_block(m, names, severities, side))
    sec.add(Figure(_chart(m, names, severities, clean_acc), caption=_verdict(ctx, m, clean_acc),
                   alt="accuracy or flip rate against corruption severity, one line per corruption"))
    sec.add(_table(m))
    if n < 30:
        sec.add(Note(f"Only {n} images were evaluated: every rate here is a rough estimate (one image moves it by "
                     f"{100 / n:.0f} points); read the 95 % intervals in the table.", kind="warning"))
    examples: list[CorruptionsExample] = []
    if m.examples:
        sec.add(_examples_grid(ctx, m))
        for li, p, _ in m.examples:
            lv = run.levels[li]
            examples.append(CorruptionsExample(
                image=ctx.images.name(m.indices[p]), corruption=lv.corruption, severity=lv.severity,
                clean=ctx.class_name(int(run.clean_preds[p])), corrupted=ctx.class_name(int(run.preds[li, p]))))
    elif severities:
        sec.add(Note(f"No image flips at severity {severities[0]} under any corruption run.", kind="info"))
    sec.params.update(images=[ctx.images.name(i) for i in m.indices])
    ms, mf = m.mildest
    sec.results = to_json(CorruptionsResults(
        parameters=m.table, input_side=side, severities=severities, images=n,
        labelled=bool(known.any()), clean_accuracy=_r(clean_acc),
        per_corruption=[CorruptionsLevel(corruption=r.corruption, severity=r.severity, parameter=_r(r.parameter),
                                         parameter_text=r.text, accuracy=_r(r.accuracy), flip_rate=_r(r.flip_rate),
                                         flip_rate_ci95=[_r(r.flip_ci95[0]), _r(r.flip_ci95[1])],
                                         mean_prob_drop=_r(r.mean_prob_drop), images=r.images) for r in m.rows],
        fragility={c: _r(v) for c, v in m.frag.scores.items()},
        most_fragile=m.frag.most_fragile, most_fragile_tied_with=list(m.frag.tied),
        mildest_severity=ms, mildest_flips=mf, examples=examples,
    ))
    return sec


@overload
def _r(v: float) -> float: ...
@overload
def _r(v: None) -> None: ...
def _r(v: float | None) -> float | None:
    return None if v is None else round(float(v), 4)


def _parameters_block(m: Measured, names: list[str], severities: list[int], side: int) -> KeyValues:
    by = {(lv.corruption, lv.severity): lv.text for lv in m.run.levels}
    pairs = [(LABELS[c], "; ".join(f"severity {s}: {by[(c, s)]}" for s in severities)) for c in names]
    scale = (f", the blur's sigma scaled by {side}/{TABLE_SIDE[m.table]}" if side != TABLE_SIDE[m.table] else "")
    pairs.append(("parameters", f"{TABLE_NAMES[m.table]} table of Hendrycks & Dietterich for {side} px inputs"
                                f"{scale}; noise seeded per image"))
    return KeyValues(pairs, title="Corruptions and their parameters at this input size")


def _chart(m: Measured, names: list[str], severities: list[int], clean_acc: float | None) -> ImageData:
    rows = {(r.corruption, r.severity): r for r in m.rows}
    panels = (["accuracy", "flip rate"] if clean_acc is not None else ["flip rate"])
    fig = new_figure((4.4 * len(panels) + 0.6, 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    xs = [0, *severities]
    for ax, what in zip(axes, panels):
        for c in names:
            if what == "accuracy":
                ys: list[float | None] = [clean_acc, *(rows[(c, s)].accuracy for s in severities)]
            else:
                ys = [0.0, *(rows[(c, s)].flip_rate for s in severities)]
            ax.plot(xs, ys, marker="o", lw=2.2 if c == m.frag.most_fragile else 1.3, label=LABELS[c])
        ax.set_xticks(xs)
        ax.set_xlabel("severity (0 = clean)")
        ax.set_ylabel("accuracy" if what == "accuracy" else "share of predictions changed")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{what} on {len(m.indices)} images", fontsize=9)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return figure_to_png(fig)


def _verdict(ctx: Ctx, m: Measured, clean_acc: float | None) -> str:
    """The caption: the most damaging corruption with its numbers, and how sure the ranking is."""
    f, n = m.frag, len(m.indices)
    top = f.most_fragile
    rows = [r for r in m.rows if r.corruption == top]
    worst = max(rows, key=lambda r: r.severity)
    k = int(round(worst.flip_rate * n))
    if all(v == 0 for v in f.scores.values()):
        return (f"No prediction changed under any corruption at these severities ({n} images; at {n} images a "
                f"flip rate up to {_pct(E.wilson(0, n)[1])} is still possible). The largest mean drop of the clean "
                f"class's probability is under {LABELS[top]} ({f.drops[top]:.3f}).")
    text = (f"Most fragile to {LABELS[top]}: on average over the severities {_pct(f.scores[top])} of the predictions "
            f"change; at severity {worst.severity} ({worst.text}) {k} of {n} "
            f"({_pct(worst.flip_rate)}, 95% interval {_pct(worst.flip_ci95[0])}-{_pct(worst.flip_ci95[1])})")
    if clean_acc is not None and worst.accuracy is not None:
        text += f", and accuracy falls from {_pct(clean_acc)} to {_pct(worst.accuracy)}"
    text += "."
    others = sorted((c for c in f.scores if c != top), key=lambda c: -f.scores[c])
    if f.tied:
        tied = ", ".join(f"{LABELS[c]} ({_pct(f.scores[c])})" for c in others if c in f.tied)
        text += (f" The ranking is weak: {tied} cannot be told apart from it on these images (paired bootstrap 95% "
                 "interval of the difference reaches 0).")
    elif others:
        c = others[0]
        lo, hi = f.diff_ci95[c]
        text += (f" Clearly ahead of the runner-up, {LABELS[c]} ({_pct(f.scores[c])}; difference "
                 f"{_pct(lo)}-{_pct(hi)}, paired bootstrap 95% interval).")
    ms, mf = m.mildest
    if ms is not None:
        text += (f" At the mildest severity run ({ms}) {mf} of {n} images change prediction under at least one "
                 "corruption.")
    return text


def _table(m: Measured) -> Table:
    lab = m.run.labelled
    cols = ["corruption", "severity", "parameter"] + (["accuracy"] if lab else []) + [
        "flip rate", "95% interval", "mean prob. drop"]
    rows: list[list] = []
    hl: dict[int, Tone] = {}
    for i, r in enumerate(m.rows):
        row = [LABELS[r.corruption], r.severity, r.text] + ([f"{r.accuracy:.3f}"] if lab else []) + [
            f"{r.flip_rate:.3f}", f"{r.flip_ci95[0]:.2f}-{r.flip_ci95[1]:.2f}", f"{r.mean_prob_drop:.3f}"]
        rows.append(row)
        if r.corruption == m.frag.most_fragile:
            hl[i] = "bad"
    num = [1] + ([3, 4, 6] if lab else [3, 5])
    return Table(cols, rows, numeric=num, highlight=hl, title="Per corruption and severity",
                 caption="Flip rate: share of the images whose prediction differs from the clean prediction (Wilson "
                         "95% interval). Probability drop: clean-predicted class, clean minus corrupted.")


def _examples_grid(ctx: Ctx, m: Measured) -> Grid:
    run, items = m.run, []
    for li, p, pic in m.examples:
        i, lv = m.indices[p], run.levels[li]
        k, k2 = int(run.clean_preds[p]), int(run.preds[li, p])
        lab = int(run.labels[p])
        truth = f"; label {ctx.class_name(lab)}" if lab >= 0 else ""
        items.append(GridItem(ImageData(ctx.images.display(i), image_id=ctx.images.image_id(i), whole=True),
                              label=ctx.images.name(i), sublabel=f"clean: {ctx.class_name(k)} "
                              f"(p={run.clean_p[p]:.2f}){truth}", alt=f"clean {ctx.images.name(i)}",
                              tone="" if lab < 0 else "ok" if k == lab else "bad"))
        items.append(GridItem(ImageData(pic, image_id=ctx.images.image_id(i)),
                              label=f"{LABELS[lv.corruption]}, severity {lv.severity}",
                              sublabel=f"→ {ctx.class_name(k2)} (p={m.p_pred[li, p]:.2f}); {lv.text}",
                              alt=f"{lv.corruption} {ctx.images.name(i)}", tone="bad"))
    return Grid(items, columns=4, cell_width=max(84, cell_width(ctx)),
                title="Images that flip at the mildest severity (clean | corrupted)",
                caption="Each pair: the clean image with its prediction, and the corrupted copy the model labels "
                        "differently. The largest probability drops first, corruptions in turn.")
