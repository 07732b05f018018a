"""CRAFT-style concepts (Fel et al. 2023) by non-negative matrix factorisation of crop activations
(Collins et al. 2018).

Crops of a class's images (a ``grid x grid`` lattice of squares of side ``frac`` of the image, each resized to the
input size) go through the model; a layer's output after its activation (non-negative), spatially averaged, gives a
crops x channels matrix ``A >= 0``. NMF factors ``A ~ U W`` (``U`` crops x k coefficients, ``W`` k x channels
concept basis). Importance of concept k for the class score ``S``: gradient x coefficient,
``I_k = mean_images sum_positions U_pk dS/dU_pk``, ``dS/dU_pk = sum_c dS/dA_pc W_kc``, with ``U_p`` the NNLS
projection of each position's activation on ``W`` (a first-order estimate, not CRAFT's Sobol indices). The same
projection is the concept's heatmap on an image. Streams: one batch of crops at a time; only pooled vectors are kept.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..inspection.activations import activations
from ..inspection.hooks import capture_outputs, eval_mode, frozen_params


def crop_boxes(size: int, frac: float, grid: int) -> list[tuple[int, int, int]]:
    """(y, x, side) of the ``grid x grid`` lattice of square crops of side ``frac * size``."""
    side = max(2, round(frac * size))
    pos = np.linspace(0, size - side, grid).round().astype(int) if grid > 1 else np.array([(size - side) // 2])
    return [(int(y), int(x), side) for y in pos for x in pos]


def crops_of(x: torch.Tensor, boxes: list[tuple[int, int, int]]) -> torch.Tensor:
    """B x 3 x H x W -> (B * len(boxes)) x 3 x H x W: each box of each image resized to H x W (image-major)."""
    h, w = x.shape[-2:]
    out = [F.interpolate(x[:, :, y:y + s, x0:x0 + s], size=(h, w), mode="bilinear", align_corners=False)
           for (y, x0, s) in boxes]
    return torch.stack(out, 1).flatten(0, 1)


def layer_output(model: nn.Module, root: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    """Layer ``name`` (resolved on ``root``) of ``model(x)``, as :func:`reportgen.inspection.activations.activations`
    gives it (the forward stops there; no gradient), as B x C x h x w."""
    with torch.inference_mode():
        a = activations(model, [name], x, root=root)[name].float()
    if a.dim() != 4:
        raise ValueError(f"concepts need a spatial layer (B x C x h x w output), got shape {tuple(a.shape)}")
    return a


def pooled(model: nn.Module, root: nn.Module, name: str, x: torch.Tensor) -> np.ndarray:
    """B x C: the layer's output averaged over positions."""
    return layer_output(model, root, name, x).mean((2, 3)).cpu().numpy()


def layer_and_grad(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: int):
    """(A, dS_target/dA), both B x C x h x w, float32 numpy."""
    with eval_mode(model), frozen_params(model), torch.enable_grad(), \
            capture_outputs({"l": layer}, detach=False, clone=False) as store:
        z = model(x.detach().clone().requires_grad_(True))
        a = store["l"]
        (g,) = torch.autograd.grad(z[:, target].sum(), a)
    return a.detach().float().cpu().numpy(), g.detach().float().cpu().numpy()


@dataclass
class Concepts:
    """NMF of one class's crop activations."""

    basis: np.ndarray  # k x C (W), rows scaled to unit L2 norm (U scaled to match)
    coeffs: np.ndarray  # crops x k (U)
    error: float  # relative reconstruction error |A - UW| / |A|
    nmf: Any  # the fitted sklearn NMF (for transform)


def factorise(acts: np.ndarray, k: int, seed: int) -> Concepts:
    """``acts ~ U W`` with k concepts (scikit-learn NMF, nndsvda init, seeded)."""
    from sklearn.decomposition import NMF

    a = np.maximum(np.asarray(acts, dtype=np.float64), 0.0)
    k = max(1, min(k, a.shape[0], a.shape[1]))
    nmf = NMF(n_components=k, init="nndsvda", random_state=seed, max_iter=400, tol=1e-4)
    with warnings.catch_warnings():  # non-convergence shows in the reported reconstruction error instead
        warnings.simplefilter("ignore", category=UserWarning)
        u = nmf.fit_transform(a)
    w = nmf.components_
    err = float(np.linalg.norm(a - u @ w) / max(float(np.linalg.norm(a)), 1e-12))
    norm = np.maximum(np.linalg.norm(w, axis=1), 1e-12)
    return Concepts(w / norm[:, None], u * norm[None, :], err, nmf)


