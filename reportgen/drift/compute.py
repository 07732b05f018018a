"""Explanation drift between two runs' attribution maps of the same images (numpy; no model, no RunContext).

For each method both runs computed and each image both explained (same file SHA-256), with ``a``, ``b`` the two
maps flattened to P pixels:

* rank correlation (Spearman): ``rho = pearson(rank(a), rank(b))``, average ranks for ties, 0 when one map is
  constant and 1 when both are (1: the same pixel order; 0: unrelated; < 0: reversed);
* top-k% overlap: ``|T_a & T_b| / |T_a | T_b|`` where ``T`` is the set of the ``ceil(k P)`` highest pixels (ties
  broken by pixel position), intersection over union (1: the same most-relevant pixels; about k/(2-k) by chance);
* the most changed images: the (image, method) pairs with the lowest similarity ``(rho + IoU) / 2`` among images
  whose prediction is the same in both runs (an explanation that moved while the answer did not). rho alone is
  ruled by the many background pixels; the overlap alone ignores them; the mean ranks a new small region of high
  relevance (a watermark read by one run) first. A pair with rho >= UNCHANGED is not listed;
* classes that moved as a group: per image ``s_i`` = mean rho over the methods; for a class c with at least
  ``MIN_CLASS_IMAGES`` images (by explained class), ``d_c = mean(s_i, i in c) - mean(s_i, i not in c)``; one-sided
  permutation test (the class labels shuffled ``permutations`` times, seeded): ``p = (1 + #{d_perm <= d_c}) /
  (1 + permutations)``, Bonferroni-corrected over the classes tested; a class is named when ``d_c < 0`` and the
  corrected p is below ``alpha``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .maps import MapSet

MIN_CLASS_IMAGES = 3
UNCHANGED = 0.99  # a pair with rho at or above this is not listed as changed (float rounding across machines)


def rank_rows(x: np.ndarray) -> np.ndarray:
    """Average ranks (1..P) along the last axis of an R x P array."""
    from scipy.stats import rankdata

    return rankdata(np.asarray(x, dtype=np.float64), axis=-1)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rho of each row of ``a`` with the same row of ``b`` (R x ...; 0 where one row is constant, 1 where
    both are)."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    ra, rb = rank_rows(a), rank_rows(b)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    va, vb = (ra * ra).sum(1), (rb * rb).sum(1)
    den = np.sqrt(va * vb)
    rho = np.where(den > 0, (ra * rb).sum(1) / np.where(den > 0, den, 1.0), 0.0)
    return np.where((va == 0) & (vb == 0), 1.0, rho)  # two constant maps: nothing changed


def top_mask(x: np.ndarray, k: float) -> np.ndarray:
    """R x P boolean: each row's ``ceil(k P)`` highest entries (ties: the earlier pixel first)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    n = max(1, math.ceil(k * x.shape[1]))
    order = np.argsort(-x, axis=1, kind="stable")[:, :n]
    mask = np.zeros(x.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask


def topk_overlap(a: np.ndarray, b: np.ndarray, k: float = 0.1) -> np.ndarray:
    """Intersection over union of each row's top-``k`` pixel sets."""
    ma, mb = top_mask(a, k), top_mask(b, k)
    return (ma & mb).sum(1) / np.maximum((ma | mb).sum(1), 1)


@dataclass
class MethodDrift:
    method: str
    rho: np.ndarray  # per common image
    overlap: np.ndarray


@dataclass
class ClassDrift:
    cls: int
    images: int
    mean_rho: float
    others_rho: float
    p_value: float  # Bonferroni-corrected
    drifted: bool


@dataclass
class Drift:
    """Everything the drift section shows; ``reason`` set (and the rest empty) when nothing can be compared."""

    reason: str | None = None
    k: float = 0.1
    methods: list[MethodDrift] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)  # the common images, in run B's order
    names: list[str] = field(default_factory=list)
    targets: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    preds_a: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    preds_b: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    maps_a: np.ndarray | None = None  # M x N x S x S of the common methods and images
    maps_b: np.ndarray | None = None
    changed: list[tuple[int, int, float, float]] = field(default_factory=list)  # (method, image, rho, overlap)
    classes: list[ClassDrift] = field(default_factory=list)

    @property
    def same_prediction(self) -> np.ndarray:
        return self.preds_a == self.preds_b

    def image_rho(self) -> np.ndarray:
        """Per common image, its mean rho over the methods."""
        return np.mean([m.rho for m in self.methods], 0) if self.methods else np.zeros(0)

    def image_similarity(self) -> np.ndarray:
        """Per common image, its mean :func:`similarity` over the methods."""
        return np.mean([similarity(m.rho, m.overlap) for m in self.methods], 0) if self.methods else np.zeros(0)


