"""Calibration: does the model's confidence match how often it is right? (Guo et al., ICML 2017)

On the labelled images, from the shared pass's logits (no extra forward pass): the reliability diagram and the
expected calibration error ``ECE = sum_b |B_b| / N * |acc(B_b) - conf(B_b)|`` of the top-1 probability (Naeini et
al. 2015) with equal-width and with equal-mass bins (Nixon et al. 2019); the NLL ``-mean log p_y``; the Brier
score ``mean_i sum_k (p_ik - [k = y_i])^2``; the ECE of each class with enough images; and temperature scaling:
``softmax(z / T)`` with T fitted by minimising the NLL on a seeded half of the labelled images and the ECE
measured before and after on the other half. T > 1 means the model was over-confident, T < 1 under-confident.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, overload

import numpy as np

from ..calibration.diagram import reliability_png
from ..calibration.metrics import Calibration, TemperatureFit, brier, calibration, fit_temperature, nll, softmax
from ..papers import GUO_2017, NAEINI_2015, NIXON_2019
from ..registry import Range, technique
from ..report import Figure, KeyValues, Note, Section, Table
from ..results_schema import result_type, to_json


if TYPE_CHECKING:
    from ..context import Ctx

@result_type
class ClassEce:
    class_: str
    """the true class"""
    ece: float
    """equal-width ECE over that class's images"""
    n: int
    """labelled images of that class"""


@result_type
class CalibrationResults:
    labelled_images: int
    """images with a true label (all numbers below are over these)"""
    bins: int
    """confidence bins of the ECE (equal-width and equal-mass alike)"""
    accuracy: float
    """top-1 accuracy on the labelled images"""
    mean_confidence: float
    """mean top-1 softmax probability on the labelled images"""
    ece: float
    """expected calibration error, equal-width bins (0 = confidence equals accuracy in every bin)"""
    ece_equal_mass: float
    """expected calibration error, equal-mass bins (each bin holds the same number of images)"""
    nll: float
    """mean negative log-likelihood of the true class"""
    brier: float
    """multi-class Brier score: mean over images of sum_k (p_k - y_k)^2 (0 best, 2 worst)"""
    temperature: float | None
    """temperature T fitted by minimising the NLL on the fitting half (> 1: over-confident, < 1: under-confident; null
    with fewer than 4 labelled images)"""
    temperature_at_bound: bool
    """T reached the end of the searched range [0.01, 100] (not a meaningful value)"""
    fit_images: int
    """labelled images T was fitted on (a seeded half)"""
    heldout_images: int
    """labelled images the before/after ECE is measured on (the other half)"""
    ece_before_temperature_heldout: float | None
    """equal-width ECE on the held-out half before temperature scaling"""
    ece_after_temperature: float | None
    """equal-width ECE on the held-out half after temperature scaling"""
    nll_before_temperature_heldout: float | None
    """NLL on the held-out half before temperature scaling"""
    nll_after_temperature: float | None
    """NLL on the held-out half after temperature scaling"""
    per_class_ece: list[ClassEce]
    """ECE of each true class with at least min_class_images images, worst first"""
    weak: bool
    """fewer than 20 labelled images: every number here is a rough estimate"""


RESULTS = CalibrationResults  # report.json "results" of this section (docs/results.md is generated from it)

WEAK_BELOW = 20  # labelled images under which the section calls its numbers weak
MIN_FOR_TEMPERATURE = 4  # two per half at least


@dataclass
class CalibrationOptions:
    bins: Annotated[int, Range(ge=2, le=100)] = 15
    """Confidence bins of the ECE and the reliability diagram (Guo et al. use 15); the equal-mass ECE uses as many."""
    min_class_images: Annotated[int, Range(ge=2)] = 20
    """ECE per class only for classes with at least this many labelled images."""
    max_classes: Annotated[int, Range(ge=1)] = 10
    """Rows of the table of the worst-calibrated classes."""


@dataclass
class CalibrationResult:
    """The numbers of one calibration analysis (typed; :func:`_blocks` turns it into report blocks)."""

    n: int
    accuracy: float
    confidence: float
    width: Calibration
    mass: Calibration
    nll: float
    brier: float
    fit: TemperatureFit | None
    n_fit: int
    held_before: Calibration | None
    held_after: Calibration | None
    held_nll: tuple[float, float] | None
    per_class: list[tuple[int, float, int, float, float]]  # (class, ece, n, accuracy, confidence), worst first


