"""Nearest neighbours in feature space vs pixel space (Krizhevsky et al. 2012, figure 4; CS231n).

For a few query images, the ``k`` images of the set closest to the query's penultimate feature
vector (cosine distance ``1 - <f_q, f_i> / (|f_q| |f_i|)`` by default) beside the ``k`` closest
in raw pixel space (L2 distance between the model-input images area-downsampled to 32x32,
``sqrt(sum (p_q - p_i)^2)`` over 3*32*32 values in [0, 1]). Feature neighbours that share the
query's class although their pixels differ show that the features encode semantics; pixel
neighbours mostly share colour and layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np

from ..features.degenerate import check_features
from ..papers import KRIZHEVSKY_2012
from ..registry import Range, technique
from ..report import Grid, GridItem, Group, ImageData, Note, Section, Table
from ..results_schema import MISSING, Absent, result_type, to_json
from ..sampling import spread_indices

if TYPE_CHECKING:
    from ..context import Ctx

# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)


@result_type
class NeighborsQuery:
    image: str
    """query image"""
    class_: str
    """its class (label where known, else prediction)"""
    class_is_label: bool
    """true when the class is a label, false when it is a prediction"""
    feature_neighbours_same_class: int
    """of its k feature-space neighbours, how many share that class"""
    pixel_neighbours_same_class: int
    """the same in pixel space"""
    k: int
    """neighbours per space"""


@result_type
class NeighborsResults:
    feature_agreement: float | None
    """leave-one-out: fraction of labelled images whose nearest labelled neighbour in feature space has the same TRUE
    label (null without labels: agreement with predictions would be circular)"""
    pixel_agreement: float | None
    """the same in pixel space (null without labels)"""
    chance: float | None
    """probability that two random labelled images share a label (null without labels)"""
    labelled_images: int
    """images with a true label"""
    metric: str
    """feature-space distance (cosine or l2)"""
    queries: Absent[list[NeighborsQuery]] = MISSING
    """one entry per query image (absent when the features are unusable)"""
    degenerate: dict[str, Any] | None
    """null, or why the feature-space neighbours mean nothing (kind non_finite / constant / rank_one, message)"""


RESULTS = NeighborsResults  # report.json "results" of this section (docs/results.md is generated from it)


def pairwise_distances(queries: np.ndarray, data: np.ndarray, metric: str, chunk: int = 4096) -> np.ndarray:
    """q x N distances (``metric``: "cosine" or "l2"), computed in float32 chunks of the data."""
    q = np.asarray(queries, dtype=np.float32)
    out = np.empty((q.shape[0], data.shape[0]), dtype=np.float32)
    if metric == "cosine":
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    elif metric == "l2":
        q2 = (q.astype(np.float64) ** 2).sum(1)[:, None]
    else:
        raise ValueError(f"unknown metric {metric!r} (cosine or l2)")
    for s in range(0, data.shape[0], chunk):
        d = np.asarray(data[s:s + chunk], dtype=np.float32)
        if metric == "cosine":
            dn = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
            out[:, s:s + chunk] = 1.0 - qn @ dn.T
        else:
            d2 = (d.astype(np.float64) ** 2).sum(1)[None, :]
            sq = q2 + d2 - 2.0 * (q.astype(np.float64) @ d.astype(np.float64).T)
            out[:, s:s + chunk] = np.sqrt(np.maximum(sq, 0.0))
    return out


def nearest(queries_idx: list[int], data: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(indices q x k, distances q x k) of the k nearest rows of ``data`` to each query row, query excluded.

    Ties are broken by the lower index (stable sort), so results are deterministic.
    """
    d = pairwise_distances(data[queries_idx], data, metric)
    d[np.arange(len(queries_idx)), queries_idx] = np.inf
    k = min(k, data.shape[0] - 1)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(d, order, axis=1)


def neighbour_agreement(data: np.ndarray, classes: np.ndarray, metric: str, max_queries: int, rng) -> float | None:
    """Fraction of images whose nearest neighbour (itself excluded) has the same class."""
    valid = np.flatnonzero(classes >= 0)
    if valid.size < 2:
        return None
    q = valid if valid.size <= max_queries else np.sort(rng.choice(valid, size=max_queries, replace=False))
    hits = 0
    for s in range(0, q.size, 256):
        part = q[s:s + 256].tolist()
        nn, _ = nearest(part, data, 1, metric)
        hits += int((classes[nn[:, 0]] == classes[part]).sum())
    return hits / q.size


@dataclass
class NeighborsOptions:
    num_queries: Annotated[int, Range(ge=1)] = 6
    """Query images (chosen deterministically, one per class in turn)."""
    k: Annotated[int, Range(ge=1)] = 6
    """Neighbours shown per query and space."""
    metric: Literal["cosine", "l2"] = "cosine"
    """Feature-space distance: "cosine" or "l2" (pixel space always uses L2)."""
    thumb: Annotated[int, Range(ge=1)] = 96
    """Thumbnail side in pixels."""
    agreement_queries: Annotated[int, Range(ge=1)] = 2000
    """Images used for the nearest-neighbour class agreement table (a seeded sample beyond this)."""


