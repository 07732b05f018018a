"""A classifier under the common corruptions: batched passes, then flip rates, accuracy, probability drops, their
intervals and the corruption the model is most fragile to (numpy and torch; no RunContext, no report blocks).

For image ``i`` with clean prediction ``k_i`` (from the run's shared clean pass) and corruption level ``l``:
``flip_li = [argmax f(c_l(x_i)) != k_i]`` and ``drop_li = p_{k_i}(x_i) - p_{k_i}(c_l(x_i))``. A corruption's
fragility score is its flip rate averaged over the severities run; the top one is compared with every other by a
seeded paired bootstrap over images (those whose 95 % interval of the difference reaches 0 are tied with it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch

from ..device import fast_layout
from .corruptions import CORRUPTIONS, Level, corrupt

#: resampled image indices held at once by the bootstrap (x 8 bytes): 4M = 32 MB whatever the image count
BOOTSTRAP_CELLS = 4_000_000
#: ``(positions, unit noise)``: standard-normal noise of the batch's shape for the images at these positions
NoiseFn = Callable[[list[int], tuple[int, ...]], torch.Tensor]


@dataclass
class CorruptionRun:
    """Predictions under every level (``L x N``) beside the clean ones (``N``)."""

    levels: list[Level]
    preds: np.ndarray
    p_clean_class: np.ndarray
    clean_preds: np.ndarray
    clean_p: np.ndarray
    labels: np.ndarray

    @property
    def flips(self) -> np.ndarray:
        return self.preds != self.clean_preds[None, :]

    @property
    def drops(self) -> np.ndarray:
        return self.clean_p[None, :] - self.p_clean_class

    @property
    def labelled(self) -> bool:
        return bool((self.labels >= 0).any())


def run_levels(forward: Callable[[torch.Tensor], torch.Tensor], batches: Iterable[tuple[list[int], torch.Tensor]],
               levels: list[Level], clean_preds: np.ndarray, noise_for: NoiseFn | None = None,
               progress: Callable = lambda it, *a, **k: it) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(preds, p_clean_class, p_pred)``, each ``len(levels) x len(clean_preds)``: every batch of ``batches``
    (positions, images in [0, 1] on the model's device) corrupted at every level and passed through ``forward``
    (logits), one pass per batch and level under ``torch.inference_mode()``. Noise is drawn once per batch by
    ``noise_for`` and shared by the noise levels (only its std changes with the severity)."""
    n = len(clean_preds)
    preds = np.full((len(levels), n), -1, dtype=np.int64)
    pcls = np.zeros((len(levels), n), dtype=np.float32)
    ppred = np.zeros((len(levels), n), dtype=np.float32)
    want_noise = noise_for is not None and any(lv.corruption == "gaussian_noise" for lv in levels)
    with torch.inference_mode():
        for pos, x in progress(batches, "Corrupted passes"):
            noise = noise_for(pos, tuple(x.shape)) if want_noise and noise_for is not None else None
            k = torch.as_tensor(clean_preds[pos], device=x.device)
            for li, lv in enumerate(levels):
                p = torch.softmax(forward(fast_layout(corrupt(x, lv, noise=noise))).float(), dim=1)
                top = p.max(1)
                preds[li, pos] = top.indices.cpu().numpy()
                ppred[li, pos] = top.values.cpu().numpy()
                pcls[li, pos] = p.gather(1, k[:, None])[:, 0].cpu().numpy()
    return preds, pcls, ppred