def analyse(logits: np.ndarray, labels: np.ndarray, bins: int, min_class_images: int,
            rng: np.random.Generator) -> CalibrationResult:
    """Every calibration number of the labelled images' ``logits`` (N x K) and ``labels`` (N, all known)."""
    p = softmax(logits)
    n = len(labels)
    correct = p.argmax(1) == labels
    fit = held_before = held_after = held_nll = None
    n_fit = 0
    if n >= MIN_FOR_TEMPERATURE:
        order = rng.permutation(n)
        a, b = order[: n // 2], order[n // 2:]
        n_fit = len(a)
        fit = fit_temperature(logits[a], labels[a])
        held_before = calibration(p[b], labels[b], bins)
        held_after = calibration(softmax(logits[b], fit.temperature), labels[b], bins)
        held_nll = (nll(logits[b], labels[b]), nll(logits[b], labels[b], fit.temperature))
    per_class = []
    for c in np.unique(labels):
        m = labels == c
        if m.sum() >= min_class_images:
            cal = calibration(p[m], labels[m], bins)
            per_class.append((int(c), cal.ece, int(m.sum()), float(correct[m].mean()), float(p[m].max(1).mean())))
    per_class.sort(key=lambda r: -r[1])
    return CalibrationResult(n, float(correct.mean()), float(p.max(1).mean()), calibration(p, labels, bins),
                             calibration(p, labels, bins, "mass"), nll(logits, labels), brier(p, labels), fit, n_fit,
                             held_before, held_after, held_nll, per_class)


def _why_not(ctx: Ctx) -> str | None:
    if ctx.images.has_labels:
        return None
    return (f"calibration needs true labels; none of the {len(ctx.images)} images has one (put the images in "
            "class sub-folders, or name the files by class)")


@technique(
    "calibration", "Calibration", role="review", options=CalibrationOptions, order=5, unsupported_if=_why_not,
    references=[GUO_2017, NAEINI_2015, NIXON_2019],
)
def calibration_technique(ctx: Ctx, opts: CalibrationOptions) -> Section:
    """Whether the model's confidence matches how often it is right: the reliability diagram, the expected
    calibration error (ECE) with equal-width and equal-mass bins, NLL and Brier score, the worst-calibrated
    classes, and how much temperature scaling (one scalar fitted on half the labelled images) fixes. Bars below the
    diagonal are over-confidence; a fitted temperature above 1 means the model was over-confident."""
    feats = ctx.features()
    labels = ctx.images.labels
    known = (labels >= 0) & (labels < feats.logits.shape[1])
    if not known.any():
        raise ValueError("the labels do not fit the model's classes")  # has_labels said there were some
    res = analyse(feats.logits[known].astype(np.float64), labels[known], opts.bins, opts.min_class_images,
                  ctx.rng("calibration/split"))
    sec = Section(id="calibration", title="Calibration")
    sec.results = to_json(_results(res, opts.bins, ctx.class_name))
    for block in _blocks(res, opts, ctx.class_name):
        sec.add(block)
    return sec


@overload
def _r(x: float) -> float: ...
@overload
def _r(x: None) -> None: ...
def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 5)


def _results(res: CalibrationResult, bins: int, class_name) -> CalibrationResults:
    temp: dict = dict(temperature=None, temperature_at_bound=False, ece_before_temperature_heldout=None,
                      ece_after_temperature=None, nll_before_temperature_heldout=None, nll_after_temperature=None)
    if res.fit is not None and res.held_before is not None and res.held_after is not None and res.held_nll:
        temp.update(temperature=round(res.fit.temperature, 4), temperature_at_bound=res.fit.at_bound,
                    ece_before_temperature_heldout=_r(res.held_before.ece),
                    ece_after_temperature=_r(res.held_after.ece),
                    nll_before_temperature_heldout=_r(res.held_nll[0]), nll_after_temperature=_r(res.held_nll[1]))
    return CalibrationResults(
        labelled_images=res.n, bins=bins, accuracy=_r(res.accuracy), mean_confidence=_r(res.confidence),
        ece=_r(res.width.ece), ece_equal_mass=_r(res.mass.ece), nll=_r(res.nll), brier=_r(res.brier),
        fit_images=res.n_fit, heldout_images=res.n - res.n_fit, **temp,
        per_class_ece=[ClassEce(class_=class_name(c), ece=_r(e), n=k) for c, e, k, _, _ in res.per_class],
        weak=res.n < WEAK_BELOW)


