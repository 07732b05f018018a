"""Which mistakes to explain: the most frequent confused (true, predicted) pairs, or the lowest-margin predictions.

With labels a mistake is an image whose prediction ``P = argmax p`` differs from its label ``T``; pairs are counted
over the whole set and ranked by count. Without labels the "pair" of an image is (runner-up, prediction) and the
images are the ones with the smallest margin ``p_1 - p_2`` between the two most probable classes. Per image the
margin is ``p_P - p_T`` (probabilities). Nearest correctly classified images: cosine distance between penultimate
feature vectors, ``1 - <f_q, f_i> / (|f_q| |f_i|)``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Pair:
    """One (true or runner-up ``other``, ``predicted``) pair, its frequency in the set and the images shown."""

    other: int
    predicted: int
    count: int
    images: list[int] = field(default_factory=list)


def confused_pairs(probs: np.ndarray, labels: np.ndarray, max_pairs: int, per_pair: int) -> tuple[list[Pair], int]:
    """(pairs ranked by count, ties by their most confident mistake (largest ``p_P - p_T``), then class ids; number
    of labelled mistakes). Images per pair: the most confident mistakes first, ties by index."""
    preds = probs.argmax(1)
    wrong = np.flatnonzero((labels >= 0) & (preds != labels))
    counts = Counter((int(labels[i]), int(preds[i])) for i in wrong)
    out = []
    for (t, p), c in counts.items():
        members = wrong[(labels[wrong] == t) & (preds[wrong] == p)]
        margin = probs[members, p] - probs[members, t]
        order = np.lexsort((members, -margin))
        out.append((c, float(margin.max()), Pair(t, p, c, [int(members[j]) for j in order[:per_pair]])))
    out.sort(key=lambda r: (-r[0], -r[1], r[2].other, r[2].predicted))
    return [r[2] for r in out[:max_pairs]], int(wrong.size)


def lowest_margin_pairs(probs: np.ndarray, max_images: int) -> list[Pair]:
    """The ``max_images`` images with the smallest top-2 margin, grouped by (runner-up, prediction); a pair's
    ``count`` is how many images of the whole set have that runner-up and that prediction."""
    top2 = np.argsort(-probs, axis=1, kind="stable")[:, :2]
    margin = probs[np.arange(len(probs)), top2[:, 0]] - probs[np.arange(len(probs)), top2[:, 1]]
    chosen = np.lexsort((np.arange(len(probs)), margin))[:max_images]
    keyed = Counter((int(a), int(b)) for b, a in top2)
    groups: dict[tuple[int, int], list[int]] = {}
    for i in chosen:
        groups.setdefault((int(top2[i, 1]), int(top2[i, 0])), []).append(int(i))
    return [Pair(o, p, keyed[(o, p)], members) for (o, p), members in groups.items()]


def margins(probs: np.ndarray, predicted: int, other: int, idx: list[int]) -> np.ndarray:
    """``p_P - p_T`` per image."""
    return probs[idx, predicted] - probs[idx, other]


def nearest_of_class(features: np.ndarray, query: list[int], pool: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices q x k', cosine distances q x k') of the ``k`` rows of ``pool`` (indices into ``features``) nearest
    to each query row, the query itself excluded; k' = min(k, pool size). Ties go to the lower index."""
    pool = np.asarray(pool, dtype=np.int64)
    if pool.size == 0 or not query:
        return np.zeros((len(query), 0), dtype=np.int64), np.zeros((len(query), 0), dtype=np.float32)
    q = np.asarray(features[query], dtype=np.float32)
    d = np.asarray(features[pool], dtype=np.float32)
    q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    dist = 1.0 - q @ d.T
    dist[pool[None, :] == np.asarray(query)[:, None]] = np.inf
    kk = min(k, pool.size)
    order = np.argsort(dist, axis=1, kind="stable")[:, :kk]
    got = np.take_along_axis(dist, order, axis=1)
    return pool[order], got
