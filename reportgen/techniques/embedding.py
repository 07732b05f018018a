"""2-D embeddings of the penultimate features: PCA and t-SNE (van der Maaten & Hinton 2008),
and Karpathy's t-SNE image mosaic.

PCA projects the features on their two directions of largest variance (linear, global
distances). t-SNE first reduces them to 50 dimensions with PCA, then finds 2-D positions whose
neighbour probabilities match the features' (``perplexity = min(30, (N - 1) / 3)``, at least 2,
PCA initialisation, seeded): clusters are meaningful, distances between clusters are not. The
mosaic snaps each image's t-SNE position to a grid cell (the nearest free one, greedy) and draws
its thumbnail there (at most ``mosaic_points`` images, a seeded subsample beyond).

Every image is embedded (:mod:`._layout`: openTSNE's FFT-accelerated t-SNE above 5,000 images when installed,
``pip install reportgen[explorer]``; scikit-learn's Barnes-Hut t-SNE otherwise, on at most 10,000 images), and the
section hands the whole set to the explorer (:mod:`._catalog`): a zoomable scatter and a page per image.

How far each layout can be trusted is measured, not assumed: trustworthiness (Venna & Kaski 2001) of PCA, t-SNE
and random 2-D positions on the same images, ``T(k) = 1 - 2/(nk(2n-3k-1)) * sum_i sum_{j in U_k(i)} (r(i,j) - k)``
(1: every 2-D neighbour is a feature-space neighbour; random positions score ~0.5); t-SNE within 0.1 of random is
named a weak embedding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np

from ..features.degenerate import check_features
from ..pictures import figure_to_png, new_figure
from ..papers import KARPATHY_TSNE, VAN_DER_MAATEN_2008, VENNA_KASKI_2001
from ..registry import Range, technique
from ..report import Figure, ImageData, Note, Section
from ..results_schema import result_type, to_json
from ._catalog import explorer_block
from ._layout import (
    SKLEARN_MAX_POINTS, Layout, have_opentsne, layout, sklearn_tsne, trustworthiness_scores,
)

if TYPE_CHECKING:
    from ..context import Ctx

# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)


@result_type
class EmbeddingResults:
    points: int
    """images embedded"""
    images: int
    """images in the set"""
    subsampled: bool
    """true when points < images (seeded subsample)"""
    coloured_by: str | None
    """true label or predicted class"""
    pca_explained: list[float] | None
    """variance ratio of the two principal components"""
    tsne: bool
    """whether t-SNE ran"""
    perplexity: float | None
    """t-SNE perplexity (null when it did not run)"""
    feature_dims: int
    """dimension of the embedded features"""
    method: str | None
    """the t-SNE implementation that ran (openTSNE (FFT-accelerated), scikit-learn (Barnes-Hut), none)"""
    degenerate: dict[str, Any] | None
    """null, or what makes the features unusable or weak (kind non_finite / constant / rank_one, message)"""
    trustworthiness: dict[str, Any] | None = None
    """how well each layout keeps feature-space neighbourhoods (Venna & Kaski): k, points (of embedded), pca, tsne,
    and random (2-D positions drawn at random, the floor, ~0.5); 1 = every 2-D neighbour is a true one (null: too
    few points, or the features are unusable)"""


RESULTS = EmbeddingResults  # report.json "results" of this section (docs/results.md is generated from it)


WEAK_TRUST_MARGIN = 0.1  # t-SNE within this of random positions' trustworthiness is named weak


def trust_sentence(trust: dict | None) -> str:
    """The caption's words for :func:`._layout.trustworthiness_scores`."""
    if not trust:
        return ""
    parts = [f"{name} {trust[key]:.3f}" for key, name in (("pca", "PCA"), ("tsne", "t-SNE")) if key in trust]
    sub = f", on a seeded subsample of {trust['points']} images" if trust["points"] < trust["embedded"] else ""
    return (f" How far each keeps the features' neighbourhoods (trustworthiness, k = {trust['k']}{sub}: 1 when every "
            f"2-D neighbour is one in feature space; random positions score {trust['random']:.3f}): "
            + ", ".join(parts) + ".")