def _blocks(res: CalibrationResult, opts: CalibrationOptions, class_name) -> list:
    """The section's blocks from the numbers: words only for what these numbers support."""
    blocks: list = []
    if res.n < WEAK_BELOW:
        blocks.append(Note(f"Only {res.n} labelled images: every number here is weak (with {opts.bins} bins most "
                           "bins hold one image or none, and temperature scaling is fitted and tested on "
                           f"{res.n_fit} and {res.n - res.n_fit} images).", kind="warning"))
    blocks.append(Note(_verdict(res)))
    pairs = [("labelled images", str(res.n)), ("top-1 accuracy", f"{res.accuracy:.3f}"),
             ("mean top-1 probability", f"{res.confidence:.3f}"),
             (f"ECE ({opts.bins} equal-width bins)", f"{res.width.ece:.4f}"),
             (f"ECE ({opts.bins} equal-mass bins)", f"{res.mass.ece:.4f}"),
             ("NLL", f"{res.nll:.4f}"), ("Brier score", f"{res.brier:.4f}")]
    panels: list[tuple[Calibration, str, Calibration | None]] = [
        (res.width, f"all {res.n} labelled images: ECE {res.width.ece:.3f}", None)]
    if res.fit is not None and res.held_before is not None and res.held_after is not None:
        pairs += [("temperature T (fitted on half)", f"{res.fit.temperature:.3f}"),
                  ("ECE on the other half: before -> after", f"{res.held_before.ece:.4f} -> {res.held_after.ece:.4f}")]
        if res.held_nll:
            pairs.append(("NLL on the other half: before -> after", f"{res.held_nll[0]:.4f} -> {res.held_nll[1]:.4f}"))
        panels.append((res.held_before, f"held-out {res.n - res.n_fit} images: ECE {res.held_before.ece:.3f} -> "
                       f"{res.held_after.ece:.3f} at T = {res.fit.temperature:.2f}", res.held_after))
    blocks.append(KeyValues(pairs, title="Calibration on the labelled images"))
    blocks.append(Figure(reliability_png(panels), alt="reliability diagrams", caption=(
        f"Reliability diagrams ({opts.bins} equal-width bins of the top-1 probability; empty bins not drawn). Blue: "
        "accuracy of the images in the bin; red hatching: the gap to their mean confidence (bars below the diagonal "
        "are over-confidence, above it under-confidence)."
        + (" Right: the held-out half before (bars) and after (orange dots) temperature scaling." if len(panels) > 1
           else ""))))
    blocks.append(_per_class_block(res, opts, class_name))
    return blocks


def _verdict(res: CalibrationResult) -> str:
    gap = res.confidence - res.accuracy
    if abs(gap) < 0.01:
        text = (f"Confidence matches accuracy on average: mean top-1 probability {res.confidence:.1%}, accuracy "
                f"{res.accuracy:.1%}.")
    else:
        kind = "over-confident" if gap > 0 else "under-confident"
        text = (f"The model is {kind} on average: mean top-1 probability {res.confidence:.1%} against accuracy "
                f"{res.accuracy:.1%} ({100 * abs(gap):.1f} points {'above' if gap > 0 else 'below'}).")
    text += f" ECE {res.width.ece:.3f} (equal-width bins), {res.mass.ece:.3f} (equal-mass bins)."
    fit, before, after = res.fit, res.held_before, res.held_after
    if fit is None or before is None or after is None:
        return text + f" Temperature scaling needs at least {MIN_FOR_TEMPERATURE} labelled images."
    t = fit.temperature
    if fit.at_bound:
        why = ("every image is right with a clear margin" if t < 1 else
               "the probabilities carry no information about the true class")
        return text + (f" The fitted temperature reached the end of the searched range (T = {t:.2f}): on the fitting "
                       f"half {why}, so the fit is not meaningful.")
    sense = ("over-confident: dividing the logits by T softens the probabilities" if t > 1.01 else
             "under-confident: T < 1 sharpens the probabilities" if t < 0.99 else "already well calibrated (T ~ 1)")
    text += f" Temperature scaling fits T = {t:.2f} on {res.n_fit} images ({sense})"
    if after.ece < before.ece:
        text += f"; on the other {res.n - res.n_fit} it lowers the ECE from {before.ece:.3f} to {after.ece:.3f}."
    else:
        text += (f"; on the other {res.n - res.n_fit} it does not lower the ECE ({before.ece:.3f} -> {after.ece:.3f}): "
                 "one temperature does not fix this model's miscalibration on this set.")
    if res.held_nll and res.held_nll[1] > res.held_nll[0]:
        text += (f" The held-out NLL rises ({res.held_nll[0]:.3f} -> {res.held_nll[1]:.3f}): the temperature fitted on "
                 "one half does not carry over to the other, so treat it as weak.")
    return text


def _per_class_block(res: CalibrationResult, opts: CalibrationOptions, class_name):
    if not res.per_class:
        return Note(f"No class has {opts.min_class_images} or more labelled images, so no ECE per class is shown "
                    "(set calibration.min_class_images lower to see noisier per-class numbers).")
    rows = [[class_name(c), k, f"{e:.3f}", f"{a:.3f}", f"{conf:.3f}"]
            for c, e, k, a, conf in res.per_class[: opts.max_classes]]
    return Table(["class", "images", "ECE", "accuracy", "mean confidence"], rows, numeric=[1, 2, 3, 4],
                 title="Worst-calibrated classes", caption=(
                     f"ECE of the images of each true class with at least {opts.min_class_images} labelled images "
                     f"({len(res.per_class)} classes), worst first (at most {opts.max_classes}). Within one class "
                     "the bins hold few images, so these ECEs are higher than the overall one by chance alone: "
                     "compare classes with each other, not with the overall ECE."))


__all__ = ["CalibrationOptions", "CalibrationResult", "analyse", "calibration_technique"]
