"""Linear CKA (Kornblith et al. 2019, eq. 5) against an independent numpy implementation in feature space.

The reference centres the columns of X and Y and computes ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)``; reportgen
works from n x n Gram matrices (``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` with ``K = X X^T``). The two must
agree to rounding. The feature-space formula is the biased HSIC estimator's, so ``estimator="biased"``.
"""

from __future__ import annotations

import numpy as np
import pytest

from reportgen.compare.cka import centre_gram, cka_from_grams, cka_matrix, gram, linear_cka


def reference_cka(x: np.ndarray, y: np.ndarray) -> float:
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    x = x - x.mean(0)
    y = y - y.mean(0)
    return float(np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def _pair(seed, n=30, p=7, q=11, mix=0.5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) * rng.uniform(0.2, 3.0, size=p) + rng.normal(size=p)
    y = np.concatenate([x @ rng.normal(size=(p, q - 3)), rng.normal(size=(n, 3))], 1) * mix \
        + (1 - mix) * rng.normal(size=(n, q)) + 4.0
    return x, y


@pytest.mark.parametrize("seed,mix", [(0, 0.5), (1, 0.9), (2, 0.1), (3, 0.0)])
def test_linear_cka_equals_the_feature_space_formula(seed, mix):
    x, y = _pair(seed, mix=mix)
    want = reference_cka(x, y)
    assert 0.0 < want < 1.0
    assert linear_cka(x, y, estimator="biased") == pytest.approx(want, rel=1e-10)
    assert cka_from_grams(x @ x.T, y @ y.T, "biased") == pytest.approx(want, rel=1e-10)
    assert linear_cka(y, x, estimator="biased") == pytest.approx(want, rel=1e-10)  # symmetric


def test_gram_and_centring_are_the_textbook_ones():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(6, 2, 3))  # flattened per example
    k = gram(x)
    np.testing.assert_allclose(k, x.reshape(6, -1) @ x.reshape(6, -1).T)
    h = np.eye(6) - np.ones((6, 6)) / 6
    np.testing.assert_allclose(centre_gram(k), h @ k @ h, atol=1e-12)


def test_cka_matrix_rows_are_layers_of_a():
    xs = [_pair(s)[0] for s in range(3)]
    ys = [_pair(s + 10)[1] for s in range(2)]
    m = cka_matrix([gram(x) for x in xs], [gram(y) for y in ys], "biased")
    assert m.shape == (3, 2)
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            assert m[i, j] == pytest.approx(reference_cka(x, y), rel=1e-10)


def test_scale_does_not_matter_down_to_tiny_activations():
    """CKA is invariant to isotropic scaling: features of size 1e-4 (a Gram matrix norm far below 1) give the same
    value as features of size 1e4."""
    x, y = _pair(5)
    want = reference_cka(x, y)
    assert linear_cka(1e-4 * x, y, estimator="biased") == pytest.approx(want, rel=1e-9)
    assert linear_cka(x, 1e4 * y, estimator="biased") == pytest.approx(want, rel=1e-9)
    assert linear_cka(1e-4 * x, 1e-4 * y, estimator="biased") == pytest.approx(want, rel=1e-9)


def test_float32_activations_are_accumulated_in_float64():
    """Activations arrive as float32; with a large common offset a float32 Gram matrix loses the centred part
    (entries ~1e9, float32 keeps 7 digits), float64 keeps it."""
    x, y = _pair(6, n=40)
    x32, y32 = (x + 3000.0).astype(np.float32), (y + 3000.0).astype(np.float32)
    assert linear_cka(x32, y32, estimator="biased") == pytest.approx(reference_cka(x32, y32), rel=1e-6)
    assert gram(x32).dtype == np.float64 and centre_gram(gram(x32).astype(np.float32)).dtype == np.float64


def test_mismatched_examples_are_refused():
    with pytest.raises(ValueError, match="same examples: 4 vs 5"):
        linear_cka(np.ones((4, 2)), np.ones((5, 2)))