def tsne_perplexity(n: int) -> float:
    """min(30, (n - 1) / 3), at least 2 (and below n, which scikit-learn requires)."""
    p = max(2.0, min(30.0, (n - 1) / 3.0))
    return float(min(p, max(1.0, n - 1.0)))


def embed_2d(x: np.ndarray, seed: int, tsne: bool = True, max_iter: int = 1000,
             threads: int | None = 1) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """(PCA 2-D, t-SNE 2-D or None, info) of the rows of ``x`` (deterministic for a seed).

    ``threads`` caps scikit-learn's BLAS/OpenMP threads (None: the libraries' default). One
    thread is the default: on a busy machine the spinning thread pools of OpenBLAS/OpenMP can
    be ten times slower than one thread, and t-SNE of a few thousand points is quick on one core.
    """
    import contextlib

    import sklearn.decomposition  # noqa: F401 - load the BLAS / OpenMP libraries first:
    import sklearn.manifold  # noqa: F401 - threadpool_limits only reaches libraries already loaded
    from threadpoolctl import threadpool_limits

    limit = threadpool_limits(limits=int(threads)) if threads else contextlib.nullcontext()
    with limit:
        return _embed_2d(x, seed, tsne, max_iter)


def _embed_2d(x: np.ndarray, seed: int, tsne: bool, max_iter: int) -> tuple[np.ndarray, np.ndarray | None, dict]:
    from sklearn.decomposition import PCA

    x = np.asarray(x, dtype=np.float32)
    n, d = x.shape
    deg = check_features(x, "these features")
    if deg is not None and deg.blocking:  # PCA would divide by a zero variance, t-SNE can crash the process
        raise ValueError(deg.message)
    x = x - x.mean(axis=0, keepdims=True)
    info: dict = {}
    k2 = min(2, n, d)
    pca2 = PCA(n_components=k2, svd_solver="full", random_state=seed).fit(x)
    p2 = pca2.transform(x)
    if k2 < 2:
        p2 = np.concatenate([p2, np.zeros((n, 2 - k2), dtype=p2.dtype)], 1)
    info["pca_explained"] = [float(v) for v in pca2.explained_variance_ratio_]
    t2 = None
    if tsne and n >= 4:
        k50 = min(50, n, d)
        x50 = PCA(n_components=k50, svd_solver="full", random_state=seed).fit_transform(x) if d > 50 else x
        perp = tsne_perplexity(n)
        info["perplexity"] = perp
        info["pca_dims_before_tsne"] = int(x50.shape[1])
        t2 = sklearn_tsne(x50, perp, seed, max_iter)
    return p2.astype(np.float32), None if t2 is None else t2.astype(np.float32), info