def similarity(rho, overlap):
    """``(rho + IoU) / 2``: the order in which changed explanations are listed (lowest first)."""
    return (rho + overlap) / 2


def common(a: MapSet, b: MapSet) -> tuple[list[str], list[tuple[int, int]], str | None]:
    """The methods both ran, the (a index, b index) pairs of images both explained, and why nothing is common."""
    methods = [m for m in b.methods if m in a.methods]
    where = {s: i for i, s in enumerate(a.sha256)}
    pairs = [(where[s], j) for j, s in enumerate(b.sha256) if s in where]
    if not methods:
        return [], pairs, (f"no attribution method in common (the first run has {', '.join(a.methods) or 'none'}; "
                           f"the second {', '.join(b.methods) or 'none'})")
    if not pairs:
        return methods, [], (f"no image explained by both runs (by file content): {len(a.sha256)} and "
                             f"{len(b.sha256)} images, none the same")
    return methods, pairs, None


def class_drift(score: np.ndarray, classes: np.ndarray, permutations: int, alpha: float, seed: int) -> list[ClassDrift]:
    """The permutation test of the module docstring for each class with >= MIN_CLASS_IMAGES images."""
    tested = [c for c in np.unique(classes) if MIN_CLASS_IMAGES <= (classes == c).sum() < len(classes)]
    if not tested:
        return []
    rng = np.random.default_rng(seed)
    perms = np.stack([rng.permutation(len(score)) for _ in range(permutations)])
    shuffled = score[perms]  # permutations x N
    total = score.sum()
    out = []
    for c in tested:
        inside = classes == c
        n_in, n_out = int(inside.sum()), len(score) - int(inside.sum())
        d = score[inside].mean() - score[~inside].mean()
        s_in = shuffled[:, :n_in].sum(1)  # a random class of the same size
        d_perm = s_in / n_in - (total - s_in) / n_out
        p = min(1.0, (1 + int((d_perm <= d + 1e-12).sum())) / (1 + permutations) * len(tested))
        out.append(ClassDrift(int(c), n_in, float(score[inside].mean()), float(score[~inside].mean()), float(p),
                              bool(d < 0 and p < alpha)))
    return sorted(out, key=lambda r: r.mean_rho - r.others_rho)


def compare_maps(a: MapSet, b: MapSet, k: float = 0.1, top: int = 8, permutations: int = 2000,
                 alpha: float = 0.05, seed: int = 0) -> Drift:
    """Drift of ``b``'s explanations against ``a``'s (see the module docstring)."""
    if not 0 < k <= 1:
        raise ValueError(f"top-k share must be in (0, 1], got {k}")
    methods, pairs, reason = common(a, b)
    if reason is not None:
        return Drift(reason=reason, k=k)
    ia = np.array([p[0] for p in pairs])
    ib = np.array([p[1] for p in pairs])
    ma = np.stack([np.asarray(a.maps[a.methods.index(m)], dtype=np.float32)[ia] for m in methods])
    mb = np.stack([np.asarray(b.maps[b.methods.index(m)], dtype=np.float32)[ib] for m in methods])
    res = Drift(k=k, sha256=[b.sha256[j] for j in ib], names=[b.names[j] for j in ib], targets=b.targets[ib],
                preds_a=a.preds[ia], preds_b=b.preds[ib], maps_a=ma, maps_b=mb)
    for q, m in enumerate(methods):
        res.methods.append(MethodDrift(m, rank_correlation(ma[q], mb[q]), topk_overlap(ma[q], mb[q], k)))
    same = res.same_prediction
    rows = [(q, i, float(md.rho[i]), float(md.overlap[i])) for q, md in enumerate(res.methods)
            for i in range(len(ib)) if same[i] and md.rho[i] < UNCHANGED]
    res.changed = sorted(rows, key=lambda r: (similarity(r[2], r[3]), r[2]))[:top]
    res.classes = class_drift(res.image_rho(), res.targets, permutations, alpha, seed)
    return res


__all__ = ["MIN_CLASS_IMAGES", "rank_rows", "rank_correlation", "top_mask", "topk_overlap", "MethodDrift",
           "ClassDrift", "Drift", "similarity", "common", "class_drift", "compare_maps"]