def naive_levels(forward, images: torch.Tensor, levels: list[Level], clean_preds: np.ndarray,
                 noise: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The same numbers one image and one level at a time (the benchmark's baseline and the tests' reference)."""
    preds = np.zeros((len(levels), len(images)), dtype=np.int64)
    pcls = np.zeros((len(levels), len(images)), dtype=np.float32)
    with torch.inference_mode():
        for i in range(len(images)):
            for li, lv in enumerate(levels):
                nz = None if noise is None else noise[i:i + 1]
                p = torch.softmax(forward(corrupt(images[i:i + 1], lv, noise=nz)).float(), dim=1)[0]
                preds[li, i] = int(p.argmax())
                pcls[li, i] = float(p[int(clean_preds[i])])
    return preds, pcls


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``k / n`` (95 % at ``z`` = 1.96)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, mid - half), min(1.0, mid + half)


@dataclass
class Row:
    corruption: str
    severity: int
    parameter: float | None
    text: str
    accuracy: float | None
    flip_rate: float
    flip_ci95: tuple[float, float]
    mean_prob_drop: float
    images: int


def rows(run: CorruptionRun) -> list[Row]:
    """One row per level: accuracy on the labelled images (None without labels), flip rate with its Wilson
    interval, mean probability drop of the clean-predicted class."""
    known = run.labels >= 0
    flips, drops, out = run.flips, run.drops, []
    n = flips.shape[1]
    for li, lv in enumerate(run.levels):
        acc = float((run.preds[li][known] == run.labels[known]).mean()) if known.any() else None
        k = int(flips[li].sum())
        out.append(Row(lv.corruption, lv.severity, lv.parameter, lv.text, acc, k / max(1, n), wilson(k, n),
                       float(drops[li].mean()) if n else 0.0, n))
    return out


@dataclass
class Fragility:
    """The corruption with the highest mean flip rate over the severities run (ties broken by probability drop),
    and the others a paired bootstrap cannot tell from it."""

    most_fragile: str
    scores: dict[str, float]
    drops: dict[str, float]
    tied: list[str] = field(default_factory=list)
    diff_ci95: dict[str, tuple[float, float]] = field(default_factory=dict)


def fragility(run: CorruptionRun, rng: np.random.Generator, bootstrap: int = 1000) -> Fragility:
    names = [c for c in CORRUPTIONS if any(lv.corruption == c for lv in run.levels)]
    flips, drops = run.flips.astype(np.float64), run.drops.astype(np.float64)
    per_image = {c: flips[[i for i, lv in enumerate(run.levels) if lv.corruption == c]].mean(0) for c in names}
    mean_drop = {c: float(drops[[i for i, lv in enumerate(run.levels) if lv.corruption == c]].mean()) for c in names}
    scores = {c: float(v.mean()) if v.size else 0.0 for c, v in per_image.items()}
    top = max(names, key=lambda c: (scores[c], mean_drop[c]))
    n = run.flips.shape[1]
    out = Fragility(top, scores, mean_drop)
    if n == 0:
        return out
    others = [c for c in names if c != top]
    diffs = {c: per_image[top] - per_image[c] for c in others}
    means: dict[str, list[np.ndarray]] = {c: [] for c in others}
    step = max(1, BOOTSTRAP_CELLS // n)  # resamples per chunk: a bounded index matrix at any n
    for s in range(0, int(bootstrap), step):
        draw = rng.integers(0, n, size=(min(step, int(bootstrap) - s), n))
        for c in others:
            means[c].append(diffs[c][draw].mean(1))
    for c in others:
        m = np.concatenate(means[c])
        lo, hi = float(np.percentile(m, 2.5)), float(np.percentile(m, 97.5))
        out.diff_ci95[c] = (lo, hi)
        if lo <= 0:
            out.tied.append(c)
    return out


def mildest(run: CorruptionRun) -> tuple[int | None, int]:
    """(the lowest severity run, images whose prediction flips under at least one corruption at it)."""
    if not run.levels:
        return None, 0
    s = min(lv.severity for lv in run.levels)
    sel = [i for i, lv in enumerate(run.levels) if lv.severity == s]
    return s, int(run.flips[sel].any(0).sum())


def flip_examples(run: CorruptionRun, order: list[str], n: int) -> list[tuple[int, int]]:
    """Up to ``n`` (level index, position) pairs that flip at each corruption's lowest severity: corruptions in
    ``order`` taken in turn, the largest probability drop first, each image shown once."""
    flips, drops = run.flips, run.drops
    queues = []
    for c in order:
        li = [i for i, lv in enumerate(run.levels) if lv.corruption == c]
        if not li:
            continue
        low = min(li, key=lambda i: run.levels[i].severity)
        pos = np.flatnonzero(flips[low])
        queues.append([(low, int(p)) for p in pos[np.argsort(-drops[low, pos], kind="stable")]])
    out: list[tuple[int, int]] = []
    seen: set[int] = set()
    while len(out) < n and any(queues):
        for q in queues:
            while q and q[0][1] in seen:
                q.pop(0)
            if q and len(out) < n:
                pick = q.pop(0)
                out.append(pick)
                seen.add(pick[1])
    return out