def grid_assign(pos: np.ndarray, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Snap 2-D points to a ``cells`` x ``cells`` grid, each to the nearest free cell (greedy).

    Points are placed in a seeded random order; returns (row, col) per point.
    """
    n = pos.shape[0]
    if n > cells * cells:
        raise ValueError("more points than grid cells")
    p = pos - pos.min(axis=0)
    span = np.maximum(p.max(axis=0), 1e-12)
    p = p / span * (cells - 1)
    gy, gx = np.mgrid[0:cells, 0:cells]
    centres = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float64)  # (x, y) per cell
    free = np.ones(cells * cells, dtype=bool)
    out = np.zeros((n, 2), dtype=np.int64)
    for i in rng.permutation(n):
        d = ((centres - p[i]) ** 2).sum(1)
        d[~free] = np.inf
        c = int(np.argmin(d))
        free[c] = False
        out[i] = (c // cells, c % cells)
    return out


def mosaic(ctx: Ctx, indices: list[int], pos: np.ndarray, size: int, rng) -> tuple[np.ndarray, int, int, np.ndarray]:
    """Karpathy's t-SNE grid: thumbnails at their snapped 2-D positions on a white canvas."""
    n = len(indices)
    cells = max(1, int(math.ceil(math.sqrt(n * 1.15))))
    cell = max(4, size // cells)
    rc = grid_assign(pos, cells, rng)
    canvas = np.full((cells * cell, cells * cell, 3), 255, dtype=np.uint8)
    # t-SNE's y axis points up in the scatter plot; keep the same orientation in the mosaic
    for (r, c), i in zip(rc, indices):
        th = ctx.images.thumbnail(int(i), cell)
        if th.shape[0] != cell:
            from ..pictures import resize

            th = resize(th, (cell, cell))
        rr = cells - 1 - r
        canvas[rr * cell:(rr + 1) * cell, c * cell:(c + 1) * cell] = th[:, :, :3] if th.ndim == 3 else th[:, :, None]
    return canvas, cells, cell, rc


def _jpeg(canvas: np.ndarray, quality: int) -> ImageData:
    if not quality:
        return ImageData(canvas)
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="JPEG", quality=int(quality), optimize=True)
    return ImageData(data=buf.getvalue(), mime="image/jpeg")


def scatter_figure(points: list[tuple[str, np.ndarray]], colour_ids: np.ndarray, names: dict[int, str],
                   legend_title: str, top: int = 10) -> ImageData:
    """Scatter plots (one per embedding) coloured by class: the ``top`` most frequent get colours."""
    from matplotlib import colormaps

    ids, counts = np.unique(colour_ids, return_counts=True)
    order = np.lexsort((ids, -counts))
    shown = [int(ids[j]) for j in order[:top]]
    cmap = colormaps["tab10" if len(shown) <= 10 else "tab20"]
    fig = new_figure((5.2 * len(points) + 1.8, 4.8))
    axes = fig.subplots(1, len(points), squeeze=False)
    for ax, (title, p) in zip(axes[0], points):
        other = ~np.isin(colour_ids, shown)
        if other.any():
            ax.scatter(p[other, 0], p[other, 1], s=7, c="#c8c8c8", linewidths=0,
                       label=f"other ({len(ids) - len(shown)} classes)")
        for k, cid in enumerate(shown):
            m = colour_ids == cid
            ax.scatter(p[m, 0], p[m, 1], s=12, color=cmap(k % cmap.N), linewidths=0, label=names[cid][:24])
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, title=legend_title,
               title_fontsize=8, markerscale=1.6, frameon=False)
    fig.tight_layout()
    return figure_to_png(fig)


def confidence_figure(points: list[tuple[str, np.ndarray]], conf: np.ndarray) -> ImageData:
    """The same scatter plots coloured by the model's confidence (top softmax probability)."""
    fig = new_figure((5.2 * len(points) + 1.2, 4.8))
    axes = fig.subplots(1, len(points), squeeze=False)
    order = np.argsort(-conf, kind="stable")  # confident points first, unsure ones drawn on top
    sc = None
    for ax, (title, p) in zip(axes[0], points):
        sc = ax.scatter(p[order, 0], p[order, 1], s=10, c=conf[order], cmap="viridis", vmin=0, vmax=1,
                        linewidths=0)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    cb = fig.colorbar(sc, ax=axes[0].tolist(), fraction=0.03, pad=0.02)
    cb.set_label("top softmax probability", fontsize=8)
    return figure_to_png(fig)


