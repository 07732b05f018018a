"""Every-point 2-D layout for the embedding section and the explorer (machinery, not a technique).

t-SNE (van der Maaten & Hinton 2008) of the whole image set: PCA to 50 dimensions, then the ``3 * perplexity``
nearest neighbours of each point (Annoy, approximate), perplexity-calibrated affinities and FFT-interpolated
gradients (Linderman et al. 2019, FIt-SNE) through openTSNE -- O(N) per iteration, so 100,000 points fit in
minutes on one core (benchmarks/RESULTS.md, "Explorer"). The same neighbour lists give each image's nearest
neighbours in feature space for its page; pixel-space neighbours come from the same search on the pixel vectors.

Without openTSNE (``pip install reportgen[explorer]``) scikit-learn's Barnes-Hut t-SNE runs instead, on at most
:data:`SKLEARN_MAX_POINTS` points (a seeded subsample above; it is O(N log N) per iteration but about ten times
slower at 10,000 points), and the neighbours are exact (blocked brute force on the PCA-50 vectors).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from typing import Any

import numpy as np

SKLEARN_MAX_POINTS = 10_000  # scikit-learn t-SNE beyond this is slower than the 10-minute budget allows
OPENTSNE_MAX_POINTS = 1_000_000  # above this a seeded subsample (memory of the neighbour graph, ~1 GB)


def have_opentsne() -> bool:
    try:
        import openTSNE  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class Layout:
    """Where each of ``idx`` (indices into the image set) lands, and its neighbour lists."""

    idx: np.ndarray  # M image indices (all N unless subsampled)
    xy: np.ndarray | None  # M x 2 float32 t-SNE positions (None: t-SNE skipped)
    pca2: np.ndarray  # M x 2 float32
    pca_explained: list[float]
    feature_nn: np.ndarray  # M x k int32 positions into idx (nearest first)
    method: str  # "openTSNE (FFT)", "scikit-learn (Barnes-Hut)", "none"
    perplexity: float | None
    pca_dims: int


def pca(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(projection on the top-``k`` components, their explained variance ratios); randomized SVD for big sets."""
    from sklearn.decomposition import PCA

    n, d = x.shape
    k = max(1, min(k, n, d))
    solver = "randomized" if n > 5000 and d > 2 * k else "full"
    p = PCA(n_components=k, svd_solver=solver, random_state=seed).fit(x)
    return p.transform(x).astype(np.float32), p.explained_variance_ratio_


