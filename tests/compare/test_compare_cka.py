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
