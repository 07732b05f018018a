"""Failure slices: coherent groups of images in the model's own feature space where it fails together.

Clustering with error-weighted scoring after PlaneSpot (Plumb et al. 2023; the search problem as in Spotlight,
d'Eon et al. 2022): PCA of the penultimate features, a diagonal Gaussian mixture of ``k`` clusters, each cluster's
score ``error rate x size``; a cluster is a slice only when ``P(errors >= observed | cluster and rest alike)`` (one-
sided Fisher exact test) times ``k`` (Bonferroni) is below ``alpha``. Without labels, slices of low top-1
confidence (one-sided Mann-Whitney U). A slice is a region the model handles worse than the rest; the class names
say what lives there, the thumbnails what it looks like. See :mod:`reportgen.failures.slices`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np

from ..failures.slices import Slice, auto_clusters, find_slices, majority, softmax, top_probability
from ..features.degenerate import check_features
from ..papers import DEON_2022, PLUMB_2023
from ..results_schema import result_type, to_json
from ..registry import Range, technique
from ..report import Grid, GridItem, Group, ImageData, Note, Section, Table, Tone, plural

if TYPE_CHECKING:
    from ..context import Ctx


@result_type
class SlicesSlice:
    size: int
    """images in the slice"""
    accuracy: float | None
    """(with labels) accuracy on the slice's images"""
    rest_accuracy: float | None
    """(with labels) accuracy on the other labelled images"""
    mean_confidence: float
    """mean top-1 softmax probability of the slice's images"""
    p_value: float
    """Bonferroni-corrected p-value (Fisher exact on errors; Mann-Whitney on confidence without labels)"""
    top_true_classes: list[list]
    """(with labels) the most frequent true classes in the slice: [[class, images]]"""
    top_predicted_classes: list[list]
    """the most frequent predictions in the slice: [[class, images]]"""
    images: list[str]
    """the slice's images (file names)"""


@result_type
class SlicesResults:
    slices: list[SlicesSlice]
    """the significant slices, most errors first (without labels: lowest confidence first)"""
    candidates: int
    """clusters tested (the Bonferroni factor)"""
    labelled: bool
    """whether errors (true) or confidence (false) were tested"""
    alpha: float
    """significance level"""
    degenerate: dict[str, Any] | None
    """null, or what makes the features unusable (kind non_finite / constant / rank_one, message)"""


RESULTS = SlicesResults  # report.json "results" of this section (docs/results.md is generated from it)


@dataclass
class SlicesOptions:
    clusters: Annotated[int, Range(ge=0)] = 0
    """Candidate clusters (0: about one per 25 images, 2 to 32)."""
    pca_dims: Annotated[int, Range(ge=1)] = 10
    """PCA dimensions of the penultimate features the clusters are formed in."""
    confidence_weight: Annotated[float, Range(ge=0)] = 0.0
    """Weight of the model's confidence as an extra clustering dimension (PlaneSpot's w). 0: features only, so the
    test's p-values are valid; above 0, scattered errors can gather into a low-confidence 'slice'."""
    min_size: Annotated[int, Range(ge=2)] = 5
    """Smallest slice shown."""
    alpha: Annotated[float, Range(gt=0, lt=1)] = 0.05
    """Significance level after the Bonferroni correction."""
    max_slices: Annotated[int, Range(ge=1)] = 5
    """Slices shown (the worst)."""
    thumbs: Annotated[int, Range(ge=1)] = 12
    """Thumbnails per slice (lowest confidence first)."""
    thumb: Annotated[int, Range(ge=16)] = 64
    """Thumbnail side in pixels."""


def search(ctx: Ctx, opts: SlicesOptions):
    """The run's slice search (memoised: the card and the explorer read the same one)."""
    feats = ctx.features()
    labels = ctx.images.labels
    known = labels >= 0
    preds = feats.preds
    rows = np.flatnonzero(known) if known.sum() >= 2 * opts.min_size else np.arange(len(labels))
    labelled = bool(known[rows].all()) and len(rows) > 0 and known.any()
    conf = top_probability(feats.logits)[rows]
    correct = (preds[rows] == labels[rows]) if labelled else None
    k = opts.clusters or auto_clusters(len(rows), opts.min_size)
    x = feats.penultimate if len(rows) == len(labels) else feats.penultimate[rows]  # memory-mapped: read in blocks
    res = find_slices(x, conf, correct, k=k, dims=opts.pca_dims,
                      confidence_weight=opts.confidence_weight, min_size=opts.min_size, alpha=opts.alpha,
                      seed=ctx.seed_for("slices/cluster"))
    for s in res.slices:
        s.members = rows[s.members]
    return res


@technique("slices", "Failure slices", options=SlicesOptions, order=52, references=[PLUMB_2023, DEON_2022],
           role="review",
           presets={"minimal": {"max_slices": 3, "thumbs": 6, "thumb": 48}, "full": {"max_slices": 10}})
