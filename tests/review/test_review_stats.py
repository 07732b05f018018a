"""The review's noise numbers equal written-out formulas on small cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reportgen.review.change import change, pairing
from reportgen.review.keys import Key, Predictions
from reportgen.review.stats import mcnemar_exact, newcombe, paired_diff_interval, wilson

Z = 1.959963984540054


def test_wilson_equals_the_formula():
    k, n = 8, 10
    p = k / n
    lo = (p + Z**2 / (2 * n) - Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))) / (1 + Z**2 / n)
    hi = (p + Z**2 / (2 * n) + Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))) / (1 + Z**2 / n)
    assert wilson(k, n) == pytest.approx((lo, hi))
    assert wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)  # the textbook value
    assert wilson(0, 0) is None


def test_mcnemar_exact_equals_the_binomial_tail():
    # b = 1 image right only before, c = 7 right only now: p = 2 * (C(8,0) + C(8,1)) / 2^8
    assert mcnemar_exact(1, 7) == pytest.approx(2 * (1 + 8) / 256)
    assert mcnemar_exact(7, 1) == mcnemar_exact(1, 7)
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 1024)


def test_newcombe_matches_the_papers_example():
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 vs 48/80, method 10: 0.0524 to 0.3339
    lo, hi = newcombe(48, 80, 56, 70)
    assert (lo, hi) == pytest.approx((0.0524, 0.3339), abs=1e-4)


def test_paired_interval_formula():
    b, c, n = 2, 9, 40
    d = (c - b) / n
    se = math.sqrt(b + c - (c - b) ** 2 / n) / n
    assert paired_diff_interval(b, c, n) == pytest.approx((d - Z * se, d + Z * se))


def _preds(sha, label, pred):
    return Predictions(sha, np.array(label), np.array(pred), np.zeros(len(sha), int), ["a", "b"])


def test_a_change_is_paired_on_the_same_images_in_any_order():
    sha = [f"{i:016x}" for i in range(12)]
    label = [0] * 6 + [1] * 6
    old = _preds(sha, label, label)  # all right
    wrong = [1 - y if i < 8 else y for i, y in enumerate(label)]  # 8 now wrong
    order = np.random.default_rng(0).permutation(12)
    new = _preds([sha[i] for i in order], [label[i] for i in order], [wrong[i] for i in order])
    pair = pairing(new, old)
    assert pair is not None
    ko = Key("top1", "top1", "top-1", 1.0, 12, None, "higher", 12)
    kn = Key("top1", "top1", "top-1", 4 / 12, 12, None, "higher", 4)
    ch = change(ko, kn, old, new, pair)
    assert ch.p == pytest.approx(mcnemar_exact(8, 0)) and "paired on 12 images" in ch.how
    assert ch.worse and ch.beyond_noise and ch.delta == pytest.approx(-8 / 12)
    other = _preds([f"{i + 100:016x}" for i in range(12)], label, wrong)
    assert pairing(other, old) is None
    ch = change(ko, kn, old, other, None)
    assert "unpaired" in ch.how and ch.p is None
    assert ch.ci == pytest.approx(newcombe(12, 12, 4, 12))
