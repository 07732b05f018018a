"""Data issues: duplicate images inside the set, copies of reference images (leakage), and likely label errors.

Duplicates (:mod:`reportgen.failures.duplicates`): exact = the same decoded pixels (SHA-256 of the pixel array,
candidates from equal 32 x 32 pixel vectors); near = pixel-vector correlation >= ``pixel_threshold`` AND
penultimate-feature cosine >= ``feature_threshold`` (candidates: k nearest neighbours). With
``--reference-images DIR`` the same tests between the set and that folder (its own cached feature pass).
Label errors (:mod:`reportgen.failures.labelnoise`): confident learning, Northcutt, Jiang & Chuang (JAIR 2021):
``t_j = mean_{i: y_i = j} p(j|x_i)``, image i counts in ``C[y_i][argmax_{j: p(j|x_i) >= t_j} p(j|x_i)]``; the
off-diagonal images, lowest self-confidence ``p(y_i|x_i)`` first, are the suspected label errors.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import numpy as np

from ..failures.duplicates import exact_groups, near_pairs
from ..cache import MemoKey
from ..failures.labelnoise import LabelIssues, confident_learning
from ..failures.reference import check_reference_folder, reference_features
from ..papers import NORTHCUTT_2021
from ..results_schema import MISSING, Absent, result_type, to_json
from ..registry import Range, technique
from ..report import Block, Grid, GridItem, Group, ImageData, Note, Section, Tone, plural

if TYPE_CHECKING:
    from ..context import Ctx


@result_type
class DataIssuesNearDuplicate:
    a: str
    """one image (file name)"""
    b: str
    """the other image (file name)"""
    similarity: float
    """the lower of the two similarities (pixel correlation, feature cosine)"""


@result_type
class DataIssuesReferenceDuplicate:
    image: str
    """the image of the set"""
    reference: str
    """its copy in the reference folder (path inside it)"""
    similarity: float
    """1 for exact copies, else as for near_duplicates"""


@result_type
class DataIssuesLabelIssue:
    image: str
    """the image (file name)"""
    given: str
    """its given label"""
    likely: str
    """the label confident learning suggests"""
    self_confidence: float
    """p(given label | image)"""


@result_type
class DataIssuesResults:
    exact_duplicates: list[list[str]]
    """groups of images with identical decoded pixels: lists of file names"""
    near_duplicates: list[DataIssuesNearDuplicate]
    """near-duplicate pairs inside the set, most similar first"""
    reference_images: Absent[int] = MISSING
    """(with --reference-images) images in the reference folder"""
    reference_duplicates: Absent[list[DataIssuesReferenceDuplicate]] = MISSING
    """(with --reference-images) images of the set with an exact or near copy in the reference folder"""
    label_issues: Absent[list[DataIssuesLabelIssue]] = MISSING
    """(with labels) suspected label errors, most likely first"""
    counts: dict[str, int]
    """{exact_duplicates, near_duplicates, reference_duplicates, label_issues}: how many of each"""


RESULTS = DataIssuesResults  # report.json "results" of this section (docs/results.md is generated from it)


@dataclass
class DataIssuesOptions:
    pixel_threshold: Annotated[float, Range(ge=0, le=1)] = 0.98
    """Near-duplicate: at least this correlation of the 32 x 32 pixel vectors."""
    feature_threshold: Annotated[float, Range(ge=0, le=1)] = 0.8
    """Near-duplicate: at least this cosine similarity of the penultimate features."""
    neighbours: Annotated[int, Range(ge=1)] = 5
    """Nearest neighbours per image searched for near-duplicate candidates (in each space)."""
    max_reference_images: Annotated[int, Range(ge=1)] | None = None
    """Use at most this many reference images (a seeded sample; None: all)."""
    max_shown: Annotated[int, Range(ge=1)] = 8
    """Pairs / groups / label issues shown in each list (all are in report.json)."""
    thumb: Annotated[int, Range(ge=16)] = 64
    """Thumbnail side in pixels."""


def _array_hash(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(repr(a.shape).encode() + a.tobytes()).hexdigest()


def pixel_hasher(images):
    """i -> SHA-256 of image i's fully decoded RGB pixels (the original size, not the model input)."""
    return lambda i: _array_hash(np.asarray(images.pil(int(i))))


#: the run's confident-learning result (the card and the explorer read it too)
LABEL_ISSUES: MemoKey[LabelIssues] = MemoKey("data_issues.label_issues")


def label_issues(ctx: Ctx):
    """The run's confident-learning result (memoised: the card and the explorer read the same)."""
    return ctx.memo(LABEL_ISSUES, lambda: confident_learning(ctx.features().logits, ctx.images.labels))


