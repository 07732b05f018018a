"""Feature matrices that no embedding, neighbour search or similarity can use, found before they reach one.

A randomly initialised or broken checkpoint can give penultimate features that do not depend on the input
(every image maps to the same vector, often zeros: a random-init torchvision ``efficientnet_b0`` gives values
around 1e-14, exactly 0 once stored as float16), NaN/Inf values, or features that vary along one direction
only. PCA then divides by a zero variance and scikit-learn's t-SNE can crash the process; distances and CKA
become meaningless. :func:`check_features` classifies an ``n x d`` matrix:

* ``non_finite``: some rows hold NaN or +-Inf;
* ``constant``: every row equals the first, up to ``rtol * max(1, max |x|)`` (values below ~1e-6 of unit
  scale count as zero: float16 storage cannot tell them apart anyway);
* ``rank_one``: the centred rows span one direction (what lies off it is <= ``RANK_TOL`` of the whole).

The first two make an embedding, neighbours or CKA meaningless (callers say so instead of computing); a
``rank_one`` matrix can still be drawn, with the warning. :meth:`Degeneracy.results` is what a section records
under ``results["degenerate"]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Kind = Literal["non_finite", "constant", "rank_one"]
RTOL = 1e-6
RANK_TOL = 1e-3  # residual beyond one direction, relative: float16 storage alone leaves ~3e-4


@dataclass(frozen=True)
class Degeneracy:
    kind: Kind
    images: int  # rows checked
    dims: int  # feature dimension
    bad_images: int  # rows with NaN/Inf (non_finite), else 0
    scale: float  # largest finite |value|
    message: str

    @property
    def blocking(self) -> bool:
        """True when nothing computed from these features would mean anything (non-finite or constant)."""
        return self.kind != "rank_one"

    def results(self) -> dict:
        return {"kind": self.kind, "images": self.images, "dims": self.dims, "bad_images": self.bad_images,
                "scale": float(f"{self.scale:.3g}"), "message": self.message}


def check_features(x: np.ndarray, what: str = "the model's penultimate layer", rtol: float = RTOL) -> Degeneracy | None:
    """None when the rows of ``x`` (n x ..., flattened per row) are usable, else what is wrong, in words."""
    a = np.asarray(x)
    a = a.reshape(len(a), -1).astype(np.float64, copy=False)
    n, d = a.shape
    if n == 0 or d == 0:
        return None
    finite = np.isfinite(a)
    bad = int((~finite.all(axis=1)).sum())
    scale = float(np.abs(a[finite]).max()) if finite.any() else 0.0
    if bad:
        return Degeneracy("non_finite", n, d, bad, scale, (
            f"{bad} of the {n} images give NaN or infinite values in {what}: the model's weights or its "
            "arithmetic overflow (a broken or diverged checkpoint?), so no distance, embedding or similarity "
            "of these features means anything."))
    if n < 2:
        return None
    tol = rtol * max(1.0, scale)
    spread = float((a.max(axis=0) - a.min(axis=0)).max())
    if spread <= tol:
        zero = " (all about zero)" if scale <= tol else ""
        return Degeneracy("constant", n, d, 0, scale, (
            f"the {n} images give identical features{zero}: {what} does not depend on the input (a randomly "
            "initialised or broken checkpoint?), so an embedding, nearest neighbours or a similarity of them "
            "would show nothing but numerical noise."))
    if _rank_one(a - a.mean(axis=0, keepdims=True)):
        return Degeneracy("rank_one", n, d, 0, scale, (
            f"the features of the {n} images vary along a single direction only (rank 1 after centring): "
            f"{what} reduces every image to one number, so a 2-D embedding shows a line and neighbours are "
            "ordered by that number alone."))
    return None


def _rank_one(c: np.ndarray, iters: int = 20) -> bool:
    """True when the centred rows ``c`` lie on one line: what remains after removing the dominant direction
    (power iteration, seeded) is <= ``RANK_TOL`` of the whole. Exact rank 1 converges in one step; when the top
    two singular values are close the residual stays large, which is the right answer too."""
    total = float(np.sqrt((c * c).sum()))
    if total == 0.0:
        return False
    v = np.random.default_rng(0).standard_normal(size=(c.shape[1],))
    for _ in range(iters):
        v = c.T @ (c @ v)
        nv = float(np.linalg.norm(v))
        if nv == 0.0:
            return False
        v /= nv
    resid = c - np.outer(c @ v, v)
    return float(np.sqrt((resid * resid).sum())) <= RANK_TOL * total


def check_gram(k: np.ndarray, rtol: float = RTOL) -> Literal["non_finite", "constant"] | None:
    """The same test on a linear Gram matrix ``K = X X^T`` (CKA keeps only these): ``constant`` when the centred
    Gram matrix vanishes (all rows of X equal), ``non_finite`` for NaN/Inf entries, else None."""
    k = np.asarray(k, dtype=np.float64)
    if not np.isfinite(k).all():
        return "non_finite"
    kc = k - k.mean(0, keepdims=True) - k.mean(1, keepdims=True) + k.mean()
    # trace(HKH) = sum of squared distances of the rows from their mean, against trace(K) (their squared size)
    if float(np.trace(kc)) <= rtol ** 2 * max(1.0, float(np.trace(k))):
        return "constant"
    return None
