"""The faithfulness section's scores on tensors: every map of every method scored by deletion and insertion
(Petsiuk et al. 2018), MuFidelity (Bhatt et al. 2020) and ROAD (Rong et al. 2022) with the functions of
:mod:`reportgen.attribution.faithfulness`, the perturbed copies of all methods run together:

* deletion and insertion of all methods are one stream of blended copies (:func:`~reportgen.attribution.faithfulness.
  blend_curve`) in full batches; each method keeps its own seeded tie order (stream ``faithfulness/ties/<method>``),
  so the curves are those :func:`deletion_curve` / :func:`insertion_curve` give method by method;
* MuFidelity draws the same subsets for every method (stream ``faithfulness/subsets``), so the perturbed copies do
  not depend on the map: one set of passes, and each map's sums are correlated with the same score drops;
* ROAD's copies are imputed per method (its own noise stream), the slow part; their forwards are few.
Not a technique (leading underscore).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..attribution import faithfulness as FM
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..context import Ctx


@dataclass
class Setup:
    """What every method is scored with: unit side, blur sigma, deletion fill and insertion start images, MuFidelity
    subset size and runs, steps, ROAD images / fractions / noise, the batch and the forward-only model."""

    patch: int
    sigma: float
    fill: torch.Tensor
    start: torch.Tensor
    subset: int
    runs: int
    steps: int
    road_n: int
    road_fractions: list[float]
    road_noise: float
    batch: int
    model: torch.nn.Module


@dataclass
class Scores:
    """Per method and image: deletion and insertion AUC, MuFidelity, ROAD MoRF / LeRF areas (``road_n`` images);
    the mean curves per method; the fractions the curves are at."""

    fractions: np.ndarray
    deletion: dict[str, np.ndarray] = field(default_factory=dict)
    insertion: dict[str, np.ndarray] = field(default_factory=dict)
    mufidelity: dict[str, np.ndarray] = field(default_factory=dict)
    road_morf: dict[str, np.ndarray] = field(default_factory=dict)
    road_lerf: dict[str, np.ndarray] = field(default_factory=dict)
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def per_image(self, m: str) -> np.ndarray:
        """The ranking score per image: insertion AUC - deletion AUC."""
        return self.insertion[m] - self.deletion[m]


def _tensor(m: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32)).to(device)


def deletion_insertion(ctx: Ctx, x, t, maps: dict[str, torch.Tensor], s: Setup, out: Scores) -> None:
    """Both curves of every method from one stream of blended copies."""
    names = list(maps)
    rank = [FM.ranks(maps[m], s.patch, ctx.generator(f"faithfulness/ties/{m}")) for m in names]
    counts = FM.step_counts(rank[0][0].numel(), s.steps)
    k, n = len(names), len(x)
    base = torch.cat([x] * k + [s.start] * k)
    src = torch.cat([s.fill] * k + [x] * k)
    tt = np.tile(np.asarray(t, dtype=np.int64), 2 * k)
    scores = FM.blend_curve(s.model, base, src, torch.cat(rank + rank), counts, tt, s.patch, s.batch)
    out.fractions = counts / counts[-1]
    for j, m in enumerate(names):
        d = FM.Curve(out.fractions, scores[j * n:(j + 1) * n])
        i = FM.Curve(out.fractions, scores[(k + j) * n:(k + j + 1) * n])
        out.deletion[m], out.insertion[m] = d.auc, i.auc
        out.curves[m] = {"deletion": [round(float(v), 4) for v in d.scores.mean(0)],
                         "insertion": [round(float(v), 4) for v in i.scores.mean(0)]}


def mufidelity(ctx: Ctx, x, t, maps: dict[str, torch.Tensor], s: Setup, out: Scores) -> None:
    """MuFidelity of every method from one set of subset passes (the subsets are the same for every method)."""
    names = list(maps)
    n_units = FM.unit_scores(maps[names[0]][:1], s.patch)[0].numel()
    subsets = FM.random_subsets(len(x), s.runs, n_units, s.subset, ctx.generator("faithfulness/subsets"))
    first = FM.faithfulness_correlation(s.model, x, t, maps[names[0]], s.subset, s.runs, s.fill, s.patch,
                                        subsets=subsets, batch=s.batch)
    for m in names:
        out.mufidelity[m] = FM.subset_correlation(maps[m], subsets.to(x.device), first.drops, s.patch).corr


def road(ctx: Ctx, x, t, maps: dict[str, torch.Tensor], s: Setup, out: Scores) -> None:
    """ROAD MoRF and LeRF of every method on the first ``road_n`` images."""
    r = s.road_n
    for m, mt in maps.items():
        rng = ctx.rng(f"faithfulness/road/{m}")
        out.road_morf[m] = FM.road_curve(s.model, x[:r], t[:r], mt[:r], s.road_fractions, "morf", s.road_noise,
                                         rng, s.batch, ctx.generator(f"faithfulness/ties/{m}")).area
        out.road_lerf[m] = FM.road_curve(s.model, x[:r], t[:r], mt[:r], s.road_fractions, "lerf", s.road_noise,
                                         rng, s.batch, ctx.generator(f"faithfulness/ties/{m}")).area


def score_maps(ctx: Ctx, x: torch.Tensor, t: np.ndarray, maps: dict[str, np.ndarray], s: Setup) -> Scores:
    """Every method's scores on its maps (B x H x W numpy per method)."""
    mt = {m: _tensor(v, x.device) for m, v in maps.items()}
    out = Scores(np.zeros(0))
    parts = [deletion_insertion, mufidelity] + ([road] if s.road_n else [])
    for fn in ctx.progress(parts, "Faithfulness: deletion and insertion, MuFidelity, ROAD", total=len(parts)):
        fn(ctx, x, t, mt, s, out)
    return out


__all__ = ["Scores", "Setup", "deletion_insertion", "mufidelity", "road", "score_maps"]