@technique("data_issues", "Data issues: duplicates, leakage, label errors", options=DataIssuesOptions, order=53,
           role="review",
           references=[NORTHCUTT_2021], presets={"minimal": {"max_shown": 4, "thumb": 48}})
def data_issues(ctx: Ctx, opts: DataIssuesOptions) -> Section:
    """Problems in the images rather than the model: the same image twice (exactly, or resized / re-compressed), an
    image that also sits in the reference (training) folder, and images whose given label the model's own
    probabilities contradict confidently (confident learning)."""
    sec = Section(id="data_issues", title="Data issues: duplicates, leakage, label errors")
    ref_dir = ctx.general.reference_images
    check_reference_folder(ref_dir)
    feats = ctx.features()
    names = ctx.images.name
    assert feats.pixels is not None  # the run's pass keeps the pixel vectors
    groups = exact_groups(feats.pixels, pixel_hasher(ctx.images))
    exact = [[names(i) for _, i in g] for g in groups]
    in_exact = {frozenset((a, b)) for g in groups for (_, a) in g for (_, b) in g if a != b}
    pairs = [p for p in near_pairs(feats.pixels, feats.penultimate, pixel_threshold=opts.pixel_threshold,
                                   feature_threshold=opts.feature_threshold, k=opts.neighbours,
                                   seed=ctx.seed_for("data_issues/pca"))
             if frozenset((p.a, p.b)) not in in_exact]
    near = [DataIssuesNearDuplicate(a=names(p.a), b=names(p.b), similarity=round(p.similarity, 4)) for p in pairs]
    res: dict = {"exact_duplicates": exact, "near_duplicates": near}  # DataIssuesResults' fields, as they are found
    _duplicates_blocks(ctx, sec, groups, pairs, opts)
    if ref_dir:
        _reference(ctx, sec, feats, ref_dir, opts, res)
    if ctx.images.has_labels:
        _labels(ctx, sec, opts, res)
    else:
        sec.add(Note("The images have no labels: no label check.", kind="info"))
    res["counts"] = {k: len(res[k]) for k in ("exact_duplicates", "near_duplicates", "reference_duplicates",
                                              "label_issues") if k in res}
    sec.results = to_json(DataIssuesResults(**res))
    return sec


def _thumb(ctx: Ctx, i: int, size: int, label: str, sub: str = "", tone: Tone = "") -> GridItem:
    return GridItem(ImageData(ctx.images.thumbnail(i, size), image_id=ctx.images.image_id(i), whole=True),
                    label=label, sublabel=sub, tone=tone, alt=ctx.images.name(i))


def _duplicates_blocks(ctx: Ctx, sec: Section, groups, pairs, opts: DataIssuesOptions) -> None:
    t = opts.thumb
    how = (f"Near: pixel correlation >= {opts.pixel_threshold} and feature cosine >= {opts.feature_threshold} "
           f"(candidates: {opts.neighbours} nearest neighbours per image in each space).")
    if not groups and not pairs:
        sec.add(Note(f"No exact or near-duplicate images in the set. {how}", kind="info"))
        return
    blocks: list[Block] = []
    for g in groups[:opts.max_shown]:
        blocks.append(Grid([_thumb(ctx, i, t, ctx.images.name(i), "identical pixels") for _, i in g],
                           columns=min(len(g), 8), cell_width=t))
    cells = [c for p in pairs[:opts.max_shown] for c in (
        _thumb(ctx, p.a, t, ctx.images.name(p.a), "near pair"),
        _thumb(ctx, p.b, t, ctx.images.name(p.b), f"pixels {p.pixel_similarity:.3f}, features "
                                                  f"{p.feature_similarity:.3f}"))]
    if cells:
        blocks.append(Grid(cells, columns=min(len(cells), 6), cell_width=t, caption="Near pairs side by side, "
                           "most similar first."))
    sec.add(Group(f"Duplicates: {plural(len(groups), 'exact group')}, {plural(len(pairs), 'near pair')}", blocks))
    weak = (f" At {ctx.pre.size} px the pixel vectors hold little detail: distinct but similar items (plain "
            "trousers, say) can pass both thresholds, so look at the near pairs before removing any."
            if ctx.pre.size < 64 and pairs else "")
    sec.add(Note("Exact: the same decoded pixels. " + how + " A duplicate counts twice in every accuracy of this "
                 "report; shown are at most " + f"{opts.max_shown} of each." + weak,
                 kind="warning" if weak else "info"))


