"""Noisy linear imputation (Rong et al., ICML 2022, ROAD), the removal operator of :func:`.faithfulness.road_curve`.

Each removed pixel is set to the weighted mean of its eight neighbours (weight 1/6 for the four edge neighbours,
1/12 for the diagonals, renormalised over those inside the image); the neighbours may themselves be removed, so all
removed pixels of an image are solved together as one sparse linear system ``sum_j w_ij (x_i - x_j) = 0`` per
channel, then Gaussian noise (std ``noise``) is added. The filled region continues its surroundings smoothly, so
its outline is not a visible mask edge that could itself tell the model what was removed.
"""

from __future__ import annotations

import numpy as np

NEIGHBOURS = (((0, 1), 1 / 6), ((0, -1), 1 / 6), ((1, 0), 1 / 6), ((-1, 0), 1 / 6),
              ((1, 1), 1 / 12), ((1, -1), 1 / 12), ((-1, 1), 1 / 12), ((-1, -1), 1 / 12))


def noisy_linear_imputation(x: np.ndarray, removed: np.ndarray, noise: float = 0.01,
                            rng: np.random.Generator | np.random.RandomState | None = None) -> np.ndarray:
    """``x`` (C x H x W) with the pixels where ``removed`` (H x W bool) imputed from their neighbours, plus
    ``noise * N(0, 1)`` per imputed value (drawn C x n from ``rng``'s ``standard_normal``). At least one pixel must
    be kept."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    c, h, w = x.shape
    flat = x.reshape(c, -1).astype(np.float64)
    idx = np.flatnonzero(removed)
    out = flat.copy()
    if len(idx) == 0:
        return out.reshape(x.shape).astype(x.dtype)
    if len(idx) == h * w:
        raise ValueError("noisy linear imputation needs at least one kept pixel")
    var = np.full(h * w, -1, dtype=np.int64)
    var[idx] = np.arange(len(idx))
    ys, xs = np.divmod(idx, w)
    diag = np.zeros(len(idx))
    rhs = np.zeros((len(idx), c))
    rows, cols, vals = [], [], []
    for (dy, dx), wt in NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        ok = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        i, j = np.flatnonzero(ok), ny[ok] * w + nx[ok]
        diag[i] += wt
        unknown = var[j] >= 0
        rows.append(i[unknown])
        cols.append(var[j[unknown]])
        vals.append(np.full(int(unknown.sum()), -wt))
        np.add.at(rhs, i[~unknown], wt * flat[:, j[~unknown]].T)
    n = len(idx)
    a = coo_matrix((np.concatenate(vals + [diag]), (np.concatenate(rows + [np.arange(n)]),
                                                   np.concatenate(cols + [np.arange(n)]))), shape=(n, n)).tocsc()
    sol = spsolve(a, rhs).reshape(n, c).T
    if noise:
        rng = rng if rng is not None else np.random.default_rng()
        sol = sol + noise * rng.standard_normal((c, n))
    out[:, idx] = sol
    return out.reshape(x.shape).astype(x.dtype)


def neighbour_mean(x: np.ndarray) -> np.ndarray:
    """C x H x W: each pixel's weighted mean of its in-image neighbours (the :data:`NEIGHBOURS` weights)."""
    c, h, w = x.shape
    num, den = np.zeros((c, h, w)), np.zeros((h, w))
    for (dy, dx), wt in NEIGHBOURS:
        ys = slice(max(0, -dy), h - max(0, dy))
        xs = slice(max(0, -dx), w - max(0, dx))
        yt = slice(max(0, dy), h - max(0, -dy))
        xt = slice(max(0, dx), w - max(0, -dx))
        num[:, ys, xs] += wt * x[:, yt, xt]
        den[ys, xs] += wt
    return num / den