@dataclass
class EmbeddingOptions:
    max_points: Annotated[int, Range(ge=1)] | None = None
    """Embed at most this many images (a seeded subsample beyond); None: every image (the method's own cap:
    1,000,000 with openTSNE, 10,000 with scikit-learn)."""
    method: Literal["auto", "opentsne", "sklearn"] = "auto"
    """t-SNE implementation: auto = scikit-learn up to 5,000 images, openTSNE (FFT) above when installed."""
    mosaic_points: Annotated[int, Range(ge=1)] = 2500
    """Images drawn in the mosaic (a seeded subsample beyond; the explorer shows every point)."""
    explorer: bool = True
    """Hand every image to the explorer (explorer.html, images/<id>.html)."""
    mosaic_size: Annotated[int, Range(ge=1)] = 1200
    """Side of the t-SNE mosaic in pixels."""
    tsne: bool = True
    """Also run t-SNE (PCA is always drawn)."""
    tsne_iter: Annotated[int, Range(ge=250)] = 1000
    """t-SNE iterations in all, the 250 of early exaggeration included (at least 100 more always run)."""
    top_classes: Annotated[int, Range(ge=1)] = 10
    """Classes that get their own colour in the scatter plots (the most frequent)."""
    threads: Annotated[int, Range(ge=0)] = 1
    """BLAS/OpenMP threads for PCA and t-SNE (0: the libraries' default; see embed_2d)."""
    mosaic_quality: Annotated[int, Range(ge=0, le=100)] = 88
    """JPEG quality of the mosaic (a photo collage: JPEG is about ten times smaller than PNG; 0: PNG)."""


@dataclass(frozen=True, eq=False)
class Mosaic:
    """Karpathy's t-SNE grid: the canvas and where each drawn image landed."""

    canvas: np.ndarray
    cells: int  # grid side in cells
    cell: int  # cell side in pixels
    drawn: int  # images drawn
    placed: np.ndarray  # (drawn, 3): image index, row, column


@dataclass(frozen=True, eq=False)
class EmbeddingResult:
    """What the embedding section computed: the 2-D layouts of the penultimate features and how far to trust them."""

    images: int  # images in the set
    idx: np.ndarray  # image indices embedded
    feats: Any  # the run's features (penultimate, preds, probs)
    feature_dims: int
    degenerate: Any  # None, or check_features' finding (blocking: no layout)
    lay: Layout | None = None
    trust: dict[str, Any] | None = None
    legend: str | None = None  # "true label" / "predicted class"
    colour_ids: np.ndarray | None = None
    names: dict[int, str] | None = None
    coverage: float = 1.0  # share of the points in the top_classes most frequent classes
    mosaic: Mosaic | None = None

    @property
    def info(self) -> dict[str, Any]:
        assert self.lay is not None
        info: dict[str, Any] = {"pca_explained": self.lay.pca_explained, "method": self.lay.method}
        if self.lay.xy is not None:
            info.update(perplexity=self.lay.perplexity, pca_dims_before_tsne=self.lay.pca_dims)
        return info

    def results(self) -> EmbeddingResults:
        """The section's report.json ``results``."""
        n, m, deg = self.images, len(self.idx), self.degenerate
        if self.lay is None:
            return EmbeddingResults(points=int(m), images=int(n), subsampled=bool(m < n), coloured_by=None,
                                    pca_explained=None, tsne=False, perplexity=None, feature_dims=self.feature_dims,
                                    method=None, degenerate=deg.results())
        return EmbeddingResults(
            points=int(m), images=int(n), subsampled=bool(m < n), coloured_by=self.legend,
            pca_explained=[round(v, 4) for v in self.lay.pca_explained], tsne=self.lay.xy is not None,
            perplexity=self.info.get("perplexity"), feature_dims=self.feature_dims, method=self.lay.method,
            degenerate=None if deg is None else deg.results(), trustworthiness=self.trust)


def _mosaic(ctx: Ctx, opts: EmbeddingOptions, idx: np.ndarray, t2: np.ndarray) -> Mosaic:
    m_rng = ctx.rng("embedding/mosaic")
    m = np.arange(len(idx))
    if len(m) > opts.mosaic_points > 0:
        m = np.sort(m_rng.choice(len(idx), size=int(opts.mosaic_points), replace=False))
    canvas, cells, cell, rc = mosaic(ctx, idx[m].tolist(), t2[m], int(opts.mosaic_size), m_rng)
    placed = np.concatenate([idx[m][:, None], cells - 1 - rc[:, :1], rc[:, 1:]], 1)
    return Mosaic(canvas, cells, cell, len(m), placed)


