"""Non-parametric texture synthesis by nearest-neighbour copying (Efros & Leung 1999; Wei & Levoy 2000).

The output is generated pixel by pixel in scan-line order, coarse pyramid level first. Each new pixel is
copied from the source pixel whose neighbourhood best matches the output's *causal* neighbourhood: the
already-generated pixels above and to the left at the same level (an L-shaped half window, wrapping around
toroidally), plus the full window around the corresponding pixel of the coarser level, which is already
finished (Wei & Levoy's multi-resolution neighbourhood). Distances are Gaussian-weighted sums of squared
differences; like Efros & Leung, one of the candidates within ``1 + eps`` of the best is picked at random.

The search is vectorised: every source neighbourhood is a row of one matrix ``S`` (built once per level with
numpy indexing) and each pixel's search is one matrix-vector product ``||s||^2 - 2 S q`` over all candidates,
so a 96 x 96 texture from a 64 x 64 source takes seconds. Every output pixel of the finest level is a copy of a
source pixel, so the output contains only source colours.
"""

from __future__ import annotations

import numpy as np


def _downsample(a: np.ndarray) -> np.ndarray:
    """2x2 box-filter downsampling of an H x W x C float array (odd edges dropped)."""
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    a = a[:h, :w]
    return 0.25 * (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2])


def _causal_offsets(n: int) -> np.ndarray:
    """(dy, dx) of the L-shaped causal half of an n x n window: the rows above, and the row's left part."""
    r = n // 2
    return np.array([(dy, dx) for dy in range(-r, 1) for dx in range(-r, r + 1) if dy < 0 or dx < 0])


def _full_offsets(n: int) -> np.ndarray:
    r = n // 2
    return np.array([(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)])


def _weights(offsets: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-(offsets ** 2).sum(1) / (2 * sigma ** 2))


def _gather(img: np.ndarray, ys: np.ndarray, xs: np.ndarray, offsets: np.ndarray, wrap: bool) -> np.ndarray:
    """For positions (ys, xs) (1-D arrays), the values at each offset: N x len(offsets) x C."""
    h, w = img.shape[:2]
    yy = ys[:, None] + offsets[None, :, 0]
    xx = xs[:, None] + offsets[None, :, 1]
    if wrap:
        yy, xx = yy % h, xx % w
    else:
        yy, xx = np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)
    return img[yy, xx]


def synthesize_nn(source: np.ndarray, out_size: int | tuple[int, int], *, levels: int = 3, window: int = 5,
                  coarse_window: int = 3, eps: float = 0.1, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Synthesise an ``out_size`` texture from ``source`` (H x W x C, uint8 or float in [0, 1]).

    ``window``: side of the causal window at each level; ``coarse_window``: side of the full window taken from the
    coarser level; ``levels``: pyramid levels. Returns (the texture with ``source``'s dtype, info with the source
    position copied to each pixel of the finest level and the mean matching distance)."""
    rng = np.random.default_rng(seed)
    src0 = np.asarray(source)
    is_uint8 = src0.dtype == np.uint8
    src = src0.astype(np.float32) / (255.0 if is_uint8 else 1.0)
    if src.ndim == 2:
        src = src[:, :, None]
    oh, ow = (out_size, out_size) if isinstance(out_size, int) else out_size
    r = window // 2
    levels = max(1, min(levels, int(np.log2(max(2, min(src.shape[:2]) // (2 * r + 4)))) + 1))
    src_pyr = [src]
    out_shapes = [(oh, ow)]
    for _ in range(levels - 1):
        src_pyr.append(_downsample(src_pyr[-1]))
        out_shapes.append((max(2, out_shapes[-1][0] // 2), max(2, out_shapes[-1][1] // 2)))
    causal, full = _causal_offsets(window), _full_offsets(coarse_window)
    wc = np.sqrt(_weights(causal, window / 6.4 * 2))[None, :, None]
    wf = np.sqrt(_weights(full, coarse_window / 6.4 * 2))[None, :, None]
    out_pyr: list[np.ndarray] = [None] * levels  # type: ignore[list-item]
    copied = None
    dists = []
    for lev in range(levels - 1, -1, -1):
        s = src_pyr[lev]
        sh, sw = s.shape[:2]
        h, w = out_shapes[lev]
        # candidates: source positions whose causal window lies inside the source
        cy: np.ndarray
        cx: np.ndarray
        cy, cx = np.meshgrid(np.arange(r, sh), np.arange(r, sw - r), indexing="ij")
        cy, cx = cy.ravel(), cx.ravel()
        feats = [(_gather(s, cy, cx, causal, False) * wc).reshape(len(cy), -1)]
        coarse_out = None
        if lev + 1 < levels:
            sc = src_pyr[lev + 1]
            feats.append((_gather(sc, cy // 2, cx // 2, full, False) * wf).reshape(len(cy), -1))
            coarse_out = out_pyr[lev + 1]
        S = np.concatenate(feats, 1).astype(np.float32)
        s_norm = (S * S).sum(1)
        # start: random source pixels (the source's own colour histogram, as noise)
        out = s[rng.integers(0, sh, (h, w)), rng.integers(0, sw, (h, w))].copy()
        pos = np.zeros((h, w, 2), dtype=np.int64)
        coarse_q = None
        if coarse_out is not None:
            yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
            coarse_q = (_gather(coarse_out, (yy // 2).ravel().clip(0, coarse_out.shape[0] - 1),
                                (xx // 2).ravel().clip(0, coarse_out.shape[1] - 1), full, True) * wf).reshape(h * w, -1)
        lvl_d = np.empty(h * w, dtype=np.float32)
        for y in range(h):
            for x in range(w):
                q = (out[(y + causal[:, 0]) % h, (x + causal[:, 1]) % w] * wc[0]).ravel()
                if coarse_q is not None:
                    q = np.concatenate([q, coarse_q[y * w + x]])
                d = s_norm - 2.0 * (S @ q)
                best = d.min()
                qn = float(q @ q)
                ok = np.flatnonzero(d <= best + eps * max(best + qn, 1e-8))
                k = ok[rng.integers(len(ok))] if len(ok) > 1 else int(d.argmin())
                out[y, x] = s[cy[k], cx[k]]
                pos[y, x] = (cy[k], cx[k])
                lvl_d[y * w + x] = max(best + qn, 0.0)
        out_pyr[lev] = out
        copied = pos
        dists.append(float(np.sqrt(lvl_d.mean())))
    res = out_pyr[0]
    if is_uint8:  # exact copies of source pixels
        assert copied is not None  # the loop ran: out_pyr[0] exists
        res = src0.reshape(src.shape)[copied[..., 0], copied[..., 1]]
    if src0.ndim == 2:
        res = res[..., 0]
    return res, {"positions": copied, "levels": levels, "match_distance": dists[-1], "window": window}


__all__ = ["synthesize_nn"]
