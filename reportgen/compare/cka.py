"""Linear centred kernel alignment (Kornblith et al. 2019) between the layers of two models.

``CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` for column-centred activations ``X`` (n x p)
and ``Y`` (n x q) of the same ``n`` images; computed from the Gram matrices ``K = X X^T`` and
``L = Y Y^T`` as ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))``. It is 1 for identical representations,
invariant to orthogonal transforms and isotropic scaling (not to arbitrary invertible linear maps), and
compares layers of different widths, so models of different architectures can be matched by it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..inspection.hooks import capture_outputs, eval_mode

MAX_SPATIAL = 8  # feature maps are average-pooled to at most 8 x 8 positions before flattening


def centre_gram(k: np.ndarray) -> np.ndarray:
    """``H K H`` with ``H = I - 11^T / n``."""
    k = np.asarray(k, dtype=np.float64)
    return k - k.mean(0, keepdims=True) - k.mean(1, keepdims=True) + k.mean()


def gram(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return x @ x.T


def cka_from_grams(k: np.ndarray, l: np.ndarray) -> float:
    """Linear CKA from two (uncentred) Gram matrices of the same images."""
    kc, lc = centre_gram(k), centre_gram(l)
    hsic = float((kc * lc).sum())
    norm = float(np.sqrt((kc * kc).sum() * (lc * lc).sum()))
    return hsic / norm if norm > 0 else 0.0


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two representations of the same n examples (n x ... arrays, flattened per example)."""
    if len(x) != len(y):
        raise ValueError(f"CKA needs the same examples: {len(x)} vs {len(y)} rows")
    return cka_from_grams(gram(x), gram(y))


def cka_matrix(grams_a: list[np.ndarray], grams_b: list[np.ndarray]) -> np.ndarray:
    """Layer x layer CKA (rows: layers of A, columns: layers of B)."""
    return np.array([[cka_from_grams(k, l) for l in grams_b] for k in grams_a])


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


__all__ = ["linear_cka", "cka_from_grams", "cka_matrix", "layer_grams", "pick_layers", "centre_gram", "gram"]