def compute_embedding(ctx: Ctx, opts: EmbeddingOptions) -> EmbeddingResult:
    """PCA and t-SNE of the penultimate features (a seeded subsample beyond max_points), their trustworthiness,
    the colours (true label, else prediction) and the mosaic."""
    n = len(ctx.images)
    feats = ctx.features()
    rng = ctx.rng("embedding/subsample")
    idx = np.arange(n)
    if opts.max_points and n > opts.max_points:
        idx = np.sort(rng.choice(n, size=int(opts.max_points), replace=False))
    x = feats.penultimate[idx].astype(np.float32)
    deg = check_features(x, f"the model's penultimate layer ({feats.penultimate_source})")
    if deg is not None and deg.blocking:
        return EmbeddingResult(n, idx, feats, int(x.shape[1]), deg)
    method = opts.method
    if method == "auto":
        method = "opentsne" if n > 5000 and have_opentsne() else "sklearn"
    lay = layout(x, ctx.seed_for("embedding/layout"), method=method, tsne=opts.tsne,
                 n_iter=opts.tsne_iter, threads=opts.threads or 1, rng=rng)
    trust = trustworthiness_scores(x[lay.idx], {"pca": lay.pca2, "tsne": lay.xy}, ctx.rng("embedding/trust"))
    lay.idx = idx[lay.idx]
    idx = lay.idx
    labels = ctx.images.labels[idx]
    if ctx.images.has_labels:
        colour_ids = np.where(labels >= 0, labels, -1)
        legend = "true label"
    else:
        colour_ids = feats.preds[idx]
        legend = "predicted class"
    names = {int(c): (ctx.class_name(int(c)) if c >= 0 else "unlabelled") for c in np.unique(colour_ids)}
    ids, counts = np.unique(colour_ids, return_counts=True)
    coverage = float(np.sort(counts)[::-1][:opts.top_classes].sum()) / len(idx)
    return EmbeddingResult(n, idx, feats, int(feats.penultimate.shape[1]), deg, lay, trust, legend, colour_ids, names,
                           coverage, None if lay.xy is None else _mosaic(ctx, opts, idx, lay.xy))


def _scatter_blocks(opts: EmbeddingOptions, r: EmbeddingResult, points: list[tuple[str, np.ndarray]]) -> list[Any]:
    """The class-coloured scatter plots, the weak-t-SNE warning and, when few classes cover the points, the
    confidence-coloured plots."""
    assert r.colour_ids is not None and r.names is not None and r.legend is not None
    trust, feats, n_classes = r.trust, r.feats, len(r.names)
    blocks: list[Any] = [Figure(scatter_figure(points, r.colour_ids, r.names, r.legend, opts.top_classes),
                                caption=(f"{len(r.idx)} images, coloured by {r.legend}"
                                         + (f"; only the {opts.top_classes} most frequent of {n_classes} classes get "
                                            "a colour, the rest are grey" if n_classes > opts.top_classes else "")
                                         + f". Features: {feats.penultimate_source}, {feats.penultimate.shape[1]}-D."
                                         + trust_sentence(trust)),
                                alt="PCA and t-SNE scatter plots of the penultimate features")]
    if trust and "tsne" in trust and trust["tsne"] - trust["random"] < WEAK_TRUST_MARGIN:
        blocks.append(Note(f"Weak embedding: t-SNE keeps neighbourhoods barely better than random positions "
                           f"(trustworthiness {trust['tsne']:.3f} against {trust['random']:.3f}); do not read "
                           "clusters or neighbours into it.", kind="warning"))
    if r.coverage < 0.3:
        conf = feats.probs[r.idx].max(axis=1)
        blocks.append(Figure(confidence_figure(points, conf), caption=(
            f"The {opts.top_classes} most frequent classes cover only {100 * r.coverage:.0f}% of the points, so the "
            "same plots are also coloured by the model's confidence (its top softmax probability): dark points are "
            "images the model is unsure about; a region of dark points is a part of feature space it finds "
            "ambiguous."), alt="PCA and t-SNE coloured by confidence"))
    return blocks


