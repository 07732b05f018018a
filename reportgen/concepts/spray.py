"""Spectral relevance analysis (SpRAy, Lapuschkin et al. 2019) on numpy: cluster a class's attribution maps.

Each map is area-downsampled to ``side x side`` and scaled to sum 1 (where its evidence lies, not how much). The
affinity is self-tuning (Zelnik-Manor & Perona): ``W_ij = exp(-|m_i - m_j|^2 / (s_i s_j))``, ``s_i`` = distance of
map i to its 7th nearest map. The number of clusters is the eigengap of the normalised Laplacian
``L = I - D^-1/2 W D^-1/2`` (von Luxburg 2007): ``k = argmax_k (lambda_{k+1} - lambda_k)`` over ``k <= max_k``;
then scikit-learn's spectral clustering with that ``k`` (seeded). :func:`mass` says where a map puts its mass:
centre of mass, share in a border band, share in each corner square.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


def downsample(maps: torch.Tensor, side: int) -> np.ndarray:
    """B x h x w non-negative maps -> B x side^2 float32, area-averaged and scaled to sum 1 (a zero map: uniform)."""
    m = F.adaptive_avg_pool2d(maps.float().clamp_min(0)[:, None], side)[:, 0].flatten(1)
    s = m.sum(1, keepdim=True)
    m = torch.where(s > 1e-12, m / s.clamp_min(1e-12), torch.full_like(m, 1.0 / m.shape[1]))
    return m.cpu().numpy().astype(np.float32)


def affinity(x: np.ndarray, neighbour: int = 7) -> np.ndarray:
    """Self-tuning RBF affinity of the rows of ``x`` (n x n, zero diagonal)."""
    x = np.asarray(x, dtype=np.float64)
    sq = (x * x).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
    d = np.sqrt(d2)
    kth = min(neighbour, len(x) - 1)
    s = np.sort(d, axis=1)[:, kth]
    s = np.maximum(s, max(float(np.median(s)), 1e-9) * 1e-3)
    w = np.exp(-d2 / (s[:, None] * s[None, :]))
    np.fill_diagonal(w, 0.0)
    return w


def eigengap(w: np.ndarray, max_k: int) -> tuple[int, np.ndarray]:
    """(k, the smallest max_k + 1 eigenvalues of the normalised Laplacian of ``w``)."""
    deg = np.maximum(w.sum(1), 1e-12)
    dm = 1.0 / np.sqrt(deg)
    lap = np.eye(len(w)) - dm[:, None] * w * dm[None, :]
    ev = np.clip(np.linalg.eigvalsh(lap), 0.0, 2.0)[: max_k + 1]
    if len(ev) < 2:
        return 1, ev
    gaps = np.diff(ev)
    return int(np.argmax(gaps[:max_k]) + 1), ev


@dataclass
class Clustering:
    labels: np.ndarray  # n, cluster per map (0..k-1, largest cluster first)
    k: int
    eigenvalues: np.ndarray


def spray(x: np.ndarray, max_k: int, seed: int) -> Clustering:
    """Cluster the downsampled maps ``x`` (n x side^2); k by the eigengap. Cluster ids ordered by size, descending."""
    n = len(x)
    if n < 4:
        return Clustering(np.zeros(n, dtype=np.int64), 1, np.zeros(0))
    w = affinity(x)
    k, ev = eigengap(w, min(max_k, n - 1))
    if k == 1:
        return Clustering(np.zeros(n, dtype=np.int64), 1, ev)
    from sklearn.cluster import SpectralClustering

    lab = SpectralClustering(n_clusters=k, affinity="precomputed", random_state=seed,
                             assign_labels="cluster_qr").fit_predict(w + 1e-12)
    sizes = np.bincount(lab, minlength=k)
    order = np.lexsort((np.arange(k), -sizes))
    remap = np.empty(k, dtype=np.int64)
    remap[order] = np.arange(k)
    return Clustering(remap[lab], len(np.unique(lab)), ev)


def mass(m: np.ndarray, band: float = 0.125, corner: float = 0.25) -> dict:
    """Where a square map (side x side, any non-negative scale) puts its mass: centre of mass (y, x in [0, 1]), share
    in the outer border band (width ``band`` of the side), share in each corner square (side ``corner``)."""
    m = np.maximum(np.asarray(m, dtype=np.float64), 0)
    side = m.shape[0]
    tot = max(float(m.sum()), 1e-12)
    c = (np.arange(side) + 0.5) / side
    cy, cx = float((m.sum(1) * c).sum() / tot), float((m.sum(0) * c).sum() / tot)
    b = max(1, round(band * side))
    inner = m[b:side - b, b:side - b].sum()
    q = max(1, round(corner * side))
    corners = {"top-left": m[:q, :q], "top-right": m[:q, -q:], "bottom-left": m[-q:, :q], "bottom-right": m[-q:, -q:]}
    return {"centre_of_mass": (round(cy, 3), round(cx, 3)), "border_fraction": float(1 - inner / tot),
            "corners": {k: float(v.sum() / tot) for k, v in corners.items()},
            "border_area": float(1 - (side - 2 * b) ** 2 / side ** 2), "corner_area": float(q * q / side ** 2)}


def candidate(this: dict, rest: dict) -> str | None:
    """Why a cluster's mean map (``mass`` of it) sits away from the rest of its class (``mass`` of the others' mean),
    or None. Rules: a corner holding at least 3x its area share and 0.15 more than the rest put there; or a border
    band holding at least half the mass and 0.2 more than the rest. (A distant centre of mass alone is not flagged:
    objects at different places in different images separate that way too.)"""
    name, frac = max(this["corners"].items(), key=lambda kv: kv[1])
    if frac >= 3 * this["corner_area"] and frac - rest["corners"][name] >= 0.15:
        return f"{frac:.0%} of its mass in the {name} corner (the rest of the class: {rest['corners'][name]:.0%})"
    if this["border_fraction"] >= 0.5 and this["border_fraction"] - rest["border_fraction"] >= 0.2:
        return (f"{this['border_fraction']:.0%} of its mass in the border band "
                f"(the rest of the class: {rest['border_fraction']:.0%})")
    return None