def _reference(ctx: Ctx, sec: Section, feats, ref_dir, opts: DataIssuesOptions, res: dict) -> None:
    rctx, rf = reference_features(ctx, ref_dir, opts.max_reference_images)
    rnames = rctx.images.name
    groups = exact_groups(feats.pixels, pixel_hasher(ctx.images), rf.pixels, pixel_hasher(rctx.images))
    found: dict[int, tuple[int, float]] = {}
    for g in groups:
        refs = [i for s, i in g if s == 1]
        for s, i in g:
            if s == 0:
                found[i] = (refs[0], 1.0)
    for p in near_pairs(feats.pixels, feats.penultimate, pixel_threshold=opts.pixel_threshold,
                        feature_threshold=opts.feature_threshold, k=opts.neighbours,
                        seed=ctx.seed_for("data_issues/pca"), ref_pixels=rf.pixels, ref_features=rf.penultimate):
        if p.a not in found:
            found[p.a] = (p.b, p.similarity)
    order = sorted(found, key=lambda i: (-found[i][1], i))
    res["reference_images"] = len(rctx.images)
    res["reference_duplicates"] = [DataIssuesReferenceDuplicate(image=ctx.images.name(i), reference=rnames(found[i][0]),
                                                                similarity=round(found[i][1], 4)) for i in order]
    if not order:
        sec.add(Note(f"None of the {len(ctx.images)} images has an exact or near copy among the "
                     f"{len(rctx.images)} reference images.", kind="info"))
        return
    items = []
    for i in order[:opts.max_shown]:
        j, sim = found[i]
        items.append(_thumb(ctx, i, opts.thumb, ctx.images.name(i), "in the set"))
        items.append(GridItem(ImageData(rctx.images.thumbnail(j, opts.thumb)), label=rnames(j),
                              sublabel="reference, " + ("identical" if sim >= 1 else f"similarity {sim:.3f}"),
                              alt=f"reference {rnames(j)}"))
    sec.add(Group(f"Leakage: {len(order)} of {len(ctx.images)} images have a copy among the {len(rctx.images)} "
                  "reference images", [Grid(items, columns=4, cell_width=opts.thumb, caption=(
                      "Each image of the set beside its copy in the reference folder. If the reference is the "
                      "training set, the accuracy on these images measures memory, not generalisation."))]))


def _labels(ctx: Ctx, sec: Section, opts: DataIssuesOptions, res: dict) -> None:
    li = label_issues(ctx)
    names = ctx.images.name
    res["label_issues"] = [DataIssuesLabelIssue(image=names(int(i)), given=ctx.class_name(int(g)),
                                                likely=ctx.class_name(int(k)), self_confidence=round(float(c), 4))
                           for i, g, k, c in zip(li.images, li.given, li.likely, li.self_confidence)]
    labelled = int((ctx.images.labels >= 0).sum())
    caveat = ("Confident learning wants out-of-sample probabilities (from a model that did not train on these "
              "images); these are the model's own, so if it trained on them it has partly learnt their labels, "
              "wrong ones included, and this list is an under-count.")
    missing = int(np.isnan(li.thresholds).sum())
    if missing:
        caveat += (f" {missing} of {len(li.thresholds)} classes have no labelled image here, so no threshold: they "
                   "are never suggested.")
    if not len(li.images):
        sec.add(Note(f"No suspected label error among {labelled} labelled images. " + caveat, kind="info"))
        return
    def short(k) -> str:  # "jaguar, panther, Panthera onca" -> "jaguar" (the full name is in report.json)
        return ctx.class_name(int(k)).split(",")[0]
    items = [_thumb(ctx, int(i), opts.thumb, names(int(i)), f"given {short(g)}, likely {short(k)} "
                    f"(p(given) {c:.2f})", tone="bad")
             for i, g, k, c in zip(li.images[:opts.max_shown], li.given, li.likely, li.self_confidence)]
    sec.add(Group(f"Suspected label errors: {len(li.images)} of {labelled} labelled images", [Grid(
        items, columns=min(len(items), 6), cell_width=opts.thumb,
        caption="Lowest probability of the given label first (confident learning: the likely label's probability "
                "reaches that class's mean self-confidence t_j). A suspect is either mislabelled or a confident "
                "mistake of the model: look at the image.")]))
    sec.add(Note(caveat))


# Calibration of the near-duplicate thresholds (12 resized x0.8 / x2 and JPEG q60-75 copies added to each set):
# MobileNetV2 on 160 ImageNet images: copies have pixel correlation >= 0.997, feature cosine 0.84-0.99; distinct
# images at most 0.66 / 0.68, so (0.98, 0.8) finds 12 of 12 with no false pair. The 28-px Fashion-MNIST demo:
# copies 0.977-0.996 / 0.92-0.98, distinct items up to 0.991 / 0.990 (many trousers look alike): 11 of 12 found,
# 3 false pairs among 44,850.
