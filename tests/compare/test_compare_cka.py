"""Linear CKA (Kornblith et al. 2019): identity, invariances, and what it is not invariant to."""

from __future__ import annotations

import numpy as np
import pytest

from reportgen.compare.cka import linear_cka


def _x(n=40, d=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def test_cka_with_itself_is_one():
    x = _x()
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_invariant_to_orthogonal_transform_and_isotropic_scaling():
    x = _x()
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(16, 16)))
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(x, 7.5 * x) == pytest.approx(1.0, abs=1e-10)
    y = _x(seed=2)
    assert linear_cka(x @ q * 3.0, y) == pytest.approx(linear_cka(x, y), abs=1e-10)
    # and to a constant shift (CKA centres the columns)
    assert linear_cka(x + 5.0, y) == pytest.approx(linear_cka(x, y), abs=1e-10)


def test_cka_not_invariant_to_anisotropic_scaling_and_low_for_unrelated():
    x = _x()
    s = np.diag(np.r_[np.full(8, 10.0), np.full(8, 0.1)])
    assert linear_cka(x, x @ s) < 0.9
    assert linear_cka(x, _x(seed=3)) < 0.5
    # different widths are fine
    assert 0.0 <= linear_cka(x, _x(d=5, seed=4)) <= 1.0


# ---- the unbiased HSIC estimator (Song et al. 2012) and the biased one at small n


def _pair(n, d, seed):
    r = np.random.default_rng(seed)
    return r.normal(size=(n, d)), r.normal(size=(n, d))


def test_debiased_cka_of_independent_representations_is_near_zero_where_biased_is_not():
    unb, bia = [], []
    for seed in range(20):
        x, y = _pair(24, 100, seed)
        unb.append(linear_cka(x, y))
        bia.append(linear_cka(x, y, "biased"))
    unb, bia = np.array(unb), np.array(bia)
    assert abs(unb.mean()) < 0.03 and np.abs(unb).max() < 0.25
    assert bia.min() > 0.6  # the biased estimate of unrelated 100-wide features at n = 24 looks "similar"
    assert linear_cka(*_pair(24, 100, 0)) == pytest.approx(linear_cka(*_pair(24, 100, 0), estimator="unbiased"))


def test_debiased_cka_with_itself_stays_one_and_is_shift_invariant():
    x = _x(n=24, d=100)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, 3.0 * x + 2.0) == pytest.approx(1.0, abs=1e-10)
    y = _x(n=24, d=7, seed=5)
    assert linear_cka(x + 4.0, y) == pytest.approx(linear_cka(x, y), abs=1e-10)


def _hsic_u_statistic(k, l):
    """Independent: HSIC as the U-statistic over ordered 4-tuples of distinct examples (Song et al. 2012, eq. 4),
    h = 1/4! sum over the tuple's orderings (t, u, v, w) of k_tu l_tu + k_tu l_vw - 2 k_tu l_tv."""
    import itertools

    n = len(k)
    total = 0.0
    for tup in itertools.permutations(range(n), 4):
        h = 0.0
        for t, u, v, w in itertools.permutations(tup):
            h += k[t, u] * l[t, u] + k[t, u] * l[v, w] - 2 * k[t, u] * l[t, v]
        total += h / 24
    return total / (n * (n - 1) * (n - 2) * (n - 3))


def _hsic_u_centred(k, l):
    """Independent: U-centred Gram matrices (Szekely & Rizzo 2014), HSIC = <K~, L~> / (n (n - 3))."""
    def u_centre(a):
        n = len(a)
        a = a.copy()
        np.fill_diagonal(a, 0.0)
        out = a - a.sum(0, keepdims=True) / (n - 2) - a.sum(1, keepdims=True) / (n - 2) + a.sum() / ((n - 1) * (n - 2))
        np.fill_diagonal(out, 0.0)
        return out

    n = len(k)
    return float((u_centre(k) * u_centre(l)).sum() / (n * (n - 3)))


def test_unbiased_hsic_equals_independent_implementations():
    from reportgen.compare.cka import gram, hsic_unbiased

    x, y = _pair(7, 5, 11)
    k, l = gram(x), gram(y)
    assert hsic_unbiased(k, l) == pytest.approx(_hsic_u_statistic(k, l), rel=1e-9)
    x, y = _pair(30, 12, 12)
    k, l = gram(x), gram(y @ np.random.default_rng(0).normal(size=(12, 12)) + x[:, :12])
    assert hsic_unbiased(k, l) == pytest.approx(_hsic_u_centred(k, l), rel=1e-9)
    cka = _hsic_u_centred(k, l) / np.sqrt(_hsic_u_centred(k, k) * _hsic_u_centred(l, l))
    assert linear_cka(x, y @ np.random.default_rng(0).normal(size=(12, 12)) + x[:, :12]) == pytest.approx(cka)
    with pytest.raises(ValueError, match="unknown HSIC estimator"):
        linear_cka(x, x, "debiased")  # type: ignore[arg-type]


def test_small_sample_warning_states_the_threshold_and_spread():
    from reportgen.compare.cka_section import MIN_RELIABLE_IMAGES, null_spread

    assert MIN_RELIABLE_IMAGES == 50
    # the stated spread matches a fresh simulation of unrelated representations at n = 24 (95% of |CKA|)
    vals = [abs(linear_cka(*_pair(24, 32, 100 + s))) for s in range(200)]
    assert np.quantile(vals, 0.95) == pytest.approx(null_spread(24), rel=0.35)
