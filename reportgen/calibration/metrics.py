"""Calibration numbers from logits or probabilities and true labels (numpy, float64; no torch).

- Reliability bins (Naeini et al., AAAI 2015): the top-1 confidences ``c_i = max_k p_ik`` are split into bins
  B_b; ``ECE = sum_b |B_b| / N * |acc(B_b) - conf(B_b)|``. Equal-width bins cut [0, 1] into equal intervals
  (Guo et al. 2017 use 15); equal-mass bins hold (nearly) the same number of images each (Nixon et al. 2019),
  so no bin rests on a handful of images when the confidences pile up near 1.
- NLL ``= -(1/N) sum_i log p_{i, y_i}``; Brier score ``= (1/N) sum_i sum_k (p_ik - [k = y_i])^2`` (0 is
  perfect, 2 the worst).
- Temperature scaling (Guo et al., ICML 2017): ``p = softmax(z / T)`` with the one scalar T that minimises the
  NLL on held-in images. T > 1 softens the probabilities (the model was over-confident), T < 1 sharpens them
  (under-confident). The top-1 class never changes, so accuracy does not either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Binning = Literal["width", "mass"]
ECE_BINS = 15  # Guo et al. 2017's choice


@dataclass
class Calibration:
    """Reliability bins of the top-1 confidence: ``edges`` (bins + 1), and per bin the image count, the mean
    confidence and the accuracy (NaN where a bin is empty); ``ece = sum_b n_b / N * |acc_b - conf_b|``."""

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    ece: float
    binning: str = "width"

    @property
    def bins(self) -> int:
        return int(len(self.counts))


@dataclass
class TemperatureFit:
    """The temperature that minimises the NLL on the fitting images, and the NLL there before and after.
    ``at_bound``: the minimum lies at (or beyond) the searched range's end, e.g. every fitting image is right
    with a clear margin, so the NLL keeps falling as T -> 0."""

    temperature: float
    nll_before: float
    nll_after: float
    at_bound: bool


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS,
                binning: Binning = "width") -> Calibration:
    """Bin the top-1 ``confidence`` (N) of images that are ``correct`` (N, bool or 0/1) into ``bins`` bins."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    if binning == "width":
        edges = np.linspace(0.0, 1.0, bins + 1)
        which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)  # (lo, hi]; bin 0 is [0, hi]
    elif binning == "mass":
        order = np.argsort(conf, kind="stable")
        which = np.empty(len(conf), dtype=np.int64)
        groups = np.array_split(order, bins)  # sizes differ by at most one; empty when N < bins
        for b, g in enumerate(groups):
            which[g] = b
        edges = np.array([0.0] + [_cut(conf, groups, b) for b in range(1, bins)] + [1.0])
    else:
        raise ValueError(f"unknown binning {binning!r}; choose width or mass")
    counts = np.bincount(which, minlength=bins).astype(np.int64)
    csum = np.bincount(which, weights=conf, minlength=bins)
    asum = np.bincount(which, weights=ok, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mc, ma = csum / counts, asum / counts
    ece = float(np.nansum(counts / max(1, len(conf)) * np.abs(ma - mc)))
    return Calibration(edges, counts, mc, ma, ece, binning)


def _cut(conf: np.ndarray, groups: list[np.ndarray], b: int) -> float:
    """The boundary between equal-mass bins b - 1 and b (midway between their confidences)."""
    before = next((g for g in reversed(groups[:b]) if len(g)), None)
    after = next((g for g in groups[b:] if len(g)), None)
    if before is None or after is None:
        return float(conf.max()) if len(conf) else 1.0
    return float((conf[before[-1]] + conf[after[0]]) / 2)


def calibration(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS, binning: Binning = "width") -> Calibration:
    """Reliability bins of softmax ``probs`` (N x K) against ``labels`` (N, all known)."""
    p = np.asarray(probs, dtype=np.float64)
    return reliability(p.max(axis=1), p.argmax(axis=1) == np.asarray(labels), bins, binning)


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS, binning: Binning = "width") -> float:
    """Expected calibration error of the top-1 confidence (0: confidence equals accuracy in every bin)."""
    return calibration(probs, labels, bins, binning).ece


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true class under ``softmax(logits / temperature)``."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    m = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - m).sum(axis=1)) + m[:, 0]
    return float(np.mean(lse - z[np.arange(len(z)), np.asarray(labels)]))


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score: mean over images of sum_k (p_k - y_k)^2, y one-hot."""
    p = np.asarray(probs, dtype=np.float64)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(p)), np.asarray(labels)] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, lo: float = 0.01, hi: float = 100.0,
                    steps: int = 80) -> TemperatureFit:
    """The T in [lo, hi] that minimises ``nll(logits, labels, T)``.

    With b = 1 / T the NLL is convex in b and its derivative ``mean_i (E_{softmax(b z_i)}[z_i] - z_{i, y_i})``
    grows with b, so a bisection on its sign (in log b) finds the minimum exactly, without a step size.
    """
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    y = np.asarray(labels)
    zy = z[np.arange(len(z)), y]

    def slope(log_b: float) -> float:
        p = softmax(z * np.exp(log_b))
        return float(np.mean((p * z).sum(axis=1) - zy))

    a, b = np.log(1.0 / hi), np.log(1.0 / lo)
    if slope(a) >= 0:
        log_b, at_bound = a, True  # the NLL rises from the start: the largest T
    elif slope(b) <= 0:
        log_b, at_bound = b, True  # still falling at the smallest T
    else:
        for _ in range(steps):
            mid = (a + b) / 2
            a, b = (mid, b) if slope(mid) < 0 else (a, mid)
        log_b, at_bound = (a + b) / 2, False
    t = float(1.0 / np.exp(log_b))
    return TemperatureFit(t, nll(z, y), nll(z, y, t), at_bound)


__all__ = ["ECE_BINS", "Binning", "Calibration", "TemperatureFit", "softmax", "reliability", "calibration", "ece",
           "nll", "brier", "fit_temperature"]
