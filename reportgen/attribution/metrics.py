"""Comparing attribution maps (numpy): rank correlation and SSIM, as in the sanity checks of Adebayo
et al. (2018)."""

from __future__ import annotations

import numpy as np


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps (ties get average ranks); 0 when either is constant."""
    from scipy.stats import rankdata

    ra, rb = rankdata(np.ravel(a)), rankdata(np.ravel(b))
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> float:
    """Structural similarity (Wang et al. 2004) of two maps, each min-max scaled to [0, 1] first;
    Gaussian window ``sigma``, ``C1 = 0.01^2``, ``C2 = 0.03^2``."""
    import cv2

    def unit(m):
        m = np.asarray(m, dtype=np.float64)
        r = m.max() - m.min()
        return (m - m.min()) / r if r > 0 else np.zeros_like(m)

    x, y = unit(a), unit(b)
    blur = lambda m: cv2.GaussianBlur(m, (0, 0), sigmaX=sigma)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())