def knn(x: np.ndarray, k: int, seed: int, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(indices, distances), N x k, self excluded: Annoy (openTSNE) above 5,000 points, exact below."""
    n = x.shape[0]
    k = max(1, min(k, n - 1))
    if n > 5000 and have_opentsne():
        from openTSNE.nearest_neighbors import Annoy

        ind, dist = Annoy(np.ascontiguousarray(x, dtype=np.float32), k, metric="euclidean", n_jobs=threads,
                          random_state=seed).build()
        return ind.astype(np.int64), dist.astype(np.float64)
    sq = (x.astype(np.float64) ** 2).sum(1)
    ind = np.zeros((n, k), dtype=np.int64)
    dist = np.zeros((n, k), dtype=np.float64)
    for s in range(0, n, 1024):  # blocked: memory O(1024 * N)
        blk = x[s:s + 1024].astype(np.float64)
        d2 = sq[s:s + 1024, None] + sq[None, :] - 2.0 * blk @ x.T.astype(np.float64)
        d2[np.arange(len(blk)), np.arange(s, s + len(blk))] = np.inf
        part = np.argpartition(d2, k - 1, axis=1)[:, :k]
        dd = np.take_along_axis(d2, part, 1)
        o = np.argsort(dd, axis=1, kind="stable")
        ind[s:s + 1024] = np.take_along_axis(part, o, 1)
        dist[s:s + 1024] = np.sqrt(np.maximum(np.take_along_axis(dd, o, 1), 0))
    return ind, dist


def perplexity_for(n: int) -> float:
    """min(30, (n - 1) / 3), at least 2 (and below n)."""
    p = max(2.0, min(30.0, (n - 1) / 3.0))
    return float(min(p, max(1.0, n - 1.0)))


def layout(x: np.ndarray, seed: int, method: str = "auto", tsne: bool = True, n_iter: int = 750,
           neighbours: int = 8, threads: int = 1, rng: np.random.Generator | None = None,
           timings: dict | None = None) -> Layout:
    """t-SNE of every row of ``x`` (``method``: auto = openTSNE when installed, else scikit-learn; a seeded
    subsample only above the method's documented size), with PCA-2 and ``neighbours`` feature neighbours.
    ``timings`` (a dict) receives the seconds of each stage: pca, knn, tsne."""
    import time

    import sklearn.decomposition  # noqa: F401 - load BLAS first: threadpool_limits reaches loaded libraries only
    from threadpoolctl import threadpool_limits

    if method == "auto":
        method = "opentsne" if have_opentsne() else "sklearn"
    if method == "opentsne" and not have_opentsne():
        from ..errors import ConfigError

        raise ConfigError("embedding.method=opentsne needs openTSNE: pip install reportgen[explorer]")
    n = x.shape[0]
    cap = OPENTSNE_MAX_POINTS if method == "opentsne" else SKLEARN_MAX_POINTS
    idx = np.arange(n)
    if n > cap:
        rng = rng if rng is not None else np.random.default_rng(seed)
        idx = np.sort(rng.choice(n, size=cap, replace=False))
    limit = threadpool_limits(limits=int(threads)) if threads else contextlib.nullcontext()
    tm = timings if timings is not None else {}
    t0 = time.perf_counter()
    with limit:
        xs = np.asarray(x[idx], dtype=np.float32)
        xs = xs - xs.mean(axis=0, keepdims=True)
        p2, ev = pca(xs, 2, seed)
        if p2.shape[1] < 2:
            p2 = np.concatenate([p2, np.zeros((len(idx), 2 - p2.shape[1]), np.float32)], 1)
        x50 = pca(xs, 50, seed)[0] if xs.shape[1] > 50 else xs
        m = len(idx)
        perp = perplexity_for(m)
        k = min(m - 1, max(neighbours, int(3 * perp)))
        t1 = time.perf_counter()
        ind, dist = knn(x50, k, seed, threads) if m > 1 else (np.zeros((m, 0), np.int64), np.zeros((m, 0)))
        t2 = time.perf_counter()
        tm.update(pca=t1 - t0, knn=t2 - t1)
        xy = None
        used = "none"
        if tsne and m >= 4:
            if method == "opentsne":
                xy = _opentsne(x50, ind, dist, p2, perp, seed, n_iter, threads)
                used = "openTSNE (FFT-accelerated)"
            else:
                xy = sklearn_tsne(x50, perp, seed, n_iter)
                used = "scikit-learn (Barnes-Hut)"
        tm["tsne"] = time.perf_counter() - t2
    return Layout(idx=idx, xy=xy, pca2=p2.astype(np.float32), pca_explained=[float(v) for v in ev],
                  feature_nn=ind[:, :neighbours].astype(np.int32), method=used,
                  perplexity=perp if xy is not None else None, pca_dims=int(x50.shape[1]))


def _opentsne(x50, ind, dist, p2, perp, seed, n_iter, threads) -> np.ndarray:
    from openTSNE import TSNE
    from openTSNE.affinity import PerplexityBasedNN
    from openTSNE.nearest_neighbors import PrecomputedNeighbors

    k = ind.shape[1]
    aff = PerplexityBasedNN(knn_index=PrecomputedNeighbors(ind, dist), perplexity=min(perp, k / 3.0),
                            n_jobs=threads, random_state=seed)
    init = p2 / max(float(np.std(p2[:, 0])), 1e-12) * 1e-4  # PCA initialisation, scaled as openTSNE does
    emb = TSNE(n_iter=total_iterations(n_iter) - EXAGGERATION_ITERS, n_jobs=threads, random_state=seed,
               negative_gradient_method="fft" if len(x50) > 1000 else "bh").fit(affinities=aff, initialization=init)
    return np.asarray(emb, dtype=np.float32)


def tsne_iter_keyword() -> str:
    """scikit-learn renamed TSNE's ``n_iter`` to ``max_iter`` in 1.5 (and removed ``n_iter`` in 1.7)."""
    import inspect

    from sklearn.manifold import TSNE

    return "max_iter" if "max_iter" in inspect.signature(TSNE.__init__).parameters else "n_iter"


def sklearn_tsne(x50, perp, seed, n_iter) -> np.ndarray:
    """scikit-learn's Barnes-Hut t-SNE with PCA initialisation, :func:`total_iterations` steps."""
    from sklearn.manifold import TSNE

    tsne = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed, learning_rate="auto",
                **{tsne_iter_keyword(): total_iterations(n_iter)})
    return tsne.fit_transform(x50.astype(np.float32)).astype(np.float32)


EXAGGERATION_ITERS = 250  # both libraries' early-exaggeration phase
MIN_FREE_ITERS = 100


def total_iterations(n_iter: int) -> int:
    """Iterations for scikit-learn's ``max_iter``, which counts its 250 early-exaggeration steps: ``n_iter`` in
    all, but never fewer than 100 after the exaggeration (at 250 in all the points are still squeezed together
    where exaggeration left them; on the 500 ImageNet dev images the cloud spanned 0.2 units with one image 4.5
    away). openTSNE gets the same split (:func:`_opentsne`)."""
    return EXAGGERATION_ITERS + max(MIN_FREE_ITERS, int(n_iter) - EXAGGERATION_ITERS)


TRUST_POINTS = 2000  # trustworthiness is O(n^2): measured on a seeded subsample beyond
TRUST_K = 10


def trustworthiness_scores(x: np.ndarray, layouts: dict[str, np.ndarray | None],
                           rng: np.random.Generator) -> dict[str, Any] | None:
    """How well each 2-D layout keeps the features' neighbourhoods: Venna & Kaski's trustworthiness,
    ``T(k) = 1 - 2 / (n k (2n - 3k - 1)) * sum_i sum_{j in U_k(i)} (r(i, j) - k)``, ``U_k(i)`` the 2-D
    k-nearest neighbours of i that are not among its k nearest in feature space and ``r`` their feature-space
    rank. 1: every 2-D neighbour is a true one; random positions score about 0.5 (``random``, measured on the
    same points). On a seeded subsample of at most TRUST_POINTS points, k = TRUST_K (fewer on tiny sets)."""
    from sklearn.manifold import trustworthiness

    n = len(x)
    m = min(n, TRUST_POINTS)
    k = min(TRUST_K, (m - 1) // 2)
    if k < 1:
        return None
    pick = np.sort(rng.choice(n, size=m, replace=False)) if m < n else np.arange(n)
    xs = np.asarray(x, np.float32)[pick]
    out: dict[str, Any] = {"k": int(k), "points": int(m), "embedded": int(n)}
    shown = {**layouts, "random": rng.random((n, 2)).astype(np.float32)}
    for name, y in shown.items():
        if y is not None and np.isfinite(y[pick]).all():
            out[name] = round(float(trustworthiness(xs, np.asarray(y, np.float32)[pick], n_neighbors=k)), 4)
    return out