def slices(ctx: Ctx, opts: SlicesOptions) -> Section:
    """Groups of images that lie together in the model's feature space and that it gets wrong more often than the
    rest (or, without labels, is less sure of). Only groups whose error rate is significantly above the rest's are
    shown, each with its accuracy, the classes it holds and what the model predicts there."""
    sec = Section(id="slices", title="Failure slices")
    n = len(ctx.images)
    if n < 2 * opts.min_size:
        sec.results = to_json(SlicesResults(slices=[], candidates=0, labelled=bool(ctx.images.has_labels),
                                            alpha=opts.alpha, degenerate=None))
        return sec.add(Note(f"{n} images: too few to find slices of at least {opts.min_size} (slices.min_size).",
                            kind="warning"))
    feats = ctx.features()
    deg = check_features(feats.penultimate, f"the penultimate features ({feats.penultimate_source})")
    if deg is not None and deg.blocking:
        sec.results = to_json(SlicesResults(slices=[], candidates=0, labelled=bool(ctx.images.has_labels),
                                            alpha=opts.alpha, degenerate=deg.results()))
        return sec.add(Note(f"No slices: {deg.message}", kind="warning"))
    res = search(ctx, opts)
    return present(ctx, sec, res, opts)


def _slice_row(ctx: Ctx, s: Slice, labelled: bool) -> SlicesSlice:
    labels, preds = ctx.images.labels, ctx.features().preds
    m = s.members
    return SlicesSlice(
        size=s.size, accuracy=None if s.accuracy is None else round(s.accuracy, 4),
        rest_accuracy=None if s.rest_accuracy is None else round(s.rest_accuracy, 4),
        mean_confidence=round(s.mean_confidence, 4), p_value=float(f"{s.p_value:.3g}"),
        top_true_classes=[[ctx.class_name(c), k] for c, k in majority(labels[m])] if labelled else [],
        top_predicted_classes=[[ctx.class_name(c), k] for c, k in majority(preds[m])],
        images=[ctx.images.name(int(i)) for i in m],
    )


def present(ctx: Ctx, sec: Section, res, opts: SlicesOptions) -> Section:
    """The slices as report blocks: a summary table, then per slice its numbers and a thumbnail strip."""
    logits, preds, labels = ctx.features().logits, ctx.features().preds, ctx.images.labels
    shown = res.slices[:opts.max_slices]
    rows = [_slice_row(ctx, s, res.labelled) for s in res.slices]
    what = "error rate" if res.labelled else "top-1 confidence"
    test = "one-sided Fisher exact test" if res.labelled else "one-sided Mann-Whitney U test"
    sec.results = to_json(SlicesResults(slices=rows, candidates=res.candidates, labelled=res.labelled,
                                        alpha=opts.alpha, degenerate=None))
    how = (f"{res.candidates} candidate clusters (Gaussian mixture on {opts.pca_dims} PCA dimensions of the "
           f"penultimate features, {100 * res.explained_variance:.0f}% of their variance) were tested, each against "
           f"the rest on its {what} ({test}, Bonferroni-corrected, alpha {opts.alpha}).")
    if not shown:
        return sec.add(Note(f"No slice: {how} None is significantly worse than the rest, so the errors on this set "
                            "are not concentrated in one region of the feature space (or the set is too small to "
                            "tell).", kind="info"))
    cols = ["slice", "images", "accuracy", "rest", "mean confidence", "p (corrected)", "true classes", "predicted"]
    trows = []
    for j, r in enumerate(rows[:opts.max_slices]):
        trows.append([j + 1, r.size, _f(r.accuracy), _f(r.rest_accuracy), _f(r.mean_confidence),
                      f"{r.p_value:.2g}", _names(r.top_true_classes), _names(r.top_predicted_classes)])
    sec.add(Table(cols, trows, numeric=[0, 1, 2, 3, 4], title=f"{plural(len(res.slices), 'significant slice')}",
                  caption=how))
    for j, s in enumerate(shown):
        probs = softmax(np.asarray(logits[s.members], np.float64))
        order = np.argsort(probs.max(1), kind="stable")[:opts.thumbs]
        items = []
        for i, pr in zip(s.members[order], probs[order]):
            i = int(i)
            p = int(preds[i])
            tone: Tone = "" if labels[i] < 0 else ("ok" if p == labels[i] else "bad")
            sub = f"{ctx.class_name(p)} {pr[p]:.2f}"
            if labels[i] >= 0 and p != labels[i]:
                sub += f" (true: {ctx.class_name(int(labels[i]))})"
            items.append(GridItem(ImageData(ctx.images.thumbnail(i, opts.thumb), image_id=ctx.images.image_id(i),
                                            whole=True), label=ctx.images.name(i), sublabel=sub, tone=tone,
                                  alt=f"slice {j + 1}: {ctx.images.name(i)}"))
        r = rows[j]
        head = (f"accuracy {r.accuracy:.2f} against {r.rest_accuracy:.2f} for the rest" if res.labelled
                else f"mean confidence {s.mean_confidence:.2f} against {s.rest_confidence:.2f} for the rest")
        sec.add(Group(f"Slice {j + 1}: {s.size} images, {head}", [Grid(
            items, columns=min(len(items), 8), cell_width=opts.thumb,
            caption=f"The {len(items)} least confident of its {s.size} images (predicted class and probability). "
                    "Mostly " + _names(r.top_true_classes or r.top_predicted_classes) + ".")]))
    if len(res.slices) > len(shown):
        more = plural(len(res.slices) - len(shown), "more significant slice")
        sec.add(Note(f"{more} in report.json (slices.max_slices)."))
    return sec


def _f(v) -> str:
    return "—" if v is None else f"{v:.3f}"


def _names(pairs) -> str:
    return ", ".join(f"{c} ({k})" for c, k in pairs)
