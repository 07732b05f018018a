"""Duplicate images: exact (the same pixels after decoding) and near (a resized, re-encoded or lightly edited copy),
inside one set or between the set and a reference set (e.g. the training folder: leakage into the review set).

Exact: images whose small pixel vectors (the feature pass's 32 x 32 area-downsampled input) are equal are
candidates; a candidate group is confirmed by the SHA-256 of each image's fully decoded pixel array, so only
candidates are decoded again. Near: a pair is a near-duplicate when both similarities reach their threshold:
the Pearson correlation of the pixel vectors (cosine after each vector's own mean is removed: brightness offsets
do not count) and the cosine similarity of the penultimate features. Candidate pairs come from each image's
``k`` nearest neighbours (scikit-learn ``NearestNeighbors``, brute force in blocks, on both spaces reduced by PCA to
``dims`` columns), so no N x N matrix is ever held; the similarities are then computed exactly on the full vectors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

CHUNK = 8192
WORKING_MB = 256  # scikit-learn's working memory for the blocked distance computations


@dataclass
class Pair:
    a: int  # row in the set
    b: int  # row in the set (a < b), or in the reference set
    pixel_similarity: float
    feature_similarity: float

    @property
    def similarity(self) -> float:
        return min(self.pixel_similarity, self.feature_similarity)


def unit_rows(x: np.ndarray, centre: bool) -> np.ndarray:
    """Rows as float32 unit vectors (centred on their own mean first when ``centre``); call it on blocks."""
    b = np.asarray(x, dtype=np.float32)
    if centre:
        b = b - b.mean(1, keepdims=True)
    nrm = np.linalg.norm(b, axis=1, keepdims=True)
    return b / np.where(nrm > 0, nrm, 1.0)


def exact_groups(pixels: np.ndarray, pixel_hash: Callable[[int], str], ref_pixels: np.ndarray | None = None,
                 ref_hash: Callable[[int], str] | None = None) -> list[list[tuple[int, int]]]:
    """Groups of images with identical decoded pixels, each as [(set 0 / reference 1, row)], two or more per group
    (with a reference: only groups holding images of both sets). ``pixel_hash(i)`` hashes image i's decoded array."""
    keys: dict[bytes, list[tuple[int, int]]] = {}
    sources: list[tuple[int, np.ndarray, Callable[[int], str]]] = [(0, pixels, pixel_hash)]
    if ref_pixels is not None and ref_hash is not None:
        sources.append((1, ref_pixels, ref_hash))
    for src, pix, _ in sources:
        for s in range(0, len(pix), CHUNK):
            blk = np.ascontiguousarray(np.asarray(pix[s:s + CHUNK], dtype=np.float16))
            for j, row in enumerate(blk):
                keys.setdefault(hashlib.sha1(row.tobytes()).digest(), []).append((src, s + j))
    fns = {src: fn for src, _, fn in sources}
    groups = []
    for cand in keys.values():
        if len(cand) < 2 or (ref_pixels is not None and len({s for s, _ in cand}) < 2):
            continue
        by_hash: dict[str, list[tuple[int, int]]] = {}
        for src, i in cand:
            by_hash.setdefault(fns[src](i), []).append((src, i))
        for g in by_hash.values():
            if len(g) > 1 and (ref_pixels is None or len({s for s, _ in g}) > 1):
                groups.append(sorted(g))
    return sorted(groups)


def _reduce(x: np.ndarray, centre: bool, dims: int, seed: int, other: np.ndarray | None = None,
            fit_rows: int = 10000):
    """Unit rows reduced by PCA to ``dims`` (fitted on a seeded sample of ``x``, applied in blocks: a memory-mapped
    N x D matrix is never copied whole); ``other`` projected the same way."""
    from sklearn.decomposition import PCA

    n, d = x.shape
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, fit_rows, replace=False)) if n > fit_rows else np.arange(n)
    k = int(max(1, min(dims, len(idx) - 1, d)))
    pca = PCA(n_components=k, svd_solver="randomized" if len(idx) > 2000 and d > 2 * k else "full",
              random_state=seed).fit(unit_rows(x[idx], centre))

    def proj(a):
        out = np.empty((len(a), k), np.float32)
        for s in range(0, len(a), CHUNK):
            out[s:s + CHUNK] = pca.transform(unit_rows(a[s:s + CHUNK], centre))
        return out
    return proj(x), (proj(other) if other is not None else None)


def _candidates(q: np.ndarray, index: np.ndarray, k: int, same: bool) -> np.ndarray:
    """(M, 2) candidate pairs (query row, index row) from the ``k`` nearest neighbours of each query row."""
    import sklearn
    from sklearn.neighbors import NearestNeighbors

    if len(index) == 0 or len(q) == 0:
        return np.zeros((0, 2), np.int64)
    kk = int(min(len(index), k + (1 if same else 0)))
    nn = NearestNeighbors(n_neighbors=kk, algorithm="brute").fit(index)
    out = []
    for s in range(0, len(q), CHUNK):
        with sklearn.config_context(working_memory=WORKING_MB):  # sklearn's own blocks: bounded distances
            ind = nn.kneighbors(q[s:s + CHUNK], return_distance=False)
        rows = np.repeat(np.arange(s, s + len(ind)), ind.shape[1])
        out.append(np.stack([rows, ind.ravel()], 1))
    pairs = np.concatenate(out)
    if same:
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        pairs = np.sort(pairs, axis=1)
    return np.unique(pairs, axis=0)


def near_pairs(pixels: np.ndarray, features: np.ndarray, *, pixel_threshold: float, feature_threshold: float,
               k: int = 5, dims: int = 64, seed: int = 0, ref_pixels: np.ndarray | None = None,
               ref_features: np.ndarray | None = None) -> list[Pair]:
    """Near-duplicate pairs inside the set (``ref_*`` None) or between the set and the reference set, most similar
    first. Both similarities must reach their threshold."""
    same = ref_pixels is None or ref_features is None
    if len(pixels) < 1 or (same and len(pixels) < 2) or (not same and len(ref_pixels) < 1):  # type: ignore[arg-type]
        return []
    cand = []
    for full, ref, centre in ((pixels, ref_pixels, True), (features, ref_features, False)):
        red, red_ref = _reduce(full, centre, dims, seed, other=None if same else ref)
        cand.append(_candidates(red, red if same else red_ref, k, same))
    pairs = np.unique(np.concatenate(cand), axis=0)
    px2, fx2 = (pixels, features) if same or ref_pixels is None or ref_features is None else (ref_pixels, ref_features)
    out = []
    for s in range(0, len(pairs), CHUNK):  # exact similarities of the candidates on the full vectors
        a, b = pairs[s:s + CHUNK, 0], pairs[s:s + CHUNK, 1]
        sp = np.einsum("ij,ij->i", unit_rows(pixels[a], True), unit_rows(px2[b], True))
        sf = np.einsum("ij,ij->i", unit_rows(features[a], False), unit_rows(fx2[b], False))
        keep = (sp >= pixel_threshold) & (sf >= feature_threshold)
        out += [Pair(int(i), int(j), float(p), float(f)) for i, j, p, f in zip(a[keep], b[keep], sp[keep], sf[keep])]
    out.sort(key=lambda p: (-p.similarity, p.a, p.b))
    return out
