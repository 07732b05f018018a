"""Occlusion sensitivity (Zeiler & Fergus 2014).

A ``window`` x ``window`` square of the set's mean colour (or grey 0.5, option ``fill``) is slid over the image with step
``stride``; for each position the softmax probability ``p_k(x with the square at (y, x))`` of
the class ``k`` (true label when known, else the prediction) is recorded. The heat map assigns
each pixel the mean probability over all window positions that cover it, so it has the image's
size and is aligned with it pixel for pixel. Low probability = that part of the image matters.

All occluded copies are built as one tensor operation and evaluated ``batch_size`` at a time,
mixing windows of several images in one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..accel import fast_layout
from ..features import device_batch_size, target_classes
from ..hooks import eval_mode
from ..pictures import figure_to_png, new_figure, overlay
from ..incremental import IncrementalOccluder, occlusion_logits
from ..papers import NAKANDALA_2019, ZEILER_FERGUS_2014
from ..registry import technique
from ..report import Figure, Grid, GridItem, ImageData, Note, Section
from .saliency import show_indices

# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)
RESULTS = {
    "fill": "fill option: mean (the set's mean colour) or grey",
    "fill_rgb": "the fill colour actually used, RGB in [0, 1]",
    "window_px": "side of the square",
    "stride_px": "step between positions",
    "images[].image": "image name",
    "images[].class": "class whose probability is tracked",
    "images[].class_from_label": "the class is the true label (else the prediction)",
    "images[].p_unoccluded": "its probability without occlusion",
    "images[].p_occluded_min": "lowest probability over the window positions",
    "images[].p_occluded_max": "highest probability over the window positions (above p_unoccluded: covering raised it)",
}

MIN_SPAN = 0.05  # overlay colour scale spans at least this much probability


def window_positions(size: int, window: int, stride: int) -> list[int]:
    """Top (or left) edges of the windows: every ``stride`` pixels, plus one flush with the far edge."""
    window = min(window, size)
    pos = list(range(0, size - window + 1, max(1, stride)))
    if pos[-1] != size - window:
        pos.append(size - window)
    return pos


def resolve_window(size: int, window: int | None, stride: int | None) -> tuple[int, int]:
    w = int(window) if window else max(2, int(round(size / 7)))
    w = max(1, min(w, size))
    s = int(stride) if stride else max(1, w // 2)
    return w, s


@dataclass
class OcclusionResult:
    index: int
    heat: np.ndarray  # H x W: mean probability of the class over the windows covering each pixel
    # (the unoccluded probability where no window covers a pixel, i.e. stride > window)
    grid: np.ndarray  # ny x nx: probability with the window at each position
    base: float  # probability without occlusion
    target: int
    from_label: bool
    pred: int


def occlusion_maps(ctx, indices: list[int], window: int, stride: int, batch_size: int = 64,
                   fill: np.ndarray | float = 0.5, classes: list[int] | None = None,
                   incremental: bool = True) -> list[OcclusionResult]:
    """Occlusion probability maps of ``indices`` (see the module docstring); batched and vectorised.

    ``incremental``: compute the occluded copies by exact incremental inference (reportgen.incremental,
    Nakandala et al. 2019) where the model allows it, else full forward passes; same maps."""
    model = ctx.model
    imgs = ctx.images.batch(list(indices)).float()  # n x C x H x W in [0, 1] (CPU)
    n, c, h, w = imgs.shape
    ys, xs = window_positions(h, window, stride), window_positions(w, window, stride)
    wy, wx = min(window, h), min(window, w)
    fill_t = torch.as_tensor(np.broadcast_to(np.asarray(fill, dtype=np.float32), (c,)).copy()).view(1, c, 1, 1)
    with eval_mode(model), torch.inference_mode():
        base_logits = torch.cat([ctx.pixel_model(ctx.to_device(imgs[s:s + batch_size])).float().cpu()
                                 for s in range(0, n, batch_size)])
        preds = base_logits.argmax(1).numpy()
        if classes is None:
            tgt, known = target_classes(ctx, list(indices), preds)
        else:
            tgt, known = np.asarray(classes, dtype=np.int64), np.zeros(n, dtype=bool)
        base = torch.softmax(base_logits, 1)[torch.arange(n), torch.as_tensor(tgt)].numpy()
        # every (image, y, x) triple, streamed in batches
        img_of = np.repeat(np.arange(n), len(ys) * len(xs))
        y_of = np.tile(np.repeat(np.asarray(ys), len(xs)), n)
        x_of = np.tile(np.tile(np.asarray(xs), len(ys)), n)
        total = len(img_of)
        probs = np.empty(total, dtype=np.float32)
        rows_h = torch.arange(h)[None, :]
        cols_w = torch.arange(w)[None, :]
        tgt_t = torch.as_tensor(tgt)
        occ = IncrementalOccluder.build(ctx.pixel_model)[0] if incremental else None
        npos = len(ys) * len(xs)
        for k in (ctx.progress(range(n), "Occlusion (incremental)", total=n) if occ is not None else ()):
            logits = occlusion_logits(occ, ctx.to_device(imgs[k:k + 1]), torch.as_tensor(y_of[:npos]),
                                      torch.as_tensor(x_of[:npos]), fill_t.view(c), wy, wx, batch_size)
            probs[k * npos:(k + 1) * npos] = torch.softmax(logits, 1)[:, int(tgt[k])].cpu().numpy()
        nb = 0 if occ is not None else (total + batch_size - 1) // batch_size
        for b in (ctx.progress(range(nb), "Occlusion", total=nb) if nb else ()):
            sl = slice(b * batch_size, min(total, (b + 1) * batch_size))
            im = torch.as_tensor(img_of[sl])
            y0 = torch.as_tensor(y_of[sl])[:, None]
            x0 = torch.as_tensor(x_of[sl])[:, None]
            rmask = (rows_h >= y0) & (rows_h < y0 + wy)  # B x H
            cmask = (cols_w >= x0) & (cols_w < x0 + wx)  # B x W
            m = (rmask[:, :, None] & cmask[:, None, :])[:, None]  # B x 1 x H x W
            x = fast_layout(torch.where(m, fill_t, imgs[im]))
            logits = ctx.pixel_model(ctx.to_device(x)).float()
            p = torch.softmax(logits, 1).gather(1, ctx.to_device(tgt_t[im])[:, None])[:, 0]
            probs[sl] = p.cpu().numpy()
    grids = probs.reshape(n, len(ys), len(xs))
    # coverage-averaged map: heat = R^T P C / R^T 1 C with R, C the row/column window indicators
    R = np.zeros((len(ys), h), dtype=np.float64)
    for i, y0 in enumerate(ys):
        R[i, y0:y0 + wy] = 1
    C = np.zeros((len(xs), w), dtype=np.float64)
    for j, x0 in enumerate(xs):
        C[j, x0:x0 + wx] = 1
    cover = R.T @ np.ones((len(ys), len(xs))) @ C
    uncovered = cover == 0  # only when stride > window: those pixels were never occluded
    cover[uncovered] = 1
    out = []
    for k, i in enumerate(indices):
        heat = (R.T @ grids[k].astype(np.float64) @ C) / cover
        heat[uncovered] = base[k]
        out.append(OcclusionResult(int(i), heat.astype(np.float32), grids[k], float(base[k]), int(tgt[k]),
                                   bool(known[k]), int(preds[k])))
    return out


def naive_occlusion(ctx, index: int, target: int, window: int, stride: int, fill) -> np.ndarray:
    """Reference implementation: one occluded copy, one forward pass at a time (benchmarks, tests)."""
    img = ctx.images.tensor(index).float()
    c, h, w = img.shape
    ys, xs = window_positions(h, window, stride), window_positions(w, window, stride)
    wy, wx = min(window, h), min(window, w)
    fill_v = torch.as_tensor(np.broadcast_to(np.asarray(fill, dtype=np.float32), (c,)).copy())
    grid = np.empty((len(ys), len(xs)), dtype=np.float32)
    with eval_mode(ctx.model), torch.inference_mode():
        for a, y0 in enumerate(ys):
            for b, x0 in enumerate(xs):
                x = img.clone()
                x[:, y0:y0 + wy, x0:x0 + wx] = fill_v[:, None, None]
                p = torch.softmax(ctx.pixel_model(ctx.to_device(x[None])).float(), 1)[0, target]
                grid[a, b] = float(p)
    return grid


@dataclass
class OcclusionOptions:
    max_images: int = 4
    """How many images (the same ones saliency and segmentation show)."""
    window: int | None = None
    """Side of the occluding square in input pixels (None: 1/7 of the input side)."""
    stride: int | None = None
    """Step between window positions in input pixels (None: half the window)."""
    batch_size: int = 0
    """Occluded copies per forward pass (0: automatic, 64 on a GPU, cache-sized on the CPU; see
    features.device_batch_size)."""
    fill: str = "mean"
    """Colour of the square: "mean" (the image set's mean colour) or "grey" (0.5)."""


@technique(
    "occlusion",
    "Occlusion sensitivity",
    options=OcclusionOptions,
    presets={"minimal": {"max_images": 1, "window": 8, "stride": 8},
             "full": {"max_images": 8}},
    references=[ZEILER_FERGUS_2014, NAKANDALA_2019],
    order=40,
    summary=(
        "A square (by default of the image set's mean colour; the caption says which) is slid over each image and "
        "the probability of the class is recorded at every position; the map gives each pixel the average change "
        "of that probability while it was covered. Red regions are where hiding the image lowers the class "
        "probability (the evidence the model uses), blue where hiding it raises the probability, and clear where "
        "covering has no effect."
    ),
)
def occlusion(ctx, opts: OcclusionOptions) -> Section:
    size = ctx.pre.size
    window, stride = resolve_window(size, opts.window, opts.stride)
    if opts.fill not in ("mean", "grey", "gray"):
        raise ValueError(f"occlusion.fill must be 'mean' or 'grey', got {opts.fill!r}")
    fill = ctx.features().mean_rgb if opts.fill == "mean" else np.full(3, 0.5, dtype=np.float32)
    idx = show_indices(ctx, opts.max_images)
    batch = opts.batch_size if opts.batch_size > 0 else device_batch_size(ctx)
    results = occlusion_maps(ctx, idx, window, stride, batch, fill)
    sec = Section(id="occlusion", title="Occlusion sensitivity")
    items = []
    for r in results:
        img = ctx.images.display(r.index)
        lo, hi = float(r.heat.min()), float(r.heat.max())
        tone = "" if not r.from_label else ("ok" if r.pred == r.target else "bad")
        items.append(GridItem(ImageData(img), label=ctx.images.name(r.index),
                              sublabel=f"{ctx.class_name(r.target)} ({'true label' if r.from_label else 'predicted'})",
                              alt=f"input {ctx.images.name(r.index)}", tone=tone))
        items.append(GridItem(ImageData(change_overlay(img, r.base, r.heat)),
                              label="change when covered",
                              sublabel=f"p={r.base:.2f} unoccluded, {lo:.2f}..{hi:.2f} occluded",
                              alt=f"occlusion map of {ctx.images.name(r.index)}"))
    fill_txt = ("the image set's mean colour (" + ", ".join(f"{v:.2f}" for v in fill) + ")"
                if opts.fill == "mean" else "grey 0.5")
    any_pred = any(not r.from_label for r in results)
    which = "the true label" if not any_pred else (
        "the predicted class" if not any(r.from_label for r in results) else "the true label where known, else the prediction")
    npos = len(window_positions(size, window, stride)) ** 2
    sec.add(Grid(items, columns=4, cell_width=min(224, size * 2 if size < 112 else size),
                 caption=(f"A {window}x{window}-pixel square of {fill_txt} at {npos} positions (stride {stride} px) "
                          f"of the {size}x{size} input. Overlay (diverging scale, symmetric per image): change of "
                          f"the probability of {which} when the region is covered; red = it drops (covering it "
                          f"hurts), blue = it rises (the region argued against the class), white = no effect; "
                          f"changes below {MIN_SPAN:g} never reach full colour.")))
    if results:
        sec.add(Figure(_heatmap_figure(ctx, results), caption=(
            "The same maps in probability units: each pixel's mean class probability over the window positions "
            "covering it minus the unoccluded probability (red: lower, blue: higher, white: unchanged), with "
            f"colour bars spanning at least ±{MIN_SPAN:g}; the dashed contour marks 90% of the unoccluded "
            "probability."),
            alt="occlusion probability maps with colour bars"))
    else:
        sec.add(Note("No images to show.", kind="warning"))
    sec.params.update({"window_px": window, "stride_px": stride, "positions_per_image": npos, "batch_size": batch,
                       "images": [ctx.images.name(r.index) for r in results]})
    sec.results = {"fill": opts.fill, "fill_rgb": [round(float(v), 4) for v in fill], "window_px": window,
                   "stride_px": stride, "images": [{
                       "image": ctx.images.name(r.index), "class": ctx.class_name(r.target),
                       "class_from_label": r.from_label, "p_unoccluded": round(r.base, 4),
                       "p_occluded_min": round(float(r.grid.min()), 4), "p_occluded_max": round(float(r.grid.max()), 4),
                   } for r in results]}
    return sec


def change_overlay(img: np.ndarray, base: float, heat: np.ndarray) -> np.ndarray:
    """The probability change ``base - heat`` over the image on a diverging scale centred on "no effect":
    red = the probability drops when covered, blue = it rises, white = unchanged; symmetric per image,
    and changes smaller than MIN_SPAN never reach full colour (a map of negligible changes stays pale)."""
    drop = base - heat
    span = max(float(np.abs(drop).max()), MIN_SPAN)
    return overlay(img, drop, alpha=0.5, cmap="RdBu_r", lo=-span, hi=span)


def _heatmap_figure(ctx, results: list[OcclusionResult]) -> ImageData:
    n = len(results)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig = new_figure((3.1 * cols, 2.8 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax, r in zip(axes.ravel(), results):
        delta = r.heat - r.base
        m = max(float(np.abs(delta).max()), MIN_SPAN)  # negligible changes stay pale, as in the overlay
        im = ax.imshow(delta, cmap="RdBu", vmin=-m, vmax=m)
        if r.heat.min() < 0.9 * r.base < r.heat.max():
            ax.contour(r.heat, levels=[0.9 * r.base], colors="black", linewidths=0.8, linestyles="dashed")
        ax.set_title(f"{ctx.class_name(r.target)[:28]}: Δp when covered\np={r.base:.2f} unoccluded", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        cb.ax.tick_params(labelsize=7)
    fig.tight_layout()
    return figure_to_png(fig)
