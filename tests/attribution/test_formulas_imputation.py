"""ROAD's noisy linear imputation (Rong et al., ICML 2022; ``attribution/_imputation.py``) against a dense
written-out linear system and a loop over the eight neighbours (mutation testing, docs/mutation.md)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import NEIGHBOURS, imputation_dense
from reportgen.attribution._imputation import neighbour_mean, noisy_linear_imputation

def mask(h: int, w: int, seed: int) -> np.ndarray:
    """Random removed pixels plus both ends of the first row, the last row's corner and a 2 x 3 block."""
    rng = np.random.default_rng(seed)
    m = rng.random((h, w)) < 0.3
    m[0, 0] = m[0, w - 1] = m[h - 1, w - 1] = True
    m[1:3, 2:5] = True
    m[h - 1, 0] = False
    return m


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_imputation_is_the_dense_neighbour_system(dtype):
    x = np.random.default_rng(0).random((3, 6, 8)).astype(dtype)
    removed = mask(6, 8, 1)
    out = noisy_linear_imputation(x, removed, noise=0.0)
    assert out.dtype == dtype and out.shape == x.shape
    np.testing.assert_allclose(out, imputation_dense(x, removed), rtol=1e-5 if dtype == np.float32 else 1e-10)
    assert np.array_equal(out[:, ~removed], x[:, ~removed])


def test_one_removed_pixel_is_its_neighbours_weighted_mean():
    x = np.random.default_rng(1).random((2, 4, 5))
    for y, xx in ((0, 0), (2, 3), (3, 4), (0, 2)):
        removed = np.zeros((4, 5), bool)
        removed[y, xx] = True
        out = noisy_linear_imputation(x, removed, noise=0.0)
        nb = [(y + dy, xx + dx, wt) for dy, dx, wt in NEIGHBOURS if 0 <= y + dy < 4 and 0 <= xx + dx < 5]
        ref = sum(wt * x[:, a, b] for a, b, wt in nb) / sum(wt for *_, wt in nb)
        np.testing.assert_allclose(out[:, y, xx], ref, rtol=1e-12)


def test_noise_is_the_rng_normals_in_channel_by_pixel_order():
    x = np.random.default_rng(2).random((3, 5, 7))
    removed = mask(5, 7, 3)
    n = int(removed.sum())
    clean = imputation_dense(x, removed)
    for rng, ref_rng in ((np.random.default_rng(4), np.random.default_rng(4)),
                         (np.random.RandomState(4), np.random.RandomState(4))):
        out = noisy_linear_imputation(x, removed, noise=0.2, rng=rng)
        ref = clean.copy()
        ref[:, removed] += 0.2 * ref_rng.standard_normal((3, n))  # C x n, pixels in row-major order
        np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
    # the default noise is 0.01
    ref = clean.copy()
    ref[:, removed] += 0.01 * np.random.default_rng(5).standard_normal((3, n))
    np.testing.assert_allclose(noisy_linear_imputation(x, removed, rng=np.random.default_rng(5)), ref, rtol=1e-10)
    # without an rng: a fresh one, noise of that size on the removed values only
    free = noisy_linear_imputation(x, removed, noise=0.2)
    assert np.array_equal(free[:, ~removed], x[:, ~removed])
    assert 0.1 < np.std(free[:, removed] - clean[:, removed]) < 0.4


def test_nothing_removed_and_everything_removed():
    x = np.random.default_rng(6).random((2, 3, 4)).astype(np.float32)
    out = noisy_linear_imputation(x, np.zeros((3, 4), bool), noise=0.5, rng=np.random.default_rng(0))
    assert out.dtype == np.float32 and out.shape == x.shape and np.array_equal(out, x)
    for h, w in ((3, 4), (2, 2)):
        with pytest.raises(ValueError, match="needs at least one kept pixel"):
            noisy_linear_imputation(np.ones((1, h, w)), np.ones((h, w), bool))


def test_neighbour_mean_is_a_loop_over_the_eight_neighbours():
    x = np.random.default_rng(7).random((2, 4, 6))
    ref = np.zeros_like(x)
    for y in range(4):
        for xx in range(6):
            nb = [(y + dy, xx + dx, wt) for dy, dx, wt in NEIGHBOURS if 0 <= y + dy < 4 and 0 <= xx + dx < 6]
            ref[:, y, xx] = sum(wt * x[:, a, b] for a, b, wt in nb) / sum(wt for *_, wt in nb)
    np.testing.assert_allclose(neighbour_mean(x), ref, rtol=1e-12)
