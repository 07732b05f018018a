"""Faithfulness of attribution maps on tensors: does removing what a map calls important hurt the model?

Functions of ``(model, x, target, maps)``, no RunContext: ``model`` maps B x C x H x W pixels to logits, ``maps``
is B x H x W (higher = more important). The perturbed copies of a batch are built as one tensor operation and
run ``batch`` at a time (images and steps mixed) under ``torch.inference_mode()``.

* :func:`deletion_curve` / :func:`insertion_curve` -- Petsiuk, Das & Saenko (BMVC 2018, RISE): the class score
  as the top-ranked pixels (or ``patch`` x ``patch`` squares) are replaced by a fill (deletion: a faithful map
  makes it fall fast, low AUC) or restored onto a blurred copy (insertion: it rises fast, high AUC);
  ``AUC = trapz(score, fraction removed/inserted)``.
* :func:`faithfulness_correlation` -- Bhatt, Weller & Moura (IJCAI 2020), "MuFidelity":
  ``corr_S( sum_{i in S} a_i , f(x) - f(x with S set to a baseline) )`` over random seeded subsets ``S``.
* :func:`region_perturbation` -- Samek et al. (IEEE TNNLS 2017): squares of a grid, most relevant first, set to a
  fill one more at a time; ``AOPC = mean_k (f(x) - f(x with the first k squares filled))`` (higher = more faithful).
* :func:`road_curve` -- Rong et al. (ICML 2022), ROAD: a fraction of the pixels, most- (MoRF) or least-relevant
  first (LeRF), is removed by noisy linear imputation (:mod:`._imputation`), so the shape of the removed set
  does not itself tell the model the class; accuracy and probability per fraction.

Ties in a map (e.g. a Grad-CAM zero region) are broken by a seeded random order, not by pixel position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..device import fast_layout
from ..inspection.hooks import eval_mode
from ._imputation import noisy_linear_imputation
from .gradients import Target, _targets

Fill = Literal["mean", "blur", "black"]
Output = Literal["prob", "logit"]
Unit = Literal["pixel", "value"]  # faithfulness_correlation's unit: a pixel (or patch) or one value
UNITS: tuple[Unit, ...] = get_args(Unit)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (std ``sigma`` px, reflect padding) of a B x C x H x W batch; the kernel radius
    ``ceil(3 sigma)`` is capped to fit the image."""
    r = int(min(np.ceil(3 * sigma), min(x.shape[-2:]) - 1))
    if r < 1:
        return x.clone()
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / float(sigma)) ** 2)
    k = (k / k.sum()).to(x.device, x.dtype)
    c = x.shape[1]
    y = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def fill_image(x: torch.Tensor, kind: Fill | float | torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """The replacement image: ``mean`` (each image's own mean colour), ``blur`` (Gaussian, ``sigma`` px, default
    side / 16), ``black``, a value, or a tensor broadcastable to ``x``."""
    if isinstance(kind, torch.Tensor):
        return kind.to(x.device, x.dtype).expand_as(x)
    if isinstance(kind, (int, float)):
        return torch.full_like(x, float(kind))
    if kind == "mean":
        return x.mean((2, 3), keepdim=True).expand_as(x)
    if kind == "blur":
        return blur(x, sigma if sigma is not None else max(1.0, x.shape[-1] / 16))
    if kind == "black":
        return torch.zeros_like(x)
    raise ValueError(f"unknown fill {kind!r}; choose mean, blur or black")


def unit_scores(maps: torch.Tensor, patch: int = 1) -> torch.Tensor:
    """B x H x W -> B x h x w: each ``patch`` x ``patch`` square's summed attribution (h = ceil(H / patch))."""
    m = maps.float()
    if patch <= 1:
        return m
    return F.avg_pool2d(m[:, None], patch, patch, ceil_mode=True, divisor_override=1)[:, 0]


def ranks(maps: torch.Tensor, patch: int = 1, generator: torch.Generator | None = None,
          descending: bool = True) -> torch.Tensor:
    """B x h x w: the position of each unit (pixel or patch) in the order of attribution, 0 = first removed
    (the largest value when ``descending``); ties in a seeded random order."""
    return order_ranks(unit_scores(maps, patch), generator, descending)


def order_ranks(s: torch.Tensor, generator: torch.Generator | None = None, descending: bool = True) -> torch.Tensor:
    """B x h x w unit scores -> their ranks (0 = first), ties in a seeded random order (positional without one)."""
    b, h, w = s.shape
    flat = s.reshape(b, -1).cpu()
    perm = torch.randperm(h * w, generator=generator) if generator is not None else torch.arange(h * w)
    order = perm[torch.sort(flat[:, perm], dim=1, descending=descending, stable=True).indices]
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w).expand(b, -1).contiguous())
    return rank.view(b, h, w).to(s.device)