@dataclass(frozen=True, eq=False)
class NeighborsResult:
    """What the neighbours section computed: each query's nearest images in both spaces and the class agreement."""

    feats: Any  # the run's features (penultimate, pixels, preds)
    labelled: int  # images with a true label
    degenerate: Any  # None, or check_features' finding (blocking: no neighbours)
    classes: np.ndarray | None = None  # per image: the label where known, else the prediction
    queries: tuple[int, ...] = ()
    k: int = 0
    feature_nn: tuple[np.ndarray, np.ndarray] | None = None  # (indices, distances), queries x k
    pixel_nn: tuple[np.ndarray, np.ndarray] | None = None
    counts: np.ndarray | None = None  # images per true label
    feature_agreement: float | None = None
    pixel_agreement: float | None = None

    @property
    def chance(self) -> float | None:
        c = self.counts
        return None if c is None or not c.sum() else float(((c / c.sum()) ** 2).sum())

    def results(self, ctx: Ctx, opts: NeighborsOptions) -> NeighborsResults:
        """The section's report.json ``results``."""
        fa, pa, deg = self.feature_agreement, self.pixel_agreement, self.degenerate
        if self.feature_nn is None or self.pixel_nn is None or self.classes is None:
            return NeighborsResults(feature_agreement=None, pixel_agreement=None, chance=None,
                                    labelled_images=self.labelled, metric=opts.metric, degenerate=deg.results())
        classes, labels, fidx, pidx = self.classes, ctx.images.labels, self.feature_nn[0], self.pixel_nn[0]
        return NeighborsResults(
            feature_agreement=None if fa is None else round(fa, 4),
            pixel_agreement=None if pa is None else round(pa, 4),
            chance=None if self.chance is None else round(self.chance, 4),
            labelled_images=self.labelled, metric=opts.metric,
            queries=[NeighborsQuery(
                image=ctx.images.name(q), class_=ctx.class_name(int(classes[q])), class_is_label=bool(labels[q] >= 0),
                feature_neighbours_same_class=int(sum(classes[int(i)] == classes[q] for i in fidx[r])),
                pixel_neighbours_same_class=int(sum(classes[int(i)] == classes[q] for i in pidx[r])),
                k=self.k) for r, q in enumerate(self.queries)],
            degenerate=None if deg is None else deg.results(),
        )


def compute_neighbors(ctx: Ctx, opts: NeighborsOptions) -> NeighborsResult:
    """Nearest images of each query in feature and pixel space; leave-one-out agreement with the true labels."""
    n = len(ctx.images)
    feats = ctx.features()
    labels = ctx.images.labels
    deg = check_features(feats.penultimate, f"the model's penultimate layer ({feats.penultimate_source})")
    if deg is not None and deg.blocking:
        return NeighborsResult(feats, int((labels >= 0).sum()), deg)
    classes = np.where(labels >= 0, labels, feats.preds) if ctx.images.has_labels else feats.preds
    queries = spread_indices(ctx, opts.num_queries, "neighbors/queries", classes=classes)
    k = max(1, min(opts.k, n - 1))
    fnn = nearest(queries, feats.penultimate, k, opts.metric)
    pnn = nearest(queries, feats.pixels, k, "l2")
    # agreement is measured against TRUE labels only: predictions are made from the same features, so
    # "feature neighbours share the predicted class" would be circular evidence
    known = np.flatnonzero(labels >= 0)
    fa = pa = None
    lab = labels[known]
    counts = np.bincount(lab) if known.size else np.zeros(0, dtype=int)
    if known.size >= 2 and (counts >= 2).any():
        fa = neighbour_agreement(feats.penultimate[known], lab, opts.metric, opts.agreement_queries,
                                 ctx.rng("neighbors/agreement"))
        pa = neighbour_agreement(feats.pixels[known], lab, "l2", opts.agreement_queries, ctx.rng("neighbors/agreement"))
    return NeighborsResult(feats, int(known.size), deg, classes, tuple(queries), k, fnn, pnn, counts, fa, pa)


