"""Mistakes: the most frequent confused pairs, and why the model said P rather than T.

For each (true T, predicted P) pair that the labelled set confuses most often (without labels: the lowest-margin
predictions, T = the runner-up): the images, a map for P and one for T (Grad-CAM, Selvaraju et al. 2017, or
gradient x input), and the contrastive map of the logit difference ``S_P - S_T`` (Prabhushankar et al. 2020):
Grad-CAM ``relu(sum_c w_c A_c)`` with ``w_c = mean_ij d(S_P - S_T)/dA_cij`` and gradient x input
``sum_c x_c d(S_P - S_T)/dx_c`` (positive part). Red in a contrastive map = what pushes the decision to P and away
from T. Beside each image: its nearest correctly classified images of P and of T in penultimate-feature space
(cosine distance), to show which class it resembles in the model's own features.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from dataclasses import dataclass

import numpy as np

from ..attribution import contrast as C
from ..attribution.cam import upsample
from ..attribution.visualization import attr_item
from ..concepts.confusions import confused_pairs, lowest_margin_pairs, nearest_of_class
from ..papers import PRABHUSHANKAR_2020, SELVARAJU_2017
from ..registry import Range, technique
from ..report import Block, Grid, GridItem, Group, ImageData, Note, Section, Table, plural
from ..results_schema import MISSING, Absent, result_type, to_json
from ..device import graph_batch_size
from ..features.split import split_rows
from ._explain import cell_width, heat_item
from ._setlevel import SetLevelMethod, class_maps_of, map_layer, map_unsupported, method_text, set_level_method

if TYPE_CHECKING:
    from ..context import Ctx


@result_type
class MistakesImage:
    image: str
    """an image of the pair (most confident mistakes first; lowest margin first without labels)"""
    margin: float
    """p(predicted) - p(true) (lowest_margin: - p(runner-up))"""
    p_predicted: float
    """softmax probability of the predicted class"""
    p_true: Absent[float] = MISSING
    """(confusions) softmax probability of the true class"""
    p_runner_up: Absent[float] = MISSING
    """(lowest_margin) softmax probability of the runner-up class"""
    nearest_predicted_distance: float | None
    """cosine distance to the nearest correctly classified image of P (null: none)"""
    nearest_true_distance: Absent[float | None] = MISSING
    """(confusions) cosine distance to the nearest correctly classified image of T (null: none)"""
    nearest_runner_up_distance: Absent[float | None] = MISSING
    """(lowest_margin) cosine distance to the nearest image predicted as the runner-up class (null: none)"""


@result_type
class MistakesPairRow:
    true: Absent[str] = MISSING
    """(confusions) the true class"""
    runner_up: Absent[str] = MISSING
    """(lowest_margin) the runner-up class"""
    predicted: str
    """the predicted class"""
    count: int
    """images of the whole set with this (true, predicted) pair (lowest_margin: this runner-up and prediction)"""
    images: list[MistakesImage]


@result_type
class MistakesResults:
    mode: str
    """confusions (labelled mistakes) or lowest_margin (no labelled mistakes: the least certain predictions)"""
    method: str
    """what draws the per-class maps (gradcam or gradient_x_input)"""
    layer: str
    """the Grad-CAM layer"""
    labelled_images: int
    """images with a true label"""
    mistakes: int
    """labelled images whose prediction differs from the label"""
    pairs: list[MistakesPairRow]
    """the pairs shown"""


RESULTS = MistakesResults  # report.json "results" of this section (docs/results.md is generated from it)


@dataclass
class MistakesOptions:
    max_pairs: Annotated[int, Range(ge=1)] = 4
    """Confused pairs shown (the most frequent)."""
    images_per_pair: Annotated[int, Range(ge=1)] = 3
    """Images shown per pair."""
    neighbours: Annotated[int, Range(ge=0)] = 3
    """Nearest correctly classified images shown per class and image."""
    method: SetLevelMethod = "gradcam"
    """Which attribution draws the maps for P and for T: "gradcam" (the default: the faithfulness section's ranking
    is not read, sections being independent) or "gradient_x_input". The contrastive map is always drawn both ways."""
    layer: str | None = None
    """Grad-CAM layer (None: the last spatial block the class score's gradient reaches)."""
    thumb: Annotated[int, Range(ge=8)] = 64
    """Neighbour thumbnail side in pixels."""


def _maps(ctx: Ctx, layer, idx: list[int], pred: np.ndarray, other: np.ndarray, method: str):
    """Per image: map for P, map for T, contrastive Grad-CAM, contrastive gradient x input (numpy, H x W)."""
    pm, fn = ctx.pixel_model, class_maps_of(method).fn
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("p", "t", "cg", "cx")}
    step = graph_batch_size(ctx, cap=min(ctx.batch_size, 16))
    for s in range(0, len(idx), step):
        x = ctx.to_device(ctx.images.batch(idx[s:s + step]))
        size = (int(x.shape[-2]), int(x.shape[-1]))
        p, t = pred[s:s + step], other[s:s + step]
        mp, mt = fn(pm, layer, x, p), fn(pm, layer, x, t)  # the method's maps (Grad-CAM at the layer's cells)
        mp, mt = (m if tuple(m.shape[-2:]) == size else upsample(m, size) for m in (mp, mt))
        out["p"].append(mp.cpu().numpy())
        out["t"].append(mt.cpu().numpy())
        out["cg"].append(C.contrastive_gradcam(pm, layer, x, p, t, size=size).cpu().numpy())
        out["cx"].append(C.contrastive_gradient_x_input(pm, x, p, t).clamp_min(0).cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def split_maps(ctx: Ctx, name: str, idx: list[int], pred: np.ndarray, other: np.ndarray, method: str):
    """:func:`_maps`, each rank's share of the images under torchrun (:func:`reportgen.features.split.split_rows`)."""
    keys = [(name, method, int(i), int(p), int(o)) for i, p, o in zip(idx, pred, other)]

    def rows(ks: list) -> list:
        got = _maps(ctx, ctx.layer(name), [k[2] for k in ks], np.asarray([k[3] for k in ks], dtype=np.int64),
                    np.asarray([k[4] for k in ks], dtype=np.int64), method)
        return [{key: v[j] for key, v in got.items()} for j in range(len(ks))]

    got = split_rows(ctx, keys, rows)
    return {key: np.stack([g[key] for g in got]) if got else np.zeros((0, 0, 0), np.float32)
            for key in ("p", "t", "cg", "cx")}


@dataclass(frozen=True)
class MistakeImage:
    """One image of a pair: its probabilities, its four maps and its nearest neighbours of P and of T."""

    index: int
    p_predicted: float
    p_other: float
    maps: dict[str, np.ndarray]  # "p", "t", "cg", "cx": H x W
    near_predicted: list[tuple[int, float]]  # (image index, cosine distance), nearest first
    near_other: list[tuple[int, float]]


@dataclass(frozen=True)
class MistakePair:
    """One (T, P) pair: the classes, how often it occurs and its images."""

    predicted: int
    other: int
    count: int
    images: tuple[MistakeImage, ...]
    missing: tuple[int, ...]  # classes of the pair with no correctly classified image to compare with


@dataclass(frozen=True)
class MistakesResult:
    """What the section shows; :meth:`results` is its report.json entry."""

    mode: str  # "confusions" or "lowest_margin"
    method: str
    layer: str
    labelled: int
    has_labels: bool
    wrong: int
    pairs: tuple[MistakePair, ...]

    @property
    def tkey(self) -> str:  # without a labelled mistake no number is a "true" one
        return "true" if self.mode == "confusions" else "runner_up"

    @property
    def tname(self) -> str:
        return "T" if self.mode == "confusions" else "runner-up"

    def image_results(self, ctx: Ctx, p: MistakePair) -> list[MistakesImage]:
        rows = []
        for m in p.images:
            near = {"P": m.near_predicted[0][1] if m.near_predicted else None,
                    "T": m.near_other[0][1] if m.near_other else None}
            t, near_t = round(m.p_other, 4), _r(near["T"])  # the true class, or without labels the runner-up
            conf = self.tkey == "true"
            rows.append(MistakesImage(image=ctx.images.name(m.index), margin=round(m.p_predicted - m.p_other, 4),
                                      p_predicted=round(m.p_predicted, 4), p_true=t if conf else MISSING,
                                      p_runner_up=MISSING if conf else t, nearest_predicted_distance=_r(near["P"]),
                                      nearest_true_distance=near_t if conf else MISSING,
                                      nearest_runner_up_distance=MISSING if conf else near_t))
        return rows

    def results(self, ctx: Ctx) -> MistakesResults:
        conf = self.tkey == "true"
        pairs = [MistakesPairRow(true=ctx.class_name(p.other) if conf else MISSING,
                                 runner_up=MISSING if conf else ctx.class_name(p.other),
                                 predicted=ctx.class_name(p.predicted), count=p.count,
                                 images=self.image_results(ctx, p)) for p in self.pairs]
        return MistakesResults(mode=self.mode, method=self.method, layer=self.layer, labelled_images=self.labelled,
                               mistakes=self.wrong, pairs=pairs)


def compute_mistakes(ctx: Ctx, opts: MistakesOptions) -> MistakesResult:
    """The confused (or least certain) pairs, their maps and every image's nearest neighbours of P and of T."""
    set_level_method("mistakes", opts.method)
    feats = ctx.features()
    probs, preds, labels = feats.probs, feats.preds, ctx.images.labels
    known = labels >= 0
    pairs, wrong = confused_pairs(probs, labels, opts.max_pairs, opts.images_per_pair)
    mode = "confusions"
    if not pairs:
        mode = "lowest_margin"
        pairs = lowest_margin_pairs(probs, opts.max_pairs * opts.images_per_pair)
    name = map_layer(ctx, opts.layer)
    idx = [i for p in pairs for i in p.images]
    pv = np.array([p.predicted for p in pairs for _ in p.images], dtype=np.int64)
    ov = np.array([p.other for p in pairs for _ in p.images], dtype=np.int64)
    maps = split_maps(ctx, name, idx, pv, ov, opts.method)
    correct = known & (preds == labels) if known.any() else np.ones(len(preds), dtype=bool)
    k, row, out = max(0, opts.neighbours), 0, []
    for p in pairs:
        pool_p = np.flatnonzero(correct & (preds == p.predicted))
        pool_t = np.flatnonzero(correct & (preds == p.other))
        np_idx, np_d = nearest_of_class(feats.penultimate, p.images, pool_p, k + 1)
        nt_idx, nt_d = nearest_of_class(feats.penultimate, p.images, pool_t, k + 1)
        images = []
        for j, i in enumerate(p.images):
            near = [[(int(a), float(b)) for a, b in zip(nn, dd) if np.isfinite(b)][:k]
                    for nn, dd in ((np_idx[j], np_d[j]), (nt_idx[j], nt_d[j]))]
            images.append(MistakeImage(i, float(probs[i, p.predicted]), float(probs[i, p.other]),
                                       {key: v[row + j] for key, v in maps.items()}, near[0], near[1]))
        row += len(p.images)
        missing = tuple(c for c, pool in ((p.predicted, pool_p), (p.other, pool_t)) if pool.size == 0)
        out.append(MistakePair(p.predicted, p.other, p.count, tuple(images), missing))
    return MistakesResult(mode, opts.method, name, int(known.sum()), bool(known.any()), wrong, tuple(out))


def _pair_blocks(ctx: Ctx, res: MistakesResult, p: MistakePair, thumb: int) -> Group:
    """One pair: the image rows with their maps, the neighbour rows and the verdict on the neighbours."""
    tname, mname = res.tname, set_level_method("mistakes", res.method).name
    items, nrows = [], []
    for m in p.images:
        i, img = m.index, ctx.images.display(m.index)
        items.append(GridItem(ImageData(img), label=ctx.images.name(i),
                              sublabel=f"p({ctx.class_name(p.predicted)})={m.p_predicted:.2f}, "
                                       f"p({ctx.class_name(p.other)})={m.p_other:.2f}",
                              alt=f"misclassified {ctx.images.name(i)}",
                              tone="bad" if res.mode == "confusions" else ""))
        items.append(heat_item(ctx, img, m.maps["p"], f"for P: {ctx.class_name(p.predicted)}", mname))
        items.append(heat_item(ctx, img, m.maps["t"], f"for {tname}: {ctx.class_name(p.other)}", mname))
        items.append(heat_item(ctx, img, m.maps["cg"], "P rather than " + tname, "Grad-CAM of S_P - S_T"))
        items.append(attr_item(m.maps["cx"], img, "overlay", "P rather than " + tname,
                               "grad x input of S_P - S_T", sign="positive", outlier_perc=0.5))
        cells = [GridItem(ImageData(ctx.images.thumbnail(i, thumb)), label="this image", alt=ctx.images.name(i))]
        for tag, cls, keep in (("P", p.predicted, m.near_predicted), (tname, p.other, m.near_other)):
            cells += [GridItem(ImageData(ctx.images.thumbnail(a, thumb)), label=f"{tag}: {ctx.class_name(cls)}",
                               sublabel=f"d = {b:.3f}", alt=f"neighbour {ctx.images.name(a)}") for a, b in keep]
        nrows.append(Grid(cells, columns=len(cells), cell_width=thumb))
    both = [m for m in p.images if m.near_predicted and m.near_other]
    closer = sum(1 for m in both if m.near_predicted[0][1] < m.near_other[0][1])
    if both:
        verdict = (f"for {closer} of {plural(len(both), 'image')} the nearest {ctx.class_name(p.predicted)} is "
                   f"closer than the nearest {ctx.class_name(p.other)}.")
    else:
        missing = [ctx.class_name(c) for c in p.missing]
        verdict = (f"no correctly classified image of {' or '.join(missing) or 'either class'} "
                   "in the set to compare with.")
    title = (f"{'true' if res.mode == 'confusions' else 'runner-up'} {ctx.class_name(p.other)} → predicted "
             f"{ctx.class_name(p.predicted)} ({plural(p.count, 'image')} in the set)")
    return Group(title, [Grid(items, columns=5, cell_width=cell_width(ctx)), *nrows, Note(
        f"Nearest correctly classified neighbours (cosine distance of penultimate features"
        f"{'' if res.has_labels else '; without labels: images predicted as that class, not checked'}): "
        + verdict)])


def present_mistakes(ctx: Ctx, res: MistakesResult, thumb: int) -> list[Block]:
    """The report blocks of a :class:`MistakesResult`."""
    blocks: list[Block] = []
    if res.mode == "lowest_margin":
        blocks.append(Note(("No labelled image is misclassified" if res.has_labels else "The images have no labels")
                           + f": shown instead are the {sum(len(p.images) for p in res.pairs)} predictions with the "
                           "smallest margin between the two most probable classes; 'T' is then the runner-up class, "
                           "not a label.", kind="info"))
    else:
        rows = [[ctx.class_name(p.other), ctx.class_name(p.predicted), p.count] for p in res.pairs]
        blocks.append(Table(["true class", "predicted", "images"], rows, numeric=[2],
                            title=f"Most frequent confusions ({res.wrong} of {res.labelled} labelled images are wrong)",
                            caption=("Every pair shown occurs once in this set, so none is a systematic confusion "
                                     "yet; ties are ordered by the most confident mistake."
                                     if all(p.count == 1 for p in res.pairs)
                                     else "Ties are ordered by the most confident mistake.")))
    blocks += [_pair_blocks(ctx, res, p, thumb) for p in res.pairs]
    mname, name = set_level_method("mistakes", res.method).name, res.layer
    blocks.append(Note(f"Maps for P and for {res.tname}: " + method_text(res.method, f"layer {name}")
                       + f". Contrastive maps: Grad-CAM of S_P - S_T at {name}, and gradient x input of S_P - S_T "
                       "(positive part), each scaled to its own 99.5th percentile. The per-class maps use "
                       f"{mname} because this section does not read the faithfulness ranking (sections are "
                       "independent); set mistakes.method to change it."))
    return blocks


@technique(
    "mistakes", "Mistakes: confused pairs and why P rather than T", role="review", options=MistakesOptions, order=47,
    needs_autograd=True, needs_layers=True, unsupported_if=map_unsupported("mistakes"),
    references=[SELVARAJU_2017, PRABHUSHANKAR_2020],
    presets={"minimal": {"max_pairs": 2, "images_per_pair": 2, "neighbours": 2, "thumb": 48},
             "full": {"max_pairs": 8, "images_per_pair": 4, "neighbours": 4}},
)
def mistakes(ctx: Ctx, opts: MistakesOptions) -> Section:
    """Each row is one misclassified image (true class T, predicted P): the image, the evidence for P, the evidence
    for T, and two contrastive maps of the logit difference S_P - S_T (Grad-CAM and gradient x input, positive
    part: what makes the model prefer P over T). Under each pair, the image's nearest correctly classified images
    of P and of T in the model's feature space: if the P neighbours are closer, the model sees the image as a P."""
    res = compute_mistakes(ctx, opts)
    sec = Section(id="mistakes", title="Mistakes: confused pairs and why P rather than T")
    sec.add(*present_mistakes(ctx, res, int(opts.thumb)))
    sec.params.update(layer=res.layer, images=[ctx.images.name(m.index) for p in res.pairs for m in p.images])
    sec.results = to_json(res.results(ctx))
    return sec


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 4)

