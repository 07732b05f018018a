"""The faithfulness section's scores on tensors: every map of every method scored by deletion and insertion
(Petsiuk et al. 2018), MuFidelity (Bhatt et al. 2020) and ROAD (Rong et al. 2022) as the functions of
:mod:`reportgen.attribution.faithfulness` score them, with the perturbed copies of all methods in one stream of full
batches (:func:`run_stream`, forward only, under ``torch.inference_mode()``):

* the copies every method shares are run once per image: the image itself (deletion's first step, insertion's last,
  MuFidelity's reference), the fill (deletion's last step) and the blurred start (insertion's first);
* the inner deletion and insertion steps of every method (:func:`~reportgen.attribution.faithfulness.blend_copies`);
  each method keeps its own seeded tie order (stream ``faithfulness/ties/<method>``), so the curves are those
  :func:`deletion_curve` / :func:`insertion_curve` give method by method;
* MuFidelity draws the same subsets for every method (stream ``faithfulness/subsets``), so the perturbed copies do
  not depend on the map: one set of passes, and each map's sums are correlated with the same score drops;
* ROAD's copies, imputed per method (its own noise stream) as the stream reaches them.
Not a technique (leading underscore).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..attribution import faithfulness as FM
from ..inspection.hooks import eval_mode
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


@dataclass
class Part:
    """``n`` perturbed copies of one kind: ``make(positions)`` gives the copies at those positions (0..n-1, asked
    for in increasing order, each once) and their classes."""

    n: int
    make: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def run_stream(model: torch.nn.Module, parts: list[Part], batch: int,
               progress: Callable[[list[range], int], Iterable[range]] | None = None) -> list[torch.Tensor]:
    """The class probability of every copy of every part, all parts' copies in one stream of full batches of at
    most ``batch`` (:func:`~reportgen.attribution.faithfulness.chunks`: near-equal sizes, one partial batch at
    most), under ``torch.inference_mode()``; one float32 tensor per part."""
    edges = np.cumsum([0] + [p.n for p in parts])
    out = torch.empty(int(edges[-1]), dtype=torch.float32)
    dev = next((q.device for q in model.parameters()), torch.device("cpu"))
    with eval_mode(model), torch.inference_mode():
        batches = FM.chunks(len(out), batch)
        for r in progress(batches, len(batches)) if progress is not None else batches:
            xs, ts = [], []
            for j, p in enumerate(parts):
                lo, hi = max(r.start, int(edges[j])), min(r.stop, int(edges[j + 1]))
                if lo < hi:
                    x, t = p.make(torch.arange(lo - int(edges[j]), hi - int(edges[j]), device=dev))
                    xs.append(x)
                    ts.append(t)
            out[r.start:r.stop] = FM.class_scores(model, torch.cat(xs), torch.cat(ts)).cpu()
    return [out[int(a):int(b)] for a, b in zip(edges[:-1], edges[1:])]


def _blend_part(ranks: list[torch.Tensor], base: torch.Tensor, src: torch.Tensor, inner: torch.Tensor,
                t: torch.Tensor, patch: int) -> Part:
    """Every method's copies at the ``inner`` step counts: ``base`` with its first units (each method's ``ranks``)
    from ``src`` -- method-major, then image, then step."""
    k = len(ranks)
    b, s, r, tk = torch.cat([base] * k), torch.cat([src] * k), torch.cat(ranks), t.repeat(k)
    return Part(len(r) * len(inner),
                lambda p: (FM.blend_copies(b, s, r, inner, p, patch), tk[p // max(1, len(inner))]))


def _road_part(ctx: Ctx, x: torch.Tensor, t: torch.Tensor, maps: dict[str, torch.Tensor], s: Setup) -> Part:
    """ROAD's copies, method by method, MoRF then LeRF (each method's noise stream drawn in that order), imputed
    as the stream reaches them (one method and order at a time in memory)."""
    r, nf = s.road_n, len(s.road_fractions)

    def copies():
        for m, mt in maps.items():
            rng = ctx.rng(f"faithfulness/road/{m}")
            for order in ("morf", "lerf"):
                yield from FM.road_copies(x[:r], mt[:r], s.road_fractions, order, s.road_noise, rng,  # type: ignore[arg-type]
                                          ctx.generator(f"faithfulness/ties/{m}"))

    it, tr = copies(), t[:r].repeat_interleave(nf).repeat(2 * len(maps))
    return Part(len(tr), lambda p: (torch.stack([next(it) for _ in range(len(p))]), tr[p]))


def score_maps(ctx: Ctx, x: torch.Tensor, t: np.ndarray, maps: dict[str, np.ndarray], s: Setup) -> Scores:
    """Every method's scores on its maps (B x H x W numpy per method), from one stream of perturbed copies: the
    three copies every method shares once per image (the image: deletion's first step, insertion's last and
    MuFidelity's reference; the fill: deletion's last; the blurred start: insertion's first), then each method's
    inner deletion and insertion steps, the MuFidelity subsets (the same for every method) and ROAD's copies."""
    mt = {m: _tensor(v, x.device) for m, v in maps.items()}
    names, n = list(mt), len(x)
    tt = torch.as_tensor(np.asarray(t, dtype=np.int64), device=x.device)
    ranks = [FM.ranks(mt[m], s.patch, ctx.generator(f"faithfulness/ties/{m}")) for m in names]
    counts = FM.step_counts(ranks[0][0].numel(), s.steps)
    inner = torch.as_tensor(counts[1:-1], device=x.device)
    grid = tuple(FM.unit_scores(mt[names[0]][:1], s.patch).shape[1:])
    subsets = FM.random_subsets(n, s.runs, int(np.prod(grid)), s.subset,
                                ctx.generator("faithfulness/subsets")).to(x.device)
    ends, t3 = torch.cat([x, s.fill.expand_as(x), s.start]), tt.repeat(3)
    parts = [Part(3 * n, lambda p: (ends[p], t3[p])),
             _blend_part(ranks, x, s.fill.expand_as(x), inner, tt, s.patch),
             _blend_part(ranks, s.start, x, inner, tt, s.patch),
             Part(n * s.runs, lambda p: (FM.subset_copies(x, s.fill, subsets, p, grid, s.patch), tt[p // s.runs]))]
    if s.road_n:
        parts.append(_road_part(ctx, x, tt, mt, s))
    got = run_stream(s.model, parts, s.batch, lambda it, k: ctx.progress(it, "Faithfulness: perturbed copies", total=k))
    return _assemble(names, mt, got, counts, subsets, s, n)


def _assemble(names: list[str], mt: dict[str, torch.Tensor], got: list[torch.Tensor], counts: np.ndarray,
              subsets: torch.Tensor, s: Setup, n: int) -> Scores:
    """The stream's probabilities (:func:`score_maps`'s parts, in order) as each method's scores."""
    out = Scores(counts / counts[-1])
    px, pfill, pstart = got[0][:n, None], got[0][n:2 * n, None], got[0][2 * n:, None]
    steps = len(counts) - 2
    dele, ins = got[1].view(len(names), n, steps), got[2].view(len(names), n, steps)
    drops = (px - got[3].view(n, s.runs)).double().numpy()  # float32 differences, as faithfulness_correlation's
    road = got[4].view(len(names), 2, s.road_n, -1).numpy() if s.road_n else None
    for j, m in enumerate(names):
        d = FM.Curve(out.fractions, torch.cat([px, dele[j], pfill], 1).numpy())
        i = FM.Curve(out.fractions, torch.cat([pstart, ins[j], px], 1).numpy())
        out.deletion[m], out.insertion[m] = d.auc, i.auc
        out.curves[m] = {"deletion": [round(float(v), 4) for v in d.scores.mean(0)],
                         "insertion": [round(float(v), 4) for v in i.scores.mean(0)]}
        out.mufidelity[m] = FM.subset_correlation(mt[m], subsets, drops, s.patch).corr
        if road is not None:
            out.road_morf[m], out.road_lerf[m] = road[j, 0].mean(1), road[j, 1].mean(1)
    return out


__all__ = ["Part", "Scores", "Setup", "run_stream", "score_maps"]
