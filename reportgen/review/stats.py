"""The noise of a key number and of its change (plain Python and numpy: no torch).

- :func:`wilson` — Wilson score interval of a proportion k/n (Wilson, JASA 1927):
  ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)``.
- :func:`mcnemar_exact` — McNemar's exact test on the discordant pairs of a paired comparison (McNemar,
  Psychometrika 1947): with b images right only before and c right only now,
  ``p = min(1, 2·Σ_{i ≤ min(b,c)} C(b+c, i) / 2^(b+c))``.
- :func:`paired_diff_interval` — the Wald interval of a paired difference of proportions:
  ``(c-b)/n ± z·sqrt(b + c - (c-b)²/n)/n``.
- :func:`newcombe` — the difference of two independent proportions with Newcombe's hybrid score interval
  (Statistics in Medicine 1998, method 10), built from the two Wilson intervals.
- :func:`paired_bootstrap` — percentile bootstrap interval of the mean of paired per-image differences.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """95% Wilson score interval of k successes in n trials (None when n == 0)."""
    if n <= 0:
        return None
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs (1.0 when there are none)."""
    m = b + c
    if m == 0:
        return 1.0
    term = total = 1  # C(m, 0); exact integers, so any number of pairs works
    for i in range(min(b, c)):
        term = term * (m - i) // (i + 1)
        total += term
    return min(1.0, 2 * total / (1 << m))


def paired_diff_interval(b: int, c: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Interval of (c - b) / n, the change of a paired proportion (b: lost, c: gained, n: pairs)."""
    if n <= 0:
        return None
    d = (c - b) / n
    se = math.sqrt(max(0.0, b + c - (c - b) ** 2 / n)) / n
    return d - z * se, d + z * se


def newcombe(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float] | None:
    """Interval of p2 - p1 for independent samples (Newcombe's hybrid score interval)."""
    w1, w2 = wilson(k1, n1, z), wilson(k2, n2, z)
    if w1 is None or w2 is None:
        return None
    p1, p2 = k1 / n1, k2 / n2
    d = p2 - p1
    lower = d - math.sqrt((p2 - w2[0]) ** 2 + (w1[1] - p1) ** 2)
    upper = d + math.sqrt((w2[1] - p2) ** 2 + (p1 - w1[0]) ** 2)
    return lower, upper


def paired_bootstrap(diffs: Sequence[float], reps: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """95% percentile bootstrap interval of the mean of per-image differences (None for fewer than 2)."""
    d = np.asarray(diffs, dtype=float)
    if len(d) < 2:
        return None
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(reps, len(d)))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def combined_interval(delta: float, ci_old: tuple[float, float] | None,
                      ci_new: tuple[float, float] | None) -> tuple[float, float] | None:
    """Interval of a difference of two independent estimates from their own intervals (half-widths added in
    quadrature): ``delta ± sqrt(h_old² + h_new²)``."""
    if ci_old is None or ci_new is None:
        return None
    h = math.hypot((ci_old[1] - ci_old[0]) / 2, (ci_new[1] - ci_new[0]) / 2)
    return delta - h, delta + h


__all__ = ["wilson", "mcnemar_exact", "paired_diff_interval", "newcombe", "paired_bootstrap", "combined_interval"]
