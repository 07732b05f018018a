"""Failure slices: groups of images, close together in the model's own feature space, where it fails together.

Clustering with error-weighted scoring, after PlaneSpot (Plumb et al. 2023): the penultimate features are reduced
by PCA (fitted on at most ``fit_rows`` rows), optionally joined by the model's confidence (``confidence_weight``;
0 by default, see below), and split into ``k`` diagonal Gaussian-mixture clusters. Each cluster is a candidate
slice; its score is ``error rate x size`` (its number of errors). A candidate is shown only when its error rate is
significantly above the rest's: one-sided Fisher's exact test, Bonferroni-corrected over the ``k`` candidates
(``p_adj = min(1, k * p) < alpha``). Without labels the test is a one-sided Mann-Whitney U test that the slice's
top-1 confidence is below the rest's.

Why the confidence weight is 0 by default: a cluster formed partly on the confidence of the true class is partly
formed on the outcome, so errors scattered at random over the feature space gather into one low-confidence
"slice" that the test then calls significant (tests/techniques/test_slices.py measures both). On features alone
the clusters do not see the errors, and the test's p-values mean what they say.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK = 8192  # rows per block when transforming / predicting (bounded memory at 100,000 rows)


@dataclass
class Slice:
    members: np.ndarray  # image indices, ascending
    errors: int  # labelled: wrong predictions among its members; unlabelled: 0
    accuracy: float | None  # labelled members' accuracy (None without labels)
    rest_accuracy: float | None
    mean_confidence: float  # mean top-1 probability of its members
    rest_confidence: float
    p_value: float  # Bonferroni-corrected

    @property
    def size(self) -> int:
        return int(len(self.members))


@dataclass
class SliceSearch:
    slices: list[Slice]  # the significant ones, most errors (labelled) / lowest confidence first
    candidates: int  # clusters tested
    labelled: bool
    assignment: np.ndarray  # N int: each image's cluster (-1: not clustered)
    explained_variance: float  # of the PCA used for the clustering


def auto_clusters(n: int, min_size: int) -> int:
    """Default number of clusters: about one per 25 images, at least 2, at most 32 (and n // min_size)."""
    return int(max(2, min(32, n // 25, max(2, n // max(1, min_size)))))


def embed(features: np.ndarray, dims: int, seed: int, fit_rows: int = 20000) -> tuple[np.ndarray, float]:
    """PCA of the rows to ``dims`` columns (fitted on a seeded sample of at most ``fit_rows`` rows, applied in
    blocks), each column scaled so the first has unit variance: (N x dims float32, explained variance ratio)."""
    from sklearn.decomposition import PCA

    n, d = features.shape
    rng = np.random.default_rng(seed)
    fit_idx = np.sort(rng.choice(n, fit_rows, replace=False)) if n > fit_rows else np.arange(n)
    x = np.asarray(features[fit_idx], dtype=np.float32)
    k = int(max(1, min(dims, len(fit_idx) - 1, d)))
    pca = PCA(n_components=k, svd_solver="randomized" if len(x) > 2000 and d > 2 * k else "full",
              random_state=seed).fit(x)
    out = np.empty((n, k), np.float32)
    for s in range(0, n, CHUNK):
        out[s:s + CHUNK] = pca.transform(np.asarray(features[s:s + CHUNK], dtype=np.float32))
    scale = float(out[:, 0].std()) or 1.0
    return out / scale, float(np.sum(pca.explained_variance_ratio_))


def cluster(z: np.ndarray, k: int, seed: int, fit_rows: int = 20000) -> np.ndarray:
    """Diagonal Gaussian-mixture cluster of each row (fitted on a seeded sample, predicted in blocks)."""
    from sklearn.mixture import GaussianMixture

    n = len(z)
    k = int(max(1, min(k, n)))
    rng = np.random.default_rng(seed)
    fit_idx = np.sort(rng.choice(n, fit_rows, replace=False)) if n > fit_rows else np.arange(n)
    gm = GaussianMixture(n_components=k, covariance_type="diag", reg_covar=1e-4, n_init=2, max_iter=200,
                         random_state=seed).fit(z[fit_idx])
    out = np.empty(n, np.int64)
    for s in range(0, n, CHUNK):
        out[s:s + CHUNK] = gm.predict(z[s:s + CHUNK])
    return out


def find_slices(features: np.ndarray, confidence: np.ndarray, correct: np.ndarray | None, *, k: int, dims: int = 10,
                confidence_weight: float = 0.0, min_size: int = 5, alpha: float = 0.05, seed: int = 0,
                fit_rows: int = 20000) -> SliceSearch:
    """The significant failure slices. ``confidence``: N top-1 probabilities (or of the true class); ``correct``:
    N bools, or None without labels (then slices are tested for low confidence instead of errors)."""
    n = len(features)
    z, evr = embed(features, dims, seed, fit_rows)
    if confidence_weight > 0:
        c = np.asarray(confidence, np.float32)
        z = np.hstack([z, (confidence_weight * (c - c.mean()) / (c.std() or 1.0))[:, None]])
    assign = cluster(z, k, seed, fit_rows)
    cands = [np.flatnonzero(assign == j) for j in np.unique(assign)]
    top = np.asarray(confidence, np.float64)
    out = []
    for m in cands:
        if len(m) < min_size or len(m) == n:
            continue
        rest = np.ones(n, bool)
        rest[m] = False
        s = _test(m, rest, top, correct, len(cands))
        if s is not None and s.p_value < alpha:
            out.append(s)
    out.sort(key=lambda s: (-s.errors, s.mean_confidence) if correct is not None else (s.mean_confidence, -s.size))
    return SliceSearch(out, len(cands), correct is not None, assign, evr)


def _test(m: np.ndarray, rest: np.ndarray, conf: np.ndarray, correct: np.ndarray | None, tests: int) -> Slice | None:
    """One candidate against the rest: Fisher (errors) or Mann-Whitney (confidence), Bonferroni over ``tests``."""
    from scipy.stats import fisher_exact, mannwhitneyu

    mc, rc = float(conf[m].mean()), float(conf[rest].mean())
    if correct is None:
        p = float(mannwhitneyu(conf[m], conf[rest], alternative="less").pvalue)
        return Slice(m, 0, None, None, mc, rc, min(1.0, p * tests))
    ok_in, ok_out = int(correct[m].sum()), int(correct[rest].sum())
    bad_in, bad_out = len(m) - ok_in, int(rest.sum()) - ok_out
    if bad_in == 0:
        return None
    p = float(fisher_exact([[bad_in, ok_in], [bad_out, ok_out]], alternative="greater").pvalue)
    acc_rest = ok_out / max(1, ok_out + bad_out)
    return Slice(m, bad_in, ok_in / len(m), acc_rest, mc, rc, min(1.0, p * tests))


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def top_probability(logits: np.ndarray) -> np.ndarray:
    """Each row's top-1 softmax probability, in blocks (no N x C probability matrix)."""
    out = np.empty(len(logits), np.float64)
    for s in range(0, len(logits), CHUNK):
        out[s:s + CHUNK] = softmax(np.asarray(logits[s:s + CHUNK], np.float64)).max(1)
    return out


def majority(values: np.ndarray, top: int = 3) -> list[tuple[int, int]]:
    """The ``top`` most frequent values (value, count), most frequent first (ties: the lower value)."""
    v, c = np.unique(values, return_counts=True)
    order = np.lexsort((v, -c))[:top]
    return [(int(v[i]), int(c[i])) for i in order]
