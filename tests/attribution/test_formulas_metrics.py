"""The map-comparison metrics of the sanity checks (reportgen.attribution.metrics) against independent references:
Spearman's rho from scipy.stats.spearmanr, SSIM (Wang et al. 2004) written out here with scipy.ndimage's Gaussian
filter (cv2's kernel for sigma 1.5 has radius 6 = scipy's truncate 4; cv2's default border is scipy's "mirror").
Built so that mutated constants (C1, C2, the factor 2, the min-max scaling, the window sigma) change the answer."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, stats

from reportgen.attribution.metrics import rank_correlation, ssim


def _ssim_reference(a, b, sigma=1.5):
    def unit(m):
        m = np.asarray(m, np.float64)
        return (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else np.zeros_like(m)

    x, y = unit(a), unit(b)
    g = lambda m: ndimage.gaussian_filter(m, sigma, mode="mirror", truncate=4.0)  # noqa: E731
    mx, my = g(x), g(y)
    sxx, syy, sxy = g(x * x) - mx ** 2, g(y * y) - my ** 2, g(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return float((((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))).mean())


def _related_pair(seed):
    rng = np.random.default_rng(seed)
    a = ndimage.gaussian_filter(rng.random((20, 24)), 2.0) * 7.0 - 3.0  # not in [0, 1]: the scaling matters
    b = 0.6 * a + ndimage.gaussian_filter(rng.random((20, 24)), 1.0) * 3.0 + 10.0
    return a, b


@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_equals_the_written_out_formula(seed):
    a, b = _related_pair(seed)
    want = _ssim_reference(a, b)
    assert 0.05 < want < 0.95  # neither end: a wrong constant or term moves it
    assert ssim(a, b) == pytest.approx(want, abs=1e-9)
    assert ssim(b, a) == pytest.approx(want, abs=1e-9)


def test_ssim_window_sigma_is_used_and_small_structure_constants_matter_on_flat_regions():
    a, b = _related_pair(2)
    assert ssim(a, b, sigma=3.0) == pytest.approx(_ssim_reference(a, b, 3.0), abs=1e-9)
    assert abs(ssim(a, b, sigma=3.0) - ssim(a, b)) > 1e-3
    # mostly-flat maps: the stabilising constants C1, C2 decide the value there
    f = np.zeros((16, 16))
    f[4:8, 4:8] = 1.0
    g = np.zeros((16, 16))
    g[5:9, 6:10] = 1.0
    assert ssim(f, g) == pytest.approx(_ssim_reference(f, g), abs=1e-9)


def test_ssim_of_a_constant_map_uses_the_zero_map():
    rng = np.random.default_rng(3)
    a = rng.random((12, 12))
    flat = np.full((12, 12), 5.0)
    assert ssim(a, flat) == pytest.approx(_ssim_reference(a, np.zeros((12, 12))), abs=1e-9)
    assert ssim(flat, flat) == pytest.approx(1.0)


def test_rank_correlation_equals_scipy_spearman_with_ties():
    rng = np.random.default_rng(4)
    a = np.round(rng.random((9, 9)) * 5)  # many ties: average ranks
    b = a + np.round(rng.random((9, 9)) * 4)
    want = stats.spearmanr(a.ravel(), b.ravel()).statistic
    assert 0.3 < want < 0.95
    assert rank_correlation(a, b) == pytest.approx(want, abs=1e-12)
    assert rank_correlation(a, -b) == pytest.approx(-want, abs=1e-12)


def test_rank_correlation_is_zero_when_either_map_is_constant():
    a = np.arange(16.0).reshape(4, 4)
    assert rank_correlation(a, np.ones((4, 4))) == 0.0
    assert rank_correlation(np.ones((4, 4)), a) == 0.0


def test_ssim_of_masks_and_float32_maps_is_computed_in_float64():
    """Thresholded (boolean) maps and float32 maps are compared as float64: a mask subtracts like numbers and float32
    rounding does not enter the value."""
    a, b = _related_pair(5)
    assert ssim(a.astype(np.float32), b.astype(np.float32)) == pytest.approx(
        _ssim_reference(a.astype(np.float32), b.astype(np.float32)), abs=1e-10)
    ma, mb = a > np.median(a), b > np.median(b)
    assert ssim(ma, mb) == pytest.approx(_ssim_reference(ma, mb), abs=1e-10)