def project(c: Concepts, acts: np.ndarray) -> np.ndarray:
    """Non-negative coefficients of rows of ``acts`` (n x C) on the fitted basis (n x k, unit-norm basis scale)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        u = c.nmf.transform(np.maximum(np.asarray(acts, dtype=np.float64), 0.0))
    return u * np.maximum(np.linalg.norm(c.nmf.components_, axis=1), 1e-12)[None, :]


def importance_and_maps(c: Concepts, a: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient x coefficient per image and concept (B x k) and the concept heatmaps (B x k x h x w).

    ``a``, ``g``: the layer's output and the class score's gradient there (B x C x h x w)."""
    b, ch, h, w = a.shape
    pos = a.transpose(0, 2, 3, 1).reshape(-1, ch)
    u = project(c, pos)  # (B h w) x k
    du = g.transpose(0, 2, 3, 1).reshape(-1, ch) @ c.basis.T  # dS/dU = dS/dA W^T
    imp = (u * du).reshape(b, h * w, -1).sum(1)
    maps = u.reshape(b, h, w, -1).transpose(0, 3, 1, 2)
    return imp, maps


def top_crops(coeffs: np.ndarray, m: int) -> np.ndarray:
    """k x m' indices of the crops with the largest coefficient per concept (ties: lower index)."""
    m = min(m, len(coeffs))
    return np.stack([np.lexsort((np.arange(len(coeffs)), -coeffs[:, j]))[:m] for j in range(coeffs.shape[1])])


def _cos(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x @ x.T


def crop_similarity(acts: np.ndarray, tops: np.ndarray) -> tuple[float, float]:
    """(mean cosine similarity of activations between top crops of the same concept, between top crops of different
    concepts). A crop shared by two concepts' top lists counts for both."""
    k, m = tops.shape
    s = _cos(acts[tops.reshape(-1)])
    owner = np.repeat(np.arange(k), m)
    same = owner[:, None] == owner[None, :]
    off = ~np.eye(len(owner), dtype=bool)
    within = float(s[same & off].mean()) if (same & off).any() else float("nan")
    across = float(s[~same].mean()) if (~same).any() else float("nan")
    return within, across


def shared_groups(bases: list[np.ndarray], threshold: float) -> tuple[list[list[tuple[int, int]]], np.ndarray]:
    """Groups of concepts of different classes (at most one per class) whose basis vectors ALL have pairwise cosine
    >= ``threshold`` (complete linkage, merged greedily from the most similar pair down); only groups of >= 2
    classes. Returns (groups of (class position, concept), the full cosine matrix over the concatenated bases)."""
    owner = [(ci, j) for ci, b in enumerate(bases) for j in range(len(b))]
    if not owner:
        return [], np.zeros((0, 0))
    s = _cos(np.concatenate(bases))
    group = {i: {i} for i in range(len(owner))}  # representative -> members
    where = list(range(len(owner)))
    iu, ju = np.triu_indices(len(owner), 1)
    cand = [(float(s[i, j]), int(i), int(j)) for i, j in zip(iu, ju)
            if owner[i][0] != owner[j][0] and s[i, j] >= threshold]
    for _, i, j in sorted(cand, key=lambda t: (-t[0], t[1], t[2])):
        gi, gj = where[i], where[j]
        if gi == gj:
            continue
        a, b = group[gi], group[gj]
        if {owner[m][0] for m in a} & {owner[m][0] for m in b}:
            continue
        if all(s[m, q] >= threshold for m in a for q in b):
            group[gi] = a | b
            for q in b:
                where[q] = gi
            del group[gj]
    out = [sorted(owner[m] for m in g) for g in group.values() if len(g) >= 2]
    return sorted(out), s
