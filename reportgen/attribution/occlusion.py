"""Occlusion sensitivity on tensors (Zeiler & Fergus 2014).

A ``window`` x ``window`` square of ``baseline`` (a value or a colour, one value per channel) is slid over
each image with step ``stride``; :func:`occlusion_grid` returns ``p_k(x with the square at (y, x))``, the
softmax probability of the target class at every position (B x ny x nx), and :func:`occlusion` the
coverage-averaged map (B x H x W): each pixel gets the mean probability over the positions whose window
covers it (the unoccluded probability where none does, i.e. stride > window). Low = that part matters.

Where the model can be traced and is proven local (:mod:`reportgen.attribution.incremental`, Nakandala et al. 2019)
the occluded copies are evaluated by exact incremental inference; otherwise (or ``incremental=False``)
all copies are built as one tensor operation and run ``batch`` at a time, mixing several images per batch.
Both give the same probabilities up to float summation order.
"""

from __future__ import annotations

from typing import Callable, Iterable, cast

import numpy as np
import torch
from torch import nn

from ..device import fast_layout
from ..inspection.hooks import eval_mode
from .incremental import IncrementalOccluder, occlusion_logits
from .gradients import Target, _targets

Progress = Callable[[Iterable, str, int], Iterable]


def window_positions(size: int, window: int, stride: int) -> list[int]:
    """Top (or left) edges of the windows: every ``stride`` pixels, plus one flush with the far edge."""
    window = min(window, size)
    pos = list(range(0, size - window + 1, max(1, stride)))
    if pos[-1] != size - window:
        pos.append(size - window)
    return pos


def _fill(baseline, c: int) -> torch.Tensor:
    b = baseline.detach().float().cpu().numpy() if isinstance(baseline, torch.Tensor) else baseline
    return torch.as_tensor(np.broadcast_to(np.asarray(b, dtype=np.float32), (c,)).copy())


def _quiet(it, _desc, _total):
    return it


def occlusion_grid(model: nn.Module, x: torch.Tensor, target: Target, window: int, stride: int,
                   baseline: float | torch.Tensor | np.ndarray = 0.5, batch: int = 64, incremental: bool = True,
                   progress: Progress | None = None, occluder: IncrementalOccluder | None = None) -> torch.Tensor:
    """``p_target(x occluded at (ys[a], xs[b]))`` per image: B x ny x nx (float32, CPU), positions from
    :func:`window_positions`. A B x K ``target`` (K classes per image) gives B x K x ny x nx from the same
    occluded passes. ``progress(iterable, description, total)`` may wrap the loops. ``occluder``: an
    :class:`IncrementalOccluder` already built for ``model`` (else one is built when ``incremental``)."""
    progress = progress or _quiet
    n, c, h, w = x.shape
    ys, xs = window_positions(h, window, stride), window_positions(w, window, stride)
    wy, wx = min(window, h), min(window, w)
    fill = _fill(baseline, c).to(x.device)
    many = torch.as_tensor(target).ndim == 2
    tgt = (torch.as_tensor(target, dtype=torch.long, device=x.device) if many
           else _targets(target, n, x.device)[:, None])  # n x K
    if len(tgt) != n:
        raise ValueError(f"got {len(tgt)} target rows for a batch of {n}")
    k_cls = tgt.shape[1]
    npos = len(ys) * len(xs)
    y_of = torch.as_tensor(ys).repeat_interleave(len(xs))
    x_of = torch.as_tensor(xs).repeat(len(ys))
    probs = torch.empty(n, npos, k_cls, dtype=torch.float32)
    occ = None if not incremental else occluder if occluder is not None else IncrementalOccluder.build(model)[0]
    with eval_mode(model), torch.inference_mode():
        if occ is not None:
            for k in progress(range(n), "Occlusion (incremental)", n):
                logits = occlusion_logits(occ, x[k:k + 1], y_of, x_of, fill, wy, wx, batch)
                probs[k] = torch.softmax(logits, 1)[:, tgt[k]].cpu()
        else:  # every (image, position) pair, streamed in batches
            flat = probs.view(-1, k_cls)
            img_of = torch.arange(n).repeat_interleave(npos)
            rows, cols = torch.arange(h, device=x.device)[None], torch.arange(w, device=x.device)[None]
            nb = (n * npos + batch - 1) // batch
            for b in progress(range(nb), "Occlusion", nb):
                sl = slice(b * batch, min(n * npos, (b + 1) * batch))
                im = img_of[sl].to(x.device)
                y0 = y_of.repeat(n)[sl].to(x.device)[:, None]
                x0 = x_of.repeat(n)[sl].to(x.device)[:, None]
                rmask = (rows >= y0) & (rows < y0 + wy)  # B x H
                cmask = (cols >= x0) & (cols < x0 + wx)  # B x W
                m = (rmask[:, :, None] & cmask[:, None, :])[:, None]  # B x 1 x H x W
                logits = model(fast_layout(torch.where(m, fill.view(1, c, 1, 1), x[im]))).float()
                flat[sl] = torch.softmax(logits, 1).gather(1, tgt[im]).cpu()
    out = probs.permute(0, 2, 1).reshape(n, k_cls, len(ys), len(xs))
    return out if many else out[:, 0]


def coverage_average(grid: torch.Tensor, size: tuple[int, int], window: int, stride: int,
                     uncovered: torch.Tensor | np.ndarray | float = 0.0) -> torch.Tensor:
    """B x ny x nx position values -> B x H x W: each pixel's mean over the windows covering it
    (``heat = R^T P C / R^T 1 C``, R and C the row/column window indicators); ``uncovered`` (per image)
    where no window covers a pixel."""
    h, w = size
    ys, xs = window_positions(h, window, stride), window_positions(w, window, stride)
    wy, wx = min(window, h), min(window, w)
    R = np.zeros((len(ys), h), dtype=np.float64)
    for i, y0 in enumerate(ys):
        R[i, y0:y0 + wy] = 1
    C = np.zeros((len(xs), w), dtype=np.float64)
    for j, x0 in enumerate(xs):
        C[j, x0:x0 + wx] = 1
    cover = R.T @ np.ones((len(ys), len(xs))) @ C
    empty = cover == 0
    cover[empty] = 1
    g = grid.detach().cpu().numpy() if isinstance(grid, torch.Tensor) else np.asarray(grid)
    u = uncovered.detach().cpu() if isinstance(uncovered, torch.Tensor) else uncovered
    fill = np.broadcast_to(np.asarray(u, dtype=np.float64), (len(g),))
    out = np.empty((len(g), h, w), dtype=np.float32)
    for k in range(len(g)):
        heat = (R.T @ g[k].astype(np.float64) @ C) / cover
        heat[empty] = fill[k]
        out[k] = heat
    return torch.from_numpy(out)


def occlusion(model: nn.Module, x: torch.Tensor, target: Target, window: int, stride: int,
              baseline: float | torch.Tensor | np.ndarray = 0.5, batch: int = 64,
              incremental: bool = True) -> torch.Tensor:
    """Zeiler & Fergus (2014): B x H x W, each pixel's mean ``p_target`` over the occluded copies covering it
    (the unoccluded probability where no window covers it)."""
    grid = occlusion_grid(model, x, target, window, stride, baseline, batch, incremental)
    with eval_mode(model), torch.inference_mode():
        p = torch.softmax(model(x).float(), 1).gather(1, _targets(target, len(x), x.device)[:, None])[:, 0]
    return coverage_average(grid, cast(tuple[int, int], tuple(x.shape[-2:])), window, stride, p.cpu())
