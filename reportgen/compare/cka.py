"""Linear centred kernel alignment (Kornblith et al. 2019) between the layers of two models.

``CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` over the Gram matrices ``K = X X^T`` and
``L = Y Y^T`` of activations ``X`` (n x p) and ``Y`` (n x q) of the same ``n`` images. It is 1 for identical
representations, invariant to orthogonal transforms and isotropic scaling (not to arbitrary invertible linear
maps), and compares layers of different widths, so models of different architectures can be matched by it.

Two HSIC estimators (:data:`Estimator`):

- ``"unbiased"`` (the default): Song et al.'s U-statistic (JMLR 2012, Thm. 2), as used for CKA by Nguyen,
  Raghu & Kornblith (ICLR 2021): with ``K~``, ``L~`` the Gram matrices with zeroed diagonals,
  ``HSIC_1 = [tr(K~L~) + 1^T K~ 1 1^T L~ 1 / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n(n-3))``.
  Independent representations score about 0 at any ``n`` (single values can be slightly negative).
- ``"biased"``: ``tr(HKH HLH)`` (Gretton et al. 2005), the estimator of Kornblith et al. 2019. Its bias
  grows as ``n`` falls relative to the feature width: two independent random 100-wide representations of 24
  images get a CKA near 0.8 with it, so small-sample heatmaps look uniformly similar.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..inspection.hooks import capture_outputs, eval_mode

MAX_SPATIAL = 8  # feature maps are average-pooled to at most 8 x 8 positions before flattening

Estimator = Literal["unbiased", "biased"]
ESTIMATORS: tuple[Estimator, ...] = ("unbiased", "biased")


def centre_gram(k: np.ndarray) -> np.ndarray:
    """``H K H`` with ``H = I - 11^T / n``."""
    k = np.asarray(k, dtype=np.float64)
    return k - k.mean(0, keepdims=True) - k.mean(1, keepdims=True) + k.mean()


def gram(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return x @ x.T


def hsic_biased(k: np.ndarray, l: np.ndarray) -> float:
    """``tr(HKH HLH)`` (unnormalised; the ``1/(n-1)^2`` factor cancels in CKA)."""
    return float((centre_gram(k) * centre_gram(l)).sum())


def hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. (2012)'s unbiased HSIC estimator of two n x n Gram matrices (n >= 4)."""
    k = np.array(k, dtype=np.float64)
    l = np.array(l, dtype=np.float64)
    n = len(k)
    if n < 4:
        raise ValueError(f"the unbiased HSIC estimator needs at least 4 examples, got {n}")
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    ones_k, ones_l = k.sum(0), l.sum(0)  # 1^T K~, 1^T L~
    term = (k * l).sum() + ones_k.sum() * ones_l.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (ones_k @ ones_l)
    return float(term / (n * (n - 3)))


def cka_from_grams(k: np.ndarray, l: np.ndarray, estimator: Estimator = "unbiased") -> float:
    """Linear CKA from two (uncentred) Gram matrices of the same images; 0 when either side has no variance."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown HSIC estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    hsic = hsic_unbiased if estimator == "unbiased" else hsic_biased
    kk, ll = hsic(k, k), hsic(l, l)
    if kk <= 0 or ll <= 0:
        return 0.0
    return hsic(k, l) / float(np.sqrt(kk * ll))


def linear_cka(x: np.ndarray, y: np.ndarray, estimator: Estimator = "unbiased") -> float:
    """Linear CKA of two representations of the same n examples (n x ... arrays, flattened per example)."""
    if len(x) != len(y):
        raise ValueError(f"CKA needs the same examples: {len(x)} vs {len(y)} rows")
    return cka_from_grams(gram(x), gram(y), estimator)


def cka_matrix(grams_a: list[np.ndarray], grams_b: list[np.ndarray], estimator: Estimator = "unbiased") -> np.ndarray:
    """Layer x layer CKA (rows: layers of A, columns: layers of B)."""
    return np.array([[cka_from_grams(k, l, estimator) for l in grams_b] for k in grams_a])


def pooled(t: torch.Tensor) -> torch.Tensor:
    """B x ... activation -> B x D, spatial maps average-pooled to at most MAX_SPATIAL^2 positions."""
    if t.dim() == 4 and t.shape[2] * t.shape[3] > MAX_SPATIAL ** 2:
        t = F.adaptive_avg_pool2d(t, (min(MAX_SPATIAL, t.shape[2]), min(MAX_SPATIAL, t.shape[3])))
    return t.flatten(1).float()


def layer_grams(pixel_model: nn.Module, modules: dict[str, nn.Module], batches, device) -> dict[str, np.ndarray]:
    """Gram matrices (n x n) of each module's pooled, flattened output over ``batches`` (one pass each).

    ``batches`` yields float pixel batches; every layer's features of all images are kept only as long as
    the Gram matrix needs them (n x D per layer, D <= channels x 64)."""
    feats: dict[str, list[torch.Tensor]] = {n: [] for n in modules}
    with eval_mode(pixel_model), torch.inference_mode(), capture_outputs(modules) as store:
        for x in batches:
            store.clear()
            logits = pixel_model(x.to(device))
            for n in modules:
                t = store.get(n, logits if n == "logits" else None)
                if t is None:
                    raise RuntimeError(f"layer {n!r} was not called in the forward pass")
                feats[n].append(pooled(t).cpu())
    out = {}
    for n, parts in feats.items():
        x = torch.cat(parts).double()
        out[n] = (x @ x.T).numpy()
    return out


def pick_layers(names: list[str], k: int) -> list[str]:
    """At most ``k`` names spread evenly over ``names`` (first and last kept)."""
    if len(names) <= k:
        return list(names)
    pos = np.linspace(0, len(names) - 1, k).round().astype(int)
    return [names[i] for i in sorted(set(pos.tolist()))]


__all__ = ["linear_cka", "cka_from_grams", "hsic_biased", "hsic_unbiased", "Estimator", "ESTIMATORS", "cka_matrix",
           "layer_grams", "pick_layers", "centre_gram", "gram"]