def show_embedding(ctx: Ctx, opts: EmbeddingOptions, r: EmbeddingResult) -> list[Any]:
    """The section's blocks: scatter plots, mosaic, subsampling note and the explorer."""
    deg, n, idx = r.degenerate, r.images, r.idx
    if r.lay is None:
        return [Note(f"No embedding: {deg.message}", kind="warning")]
    blocks: list[Any] = [Note(f"Weak embedding: {deg.message}", kind="warning")] if deg is not None else []
    info, lay = r.info, r.lay
    points = [(f"PCA ({100 * sum(info['pca_explained']):.0f}% of the variance)", lay.pca2)]
    if lay.xy is not None:
        points.append((f"t-SNE (perplexity {info['perplexity']:.1f}, after PCA to {info['pca_dims_before_tsne']})",
                       lay.xy))
    blocks += _scatter_blocks(opts, r, points)
    mosaic_img, placed, cells = None, None, 0
    if r.mosaic is not None:
        mo = r.mosaic
        mosaic_img, placed, cells = _jpeg(mo.canvas, opts.mosaic_quality), mo.placed, mo.cells
        shown = f"; {mo.drawn} of the {len(idx)} embedded images (a seeded subsample)" if mo.drawn < len(idx) else ""
        blocks.append(Figure(mosaic_img, caption=(
            f"t-SNE mosaic: each image's thumbnail at its t-SNE position, snapped to the nearest free cell of a "
            f"{mo.cells}x{mo.cells} grid ({mo.cell}px cells){shown}."), alt="t-SNE image mosaic"))
    else:
        blocks.append(Note("t-SNE was skipped (option embedding.tsne is off, or fewer than 4 images).", kind="info"))
    if len(idx) < n:
        why = ("option embedding.max_points" if opts.max_points and n > opts.max_points
               else f"scikit-learn t-SNE is capped at {SKLEARN_MAX_POINTS}; pip install reportgen[explorer] for "
                    "openTSNE, which embeds every image")
        blocks.append(Note(f"The set has {n} images; {len(idx)} were embedded (a seeded random subsample, {why}).",
                           kind="info"))
    if opts.explorer:
        blocks.append(explorer_block(ctx, r.feats, lay, mosaic_img, placed, cells))
    return blocks


@technique(
    "embedding", "Feature embedding: PCA, t-SNE and image mosaic", options=EmbeddingOptions, order=26,
    references=[VAN_DER_MAATEN_2008, KARPATHY_TSNE, VENNA_KASKI_2001],
    presets={"minimal": {"max_points": 200, "mosaic_size": 240, "tsne_iter": 250},
             "full": {"mosaic_size": 2000, "mosaic_points": 5000}},
)
def embedding(ctx: Ctx, opts: EmbeddingOptions) -> Section:
    """Each point (or thumbnail in the mosaic) is one image placed by its penultimate features squeezed to 2-D: PCA
    keeps the two directions of largest variance, t-SNE keeps each image's nearest neighbours close. Tight groups of
    one colour or of similar-looking thumbnails are classes the model separates; with t-SNE only neighbourhoods
    matter, not the distances between groups."""
    sec = Section(id="embedding", title="Feature embedding: PCA, t-SNE and image mosaic")
    if len(ctx.images) < 3:
        return sec.add(Note("An embedding needs at least three images.", kind="warning"))
    r = compute_embedding(ctx, opts)
    for block in show_embedding(ctx, opts, r):
        sec.add(block)
    if r.lay is not None:
        sec.params.update({"points": int(len(r.idx)), "subsampled": bool(len(r.idx) < r.images), **r.info})
    sec.results = to_json(r.results())
    return sec