def _query_group(ctx: Ctx, opts: NeighborsOptions, r: NeighborsResult, row: int, q: int) -> Group:
    """One query: its feature-space neighbours above its pixel-space neighbours."""
    assert r.classes is not None and r.feature_nn is not None and r.pixel_nn is not None
    classes, labels, feats, thumb = r.classes, ctx.images.labels, r.feats, int(opts.thumb)

    def cls_name(i: int) -> str:
        return ctx.class_name(int(classes[i])) + (" (label)" if labels[i] >= 0 else " (predicted)")

    def item(i: int, d: float | None) -> GridItem:
        same = classes[i] == classes[q]
        # the whole name: the stylesheet clamps it to two lines ending in an ellipsis, the cell's title shows it all
        pic = ImageData(ctx.images.thumbnail(i, thumb), image_id=ctx.images.image_id(i), whole=True)
        return GridItem(pic, label=cls_name(i),
                        sublabel=("query" if d is None else f"d = {d:.3f}"),
                        alt=f"{ctx.images.name(i)} ({cls_name(i)})",
                        tone=("" if d is None else ("ok" if same else "")))

    dist_name = "cosine distance" if opts.metric == "cosine" else "L2 distance"
    (fidx, fdist), (pidx, pdist) = r.feature_nn, r.pixel_nn
    frow = [item(q, None)] + [item(int(i), float(d)) for i, d in zip(fidx[row], fdist[row])]
    prow = [item(q, None)] + [item(int(i), float(d)) for i, d in zip(pidx[row], pdist[row])]
    return Group(f"{ctx.images.name(q)} — {cls_name(q)}", [
        Grid(frow, columns=r.k + 1, cell_width=thumb,
             title=f"Feature space ({dist_name} of {feats.penultimate.shape[1]}-D penultimate features)"),
        Grid(prow, columns=r.k + 1, cell_width=thumb,
             title=f"Pixel space (L2 distance of {feats.pixel_size}x{feats.pixel_size} RGB thumbnails)"),
    ])


def show_neighbors(ctx: Ctx, opts: NeighborsOptions, r: NeighborsResult) -> list[Any]:
    """The section's blocks: a group per query, the agreement table (or why it is missing) and the method note."""
    deg, feats = r.degenerate, r.feats
    if r.classes is None:
        return [Note(f"No feature-space neighbours: {deg.message}", kind="warning")]
    blocks: list[Any] = [Note(f"Weak feature space: {deg.message}", kind="warning")] if deg is not None else []
    blocks += [_query_group(ctx, opts, r, row, q) for row, q in enumerate(r.queries)]
    if r.labelled < 2:
        blocks.append(Note("No true labels: the nearest-neighbour class agreement table is not shown, because "
                           "agreement with the model's own predictions (made from these same features) would be "
                           "circular. Judge the rows by eye; each cell says whether its class is a label or a "
                           "prediction.", kind="info"))
    elif r.feature_agreement is not None and r.pixel_agreement is not None and r.chance is not None:
        rows = [["penultimate features", f"{100 * r.feature_agreement:.1f}%"],
                ["pixels (32x32)", f"{100 * r.pixel_agreement:.1f}%"],
                ["chance (same class at random)", f"{100 * r.chance:.1f}%"]]
        blocks.append(Table(["space", "nearest neighbour has the query's true label"], rows, numeric=[1],
                            title="Nearest-neighbour class agreement over the labelled images",
                            caption=(f"Leave-one-out among the {r.labelled} labelled images: for each of "
                                     f"{min(r.labelled, opts.agreement_queries)} of them, is its single nearest other "
                                     "labelled image of the same true label?")))
    else:
        blocks.append(Note("Every true label occurs once in this image set, so neighbour class agreement is not "
                           "measured; judge the rows by eye.", kind="info"))
    dist_name = "cosine distance" if opts.metric == "cosine" else "L2 distance"
    blocks.append(Note(
        f"Feature space: {dist_name} between penultimate feature vectors ({feats.penultimate_source}, stored as "
        f"float16). Pixel space: L2 distance between the model-input images downsampled to "
        f"{feats.pixel_size}x{feats.pixel_size} (float16, values in [0, 1]). Green cells share the query's "
        f"class (its label where known, else its prediction); each cell says which; the query itself is excluded "
        f"from its neighbours."))
    return blocks


@technique(
    "neighbors", "Nearest neighbours: features vs pixels", options=NeighborsOptions, order=24,
    references=[KRIZHEVSKY_2012],
    presets={"minimal": {"num_queries": 2, "k": 3, "thumb": 48, "agreement_queries": 50},
             "full": {"num_queries": 12, "k": 8}},
)
def neighbors(ctx: Ctx, opts: NeighborsOptions) -> Section:
    """Each query image (left) is followed by its nearest images in the model's penultimate feature space (top row)
    and in raw pixel space (bottom row), with distances. Feature neighbours of the same class that look different in
    pixels show the features capture what the object is, not just colour and layout."""
    if opts.metric not in ("cosine", "l2"):
        raise ValueError(f"neighbors.metric must be 'cosine' or 'l2', got {opts.metric!r}")
    sec = Section(id="neighbors", title="Nearest neighbours: features vs pixels")
    if len(ctx.images) < 2:
        return sec.add(Note("Nearest neighbours need at least two images.", kind="warning"))
    r = compute_neighbors(ctx, opts)
    for block in show_neighbors(ctx, opts, r):
        sec.add(block)
    if r.classes is not None:
        fa, pa = r.feature_agreement, r.pixel_agreement
        sec.params.update({"queries": [ctx.images.name(q) for q in r.queries],
                           "feature_agreement": None if fa is None else round(fa, 4),
                           "pixel_agreement": None if pa is None else round(pa, 4)})
    sec.results = to_json(r.results(ctx, opts))
    return sec