def _pixels(units: torch.Tensor, patch: int, size: tuple[int, int], offset: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """n x h x w unit mask -> n x H x W pixel mask (the unit grid starts ``offset`` px above / left of the image)."""
    if patch > 1:
        units = units.repeat_interleave(patch, 1).repeat_interleave(patch, 2)
    return units[:, offset[0]:offset[0] + size[0], offset[1]:offset[1] + size[1]]


def class_scores(model: nn.Module, x: torch.Tensor, t: torch.Tensor, output: Output = "prob") -> torch.Tensor:
    """The score of class ``t[b]`` for each copy ``x[b]`` (softmax probability or logit), one forward pass."""
    z = model(fast_layout(x)).float()
    if output == "prob":
        z = torch.softmax(z, 1)
    return z.gather(1, t[:, None])[:, 0]


@dataclass
class Curve:
    """Scores of the target class (``scores``, B x S+1) at each fraction of the image changed (``fractions``)."""

    fractions: np.ndarray
    scores: np.ndarray

    @property
    def auc(self) -> np.ndarray:
        """Per image: ``trapz(scores, fractions)``."""
        return np.trapezoid(self.scores, self.fractions, axis=1)


def step_counts(n_units: int, steps: int) -> np.ndarray:
    """Units changed after each of ``steps`` equal steps, starting at 0 and ending at all of them."""
    return np.round(np.linspace(0, n_units, max(1, int(steps)) + 1)).astype(np.int64)


def chunks(total: int, batch: int) -> list[range]:
    """``range(total)`` cut into the fewest batches of at most ``batch``, of near-equal size (a 100 / 64 split runs
    as 50 + 50, not 64 + 36: the same passes, less peak memory and one batch shape)."""
    k = max(1, -(-total // max(1, int(batch))))
    edges = np.linspace(0, total, k + 1).round().astype(np.int64)
    return [range(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]


def blend_curve(model: nn.Module, base: torch.Tensor, src: torch.Tensor, rank: torch.Tensor,
                counts: Sequence[int] | np.ndarray, target: Target, patch: int = 1, batch: int = 64,
                output: Output = "prob", offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """B x S: the score of copy (b, s) = ``base[b]`` with its first ``counts[s]`` units (``rank`` order; the unit
    grid starts ``offset`` px above / left of the image) from ``src[b]``; all B x S copies in batches of ``batch``."""
    n = len(base)
    cnt = torch.as_tensor(np.asarray(counts), device=base.device)
    t = _targets(target, n, base.device)
    out = torch.empty(n * len(cnt), dtype=torch.float32)
    with eval_mode(model), torch.inference_mode():
        for r in chunks(len(out), batch):
            pair = torch.arange(r.start, r.stop, device=base.device)
            bi = pair // len(cnt)
            out[r.start:r.stop] = class_scores(model, blend_copies(base, src, rank, cnt, pair, patch, offset),
                                               t[bi], output).cpu()
    return out.view(n, len(cnt)).numpy()


def blend_copies(base: torch.Tensor, src: torch.Tensor, rank: torch.Tensor, cnt: torch.Tensor, pair: torch.Tensor,
                 patch: int = 1, offset: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Copies ``pair`` (flat index ``b * len(cnt) + s``) of :func:`blend_curve`: ``base[b]`` with its first
    ``cnt[s]`` units (``rank`` order) from ``src[b]``."""
    bi, si = pair // len(cnt), pair % len(cnt)
    m = _pixels(rank[bi] < cnt[si].view(-1, 1, 1), patch, (base.shape[-2], base.shape[-1]), offset)[:, None]
    return torch.where(m, src[bi], base[bi])


def deletion_curve(model: nn.Module, x: torch.Tensor, target: Target, maps: torch.Tensor, steps: int = 32,
                   fill: Fill | float | torch.Tensor = "mean", patch: int = 1, batch: int = 64, output: Output = "prob",
                   generator: torch.Generator | None = None) -> Curve:
    """Petsiuk et al. (2018): the score as the most important units are replaced by ``fill`` (see
    :func:`fill_image`), ``steps`` equal steps from none to all. Lower AUC = more faithful."""
    rank = ranks(maps, patch, generator)
    counts = step_counts(rank[0].numel(), steps)
    s = blend_curve(model, x, fill_image(x, fill), rank, counts, target, patch, batch, output)
    return Curve(counts / counts[-1], s)


def insertion_curve(model: nn.Module, x: torch.Tensor, target: Target, maps: torch.Tensor, steps: int = 32,
                    start: Fill | float | torch.Tensor = "blur", patch: int = 1, batch: int = 64,
                    output: Output = "prob", generator: torch.Generator | None = None) -> Curve:
    """Petsiuk et al. (2018): the score as the most important units of ``x`` are put back onto ``start`` (a
    blurred copy by default). Higher AUC = more faithful."""
    rank = ranks(maps, patch, generator)
    counts = step_counts(rank[0].numel(), steps)
    s = blend_curve(model, fill_image(x, start), x, rank, counts, target, patch, batch, output)
    return Curve(counts / counts[-1], s)


def grid_offset(size: int, patch: int) -> int:
    """Pixels of padding above / left of a ``patch`` grid centred on a side of ``size`` px: the shortfall
    ``(-size) mod patch`` is split floor-first (as Quantus's ``get_padding_size``)."""
    return ((-size) % patch) // 2


def region_scores(maps: torch.Tensor, patch: int) -> torch.Tensor:
    """B x h x w: each square's summed attribution on a ``patch`` grid centred on the image (zero-padded)."""
    hh, ww = maps.shape[-2:]
    oy, ox = grid_offset(hh, patch), grid_offset(ww, patch)
    m = F.pad(maps.float()[:, None], (ox, (-ww) % patch - ox, oy, (-hh) % patch - oy))
    return F.avg_pool2d(m, patch, patch, divisor_override=1)[:, 0]


@dataclass
class RegionCurve:
    """Region perturbation per image: the target's score after 0..L regions were filled (``scores``, B x L+1) and
    the drops ``scores[:, 0] - scores[:, k]`` for k = 1..L (``drops``, B x L: Quantus's ``RegionPerturbation``)."""

    scores: np.ndarray
    drops: np.ndarray
    order: str

    @property
    def aopc(self) -> np.ndarray:
        """Per image, Samek et al.'s ``AOPC = 1/(L+1) sum_{k=0..L} (f(x) - f(x^(k)))`` (MoRF: higher = more
        faithful, the score falls fast; LeRF: lower)."""
        return self.drops.sum(1) / (self.drops.shape[1] + 1)


def region_perturbation(model: nn.Module, x: torch.Tensor, target: Target, maps: torch.Tensor, patch: int = 8,
                        regions: int = 100, fill: Fill | float | torch.Tensor = 0.0,
                        order: Literal["morf", "lerf"] = "morf", batch: int = 64, output: Output = "prob",
                        generator: torch.Generator | None = None) -> RegionCurve:
    """Samek, Binder, Montavon, Lapuschkin & Mueller (IEEE TNNLS 2017): the ``patch`` x ``patch`` squares of a grid
    centred on the image are ranked by summed attribution (most relevant first for ``morf``) and the first
    ``k = 1..regions`` filled with ``fill``; ``AOPC = mean_k (f(x) - f(x^(k)))``. A square at the edge of a grid
    that overhangs the image fills only its pixels inside it. The fill is computed on the image."""
    hh, ww = x.shape[-2:]
    rank = order_ranks(region_scores(maps, patch), generator, descending=(order == "morf"))
    counts = np.arange(min(int(regions), rank[0].numel()) + 1)
    s = blend_curve(model, x, fill_image(x, fill), rank, counts, target, patch, batch, output,
                    (grid_offset(hh, patch), grid_offset(ww, patch)))
    return RegionCurve(s, s[:, :1] - s[:, 1:], order)


@dataclass
class FaithfulnessCorrelation:
    """Per image: Pearson ``corr`` (0 where either side is constant, ``defined`` False), and per subset the
    attribution sum (``sums``, B x R) and the score drop (``drops``, B x R)."""

    corr: np.ndarray
    defined: np.ndarray
    sums: np.ndarray
    drops: np.ndarray


def pearson(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise Pearson correlation and whether it is defined (neither row constant); undefined -> 0. A row is
    constant when its spread about the mean is below 1e-12 of its largest magnitude (rounding of the mean), so the
    verdict, like the correlation, does not change when either row is scaled."""
    def centred(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        top = np.abs(r).max(1, keepdims=True)
        r = r / np.where(top > 0, top, 1.0)  # each row at unit magnitude: no overflow or underflow below
        r = r - r.mean(1, keepdims=True)
        return r, np.sqrt((r * r).sum(1))

    (ac, na), (bc, nb) = centred(np.asarray(a, np.float64)), centred(np.asarray(b, np.float64))
    ok = (na > 1e-12 * np.sqrt(a.shape[1])) & (nb > 1e-12 * np.sqrt(b.shape[1]))
    return np.where(ok, (ac * bc).sum(1) / np.where(ok, na * nb, 1.0), 0.0), ok


def random_subsets(n: int, runs: int, n_units: int, size: int, generator: torch.Generator | None) -> torch.Tensor:
    """n x runs x size distinct unit indices per subset (uniform without replacement, seeded)."""
    keys = torch.rand(n * runs, n_units, generator=generator)
    return keys.argsort(1)[:, :size].view(n, runs, size)


def faithfulness_correlation(model: nn.Module, x: torch.Tensor, target: Target, maps: torch.Tensor,
                             subset_size: int, runs: int = 64, baseline: Fill | float | torch.Tensor = "mean",
                             patch: int = 1, unit: Unit = "pixel",
                             subsets: torch.Tensor | None = None, generator: torch.Generator | None = None,
                             batch: int = 64, output: Output = "prob") -> FaithfulnessCorrelation:
    """Bhatt et al. (2020): ``corr_S(sum_{i in S} a_i, f(x) - f(x_{S <- baseline}))`` over ``runs`` subsets of
    ``subset_size`` units. ``unit``: ``pixel`` (a pixel or ``patch`` square, all channels; its attribution is the
    map's sum over it) or ``value`` (one channel of one pixel, indexing C x H x W flat, the map broadcast over
    channels). ``subsets`` (B x R x S) replaces the seeded draw."""
    n, c = x.shape[:2]
    t = _targets(target, n, x.device)
    base = fill_image(x, baseline)
    scores, grid = _unit_values(maps, c, patch, unit)
    if subsets is None:
        subsets = random_subsets(n, runs, scores.shape[1], subset_size, generator)
    subsets = subsets.to(x.device)
    r = subsets.shape[1]
    drops = torch.empty(n * r, dtype=torch.float32)
    with eval_mode(model), torch.inference_mode():
        full = class_scores(model, x, t, output).cpu()
        for rg in chunks(n * r, batch):
            lo, pair = rg.start, torch.arange(rg.start, rg.stop, device=x.device)
            bi = pair // r
            copies = subset_copies(x, base, subsets, pair, grid, patch, unit)
            drops[lo:lo + len(pair)] = full[bi.cpu()] - class_scores(model, copies, t[bi], output).cpu()
    return subset_correlation(maps, subsets, drops.view(n, r).double().numpy(), patch, unit, c)


def subset_copies(x: torch.Tensor, base: torch.Tensor, subsets: torch.Tensor, pair: torch.Tensor,
                  grid: tuple[int, ...], patch: int = 1, unit: Unit = "pixel") -> torch.Tensor:
    """Copies ``pair`` (flat index ``b * R + r``) of :func:`faithfulness_correlation`: ``x[b]`` with the units of
    subset ``subsets[b, r]`` (B x R x S, on the unit ``grid``) taken from ``base[b]``."""
    _check_unit(unit)
    r = subsets.shape[1]
    bi = pair // r
    m = torch.zeros(len(pair), int(np.prod(grid)), dtype=torch.bool, device=x.device)
    m.scatter_(1, subsets.reshape(-1, subsets.shape[2])[pair], True)
    m = m.view(len(pair), *grid)
    m = m if unit == "value" else _pixels(m, patch, (x.shape[-2], x.shape[-1]))[:, None]
    return torch.where(m, base[bi], x[bi])


def _check_unit(unit: str) -> None:
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, not {unit!r}")


def _unit_values(maps: torch.Tensor, channels: int, patch: int, unit: str) -> tuple[torch.Tensor, tuple[int, ...]]:
    """B x units: the attribution of each unit (:func:`faithfulness_correlation`'s ``unit``) and the unit grid."""
    _check_unit(unit)
    if unit == "value":
        n, h, w = maps.shape
        return maps.float()[:, None].expand(n, channels, h, w).reshape(n, -1), (channels, h, w)
    s = unit_scores(maps, patch)
    return s.reshape(len(s), -1), tuple(s.shape[1:])


def subset_correlation(maps: torch.Tensor, subsets: torch.Tensor, drops: np.ndarray, patch: int = 1,
                       unit: Unit = "pixel", channels: int = 3) -> FaithfulnessCorrelation:
    """MuFidelity of ``maps`` from score drops already measured for ``subsets`` (B x R): the perturbed copies do
    not depend on the map, so one set of passes serves every map scored on the same subsets."""
    n, r = subsets.shape[:2]
    scores, _ = _unit_values(maps.to(subsets.device), channels, patch, unit)
    sums = scores.gather(1, subsets.reshape(n, -1)).view(n, r, -1).sum(2).double().cpu().numpy()
    corr, ok = pearson(sums, drops)
    return FaithfulnessCorrelation(corr, ok, sums, drops)


@dataclass
class RoadCurve:
    """ROAD per image (B x F): the probability of the target and whether it is still the prediction, after the
    ``fractions`` of the pixels were imputed, in ``order``."""

    fractions: np.ndarray
    probs: np.ndarray
    correct: np.ndarray
    order: str

    @property
    def area(self) -> np.ndarray:
        """Per image: the mean probability over the fractions (MoRF: lower = more faithful; LeRF: higher)."""
        return self.probs.mean(1)


def removed_count(n_units: int, fraction: float) -> int:
    """Units removed at ``fraction`` (floored, as Quantus's ``int(n * percent / 100)``)."""
    return int(np.floor(n_units * float(fraction) + 1e-9))


def road_curve(model: nn.Module, x: torch.Tensor, target: Target, maps: torch.Tensor,
               fractions: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9), order: Literal["morf", "lerf"] = "morf",
               noise: float = 0.01, rng: np.random.Generator | np.random.RandomState | None = None,
               batch: int = 64, generator: torch.Generator | None = None) -> RoadCurve:
    """Rong et al. (2022): for each fraction, that share of the pixels (most relevant first for ``morf``, least
    for ``lerf``) is replaced by :func:`noisy_linear_imputation` (``noise`` std, from ``rng``) and the copy
    classified. All copies of the batch are imputed first, then run ``batch`` at a time."""
    n, t = len(x), _targets(target, len(x), x.device)
    allx = road_copies(x, maps, fractions, order, noise, rng, generator)
    ti = t.repeat_interleave(len(fractions))
    probs, correct = [], []
    with eval_mode(model), torch.inference_mode():
        for rg in chunks(len(allx), batch):
            z = model(fast_layout(allx[rg.start:rg.stop])).float()
            tt = ti[rg.start:rg.stop]
            probs.append(torch.softmax(z, 1).gather(1, tt[:, None])[:, 0].cpu())
            correct.append((z.argmax(1) == tt).cpu())
    shape = (n, len(fractions))
    return RoadCurve(np.asarray(fractions, dtype=np.float64), torch.cat(probs).view(shape).numpy(),
                     torch.cat(correct).view(shape).numpy(), order)


def road_copies(x: torch.Tensor, maps: torch.Tensor, fractions: Sequence[float], order: Literal["morf", "lerf"],
                noise: float = 0.01, rng: np.random.Generator | np.random.RandomState | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`road_curve`'s imputed copies (B * F, image-major, like ``x``): for each image and fraction, that share
    of the pixels in ``order`` replaced by :func:`noisy_linear_imputation` (``rng`` drawn in that order)."""
    rank = ranks(maps, 1, generator, descending=(order == "morf")).cpu()
    xs = x.detach().float().cpu()
    copies = []
    for b in range(len(x)):
        for f in fractions:
            removed = (rank[b] < removed_count(rank[b].numel(), f)).numpy()
            copies.append(noisy_linear_imputation(xs[b].numpy(), removed, noise, rng))
    return torch.from_numpy(np.stack(copies)).to(x.device, x.dtype)


def random_map(shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """A baseline map: uniform noise (B x H x W), seeded."""
    return torch.rand(shape, generator=generator)


def centre_map(n: int, h: int, w: int, sigma: float = 0.25) -> torch.Tensor:
    """A baseline map: a fixed Gaussian at the image centre, std ``sigma`` x the side (B x H x W)."""
    yy = (torch.arange(h, dtype=torch.float32) - (h - 1) / 2) / (sigma * h)
    xx = (torch.arange(w, dtype=torch.float32) - (w - 1) / 2) / (sigma * w)
    g = torch.exp(-0.5 * (yy[:, None] ** 2 + xx[None] ** 2))
    return g.expand(n, h, w).clone()


__all__ = [
    "Curve",
    "FaithfulnessCorrelation",
    "RegionCurve",
    "RoadCurve",
    "blend_curve",
    "blur",
    "chunks",
    "centre_map",
    "class_scores",
    "blend_copies",
    "road_copies",
    "subset_copies",
    "deletion_curve",
    "faithfulness_correlation",
    "fill_image",
    "grid_offset",
    "insertion_curve",
    "noisy_linear_imputation",
    "order_ranks",
    "pearson",
    "random_map",
    "random_subsets",
    "ranks",
    "region_perturbation",
    "region_scores",
    "removed_count",
    "road_curve",
    "step_counts",
    "subset_correlation",
    "unit_scores",
]
