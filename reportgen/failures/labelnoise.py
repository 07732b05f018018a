"""Likely label errors by confident learning (Northcutt, Jiang & Chuang, JAIR 2021), reimplemented (no cleanlab).

Per-class thresholds ``t_j = mean of p(j | x_i) over the images labelled j``; the confident joint counts image i
(given label y_i) in ``C[y_i][j]`` for ``j = argmax { p(k | x_i) : p(k | x_i) >= t_k }`` (no count when no class
reaches its threshold). The off-diagonal images (``j != y_i``) are the label issues, ranked by self-confidence
``p(y_i | x_i)`` (lowest first: the least likely given label). Classes with no labelled image have no threshold
and cannot be the likely label. The paper wants out-of-sample probabilities (cross-validated); a report's model
may have trained on these images, so its probabilities overfit the given labels and it finds fewer issues.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK = 8192


@dataclass
class LabelIssues:
    thresholds: np.ndarray  # C float64 (NaN: no labelled image of the class)
    joint: dict[tuple[int, int], int]  # confident joint, sparse: (given, likely) -> images
    images: np.ndarray  # rows of the issues, most likely mislabelled first
    given: np.ndarray
    likely: np.ndarray
    self_confidence: np.ndarray


def _probs(logits: np.ndarray, s: int) -> np.ndarray:
    z = np.asarray(logits[s:s + CHUNK], dtype=np.float64)
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def thresholds(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``t_j``: the mean predicted probability of class j over the images labelled j (NaN where there are none)."""
    c = logits.shape[1]
    sums, counts = np.zeros(c), np.zeros(c)
    for s in range(0, len(logits), CHUNK):
        p, y = _probs(logits, s), labels[s:s + CHUNK]
        k = y >= 0
        np.add.at(sums, y[k], p[k, y[k]])
        np.add.at(counts, y[k], 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def confident_learning(logits: np.ndarray, labels: np.ndarray) -> LabelIssues:
    """Thresholds, confident joint and the ranked off-diagonal images (``labels`` -1: unlabelled, ignored)."""
    t = thresholds(logits, labels)
    tt = np.where(np.isnan(t), np.inf, t)  # a class without a threshold is never reached
    joint: dict[tuple[int, int], int] = {}
    rows, given, likely, conf = [], [], [], []
    for s in range(0, len(logits), CHUNK):
        p, y = _probs(logits, s), np.asarray(labels[s:s + CHUNK])
        above = p >= tt[None, :]
        masked = np.where(above, p, -1.0)
        j = masked.argmax(1)
        has = above.any(1) & (y >= 0)
        for a, b in zip(y[has], j[has]):
            joint[(int(a), int(b))] = joint.get((int(a), int(b)), 0) + 1
        off = np.flatnonzero(has & (j != y))
        rows.append(s + off)
        given.append(y[off])
        likely.append(j[off])
        conf.append(p[off, y[off]])
    r, g, lk, sc = (np.concatenate(v) if v else np.zeros(0) for v in (rows, given, likely, conf))
    order = np.lexsort((r, sc))
    return LabelIssues(t, joint, r[order].astype(np.int64), g[order].astype(np.int64), lk[order].astype(np.int64),
                       sc[order].astype(np.float64))
