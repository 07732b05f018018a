"""Occlusion sensitivity (Zeiler & Fergus 2014).

A ``window`` x ``window`` square of the set's mean colour (or grey 0.5, option ``fill``) is slid over the image with
step ``stride``; for each position the softmax probability ``p_k(x with the square at (y, x))`` of
the class ``k`` (true label when known, else the prediction) is recorded. The heat map assigns
each pixel the mean probability over all window positions that cover it, so it has the image's
size and is aligned with it pixel for pixel. Low probability = that part of the image matters.

The compute is :func:`reportgen.attribution.occlusion_grid` (exact incremental inference where the model
allows it, else all occluded copies as one tensor operation, ``batch_size`` at a time); this module picks
the images, classes, window and fill, and draws the change ``p(unoccluded) - heat`` with
:mod:`reportgen.attribution.visualization`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import numpy as np
import torch

from .. import attribution as A
from ..attribution import window_positions
from ..attribution.incremental import IncrementalOccluder
from ..cache import MemoKey
from ..inspection.hooks import hookable
from ..pictures import figure_to_png, new_figure
from ..papers import NAKANDALA_2019, ZEILER_FERGUS_2014
from ..registry import AttributionMethod, Range, technique
from ..report import Figure, Grid, ImageData, Note, Section
from ..results_schema import result_type, to_json
from ..device import FrozenForward, device_batch_size, inference_model
from ..attribution.visualization import attr_image, attr_item
from ._faith_maps import MapMethod
from ._map_store import MapSpec, put_maps
from ..features.split import split_rows
from ._faith_maps import technique_options
from ._sanity_checks import protocol
from ._explain import (attention_reason, cell_width, cost_scaled_window, image_item, incremental_batch_size,
                       predict_batch, resolve_window, show_indices)

if TYPE_CHECKING:
    from ..context import Ctx

# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)


@result_type
class OcclusionImage:
    image: str
    """image name"""
    class_: str
    """class whose probability is tracked"""
    class_from_label: bool
    """the class is the true label (else the prediction)"""
    p_unoccluded: float
    """its probability without occlusion"""
    p_occluded_min: float
    """lowest probability over the window positions"""
    p_occluded_max: float
    """highest probability over the window positions (above p_unoccluded: covering raised it)"""
    max_change: float
    """largest |probability change| over the window positions (below 0.05: a flat map, flagged)"""


@result_type
class OcclusionResults:
    method: str | None
    """incremental (exact incremental inference, the same maps) or full forward passes, with the reason"""
    fill: str
    """fill option: mean (the set's mean colour) or grey"""
    fill_rgb: list[float]
    """the fill colour actually used, RGB in [0, 1]"""
    window_px: int
    """side of the square"""
    stride_px: int
    """step between positions"""
    cost_scaled: dict[str, Any] | None
    """null, or how window and stride were grown for an expensive model: gmac_per_image, reference_gmac, factor,
    window_px / stride_px / positions as [preset, used]"""
    images: list[OcclusionImage]


RESULTS = OcclusionResults  # report.json "results" of this section (docs/results.md is generated from it)

MIN_SPAN = 0.05  # overlay colour scale spans at least this much probability
# the change map: signed, scaled by its largest |change| (at least MIN_SPAN), red = the probability drops
CHANGE_SCALE: dict[str, Any] = {"sign": "all", "outlier_perc": 0.0, "floor": MIN_SPAN, "cmap": "RdBu_r", "alpha": 0.5}

#: the run's incremental occluder of ``ctx.pixel_model`` and why none could be built (the section and its maps)
OCCLUDER: MemoKey[tuple[IncrementalOccluder | None, str]] = MemoKey("occlusion.occluder")


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
    method: str = "incremental"  # or "full forward passes (why)"
    # (class, H x W map p - heat) for another class from the same occluded passes (``occlusion_maps``' ``others``)
    other: tuple[int, np.ndarray] | None = None




def occlusion_maps(ctx: Ctx, indices: list[int], window: int, stride: int, batch_size: int = 64,
                   fill: np.ndarray | float = 0.5, classes: list[int] | None = None,
                   incremental: bool = True, incremental_batch: int | None = None,
                   others: dict[int, int] | None = None) -> list[OcclusionResult]:
    """Occlusion probability maps of ``indices`` (:func:`reportgen.attribution.occlusion_grid`, exact incremental
    inference where the model allows it unless ``incremental`` is False; same maps either way). Full passes run
    ``batch_size`` copies at a time, incremental ones ``incremental_batch`` (default: ``batch_size``).
    ``others``: image index -> another class whose change map (``other``) is read off the same passes."""
    bt = predict_batch(ctx, list(indices), classes)
    x = bt.x.float()
    others = {int(i): int(c) for i, c in (others or {}).items() if int(i) in bt.idx}
    no_reuse = attention_reason(ctx) if incremental else None
    if not incremental:
        occ, why = None, "incremental inference turned off"
    elif no_reuse:
        occ, why = None, no_reuse
    else:
        occ, why = ctx.memo(OCCLUDER, lambda: IncrementalOccluder.build(ctx.pixel_model))
    batch = (incremental_batch or batch_size) if occ is not None else batch_size
    model = ctx.pixel_model if occ is not None else inference_model(ctx)
    t2 = np.stack([bt.targets, [others.get(int(i), int(t)) for i, t in zip(bt.idx, bt.targets)]], 1)
    both = A.occlusion_grid(model, x, t2 if others else bt.targets, window, stride, fill, batch, occ is not None,
                            progress=lambda it, desc, total: ctx.progress(it, desc, total=total), occluder=occ)
    grids = both[:, 0] if others else both
    size = cast(tuple[int, int], tuple(x.shape[-2:]))
    heats = A.coverage_average(grids, size, window, stride, bt.probs).numpy()
    via = f", {model.source}" if isinstance(model, FrozenForward) else ""
    method = "incremental" if occ is not None else f"full forward passes ({why}{via})"
    out = [OcclusionResult(int(i), heats[k], grids[k].numpy(), float(bt.probs[k]), int(bt.targets[k]),
                           bool(bt.from_label[k]), int(bt.preds[k]), method) for k, i in enumerate(bt.idx)]
    if others:
        with torch.inference_mode():
            p = torch.softmax(ctx.pixel_model(x).float(), 1).gather(1, torch.as_tensor(t2[:, 1:], device=x.device))
        p = p[:, 0].cpu()
        maps = p.numpy()[:, None, None] - A.coverage_average(both[:, 1], size, window, stride, p).numpy()
        for k, r in enumerate(out):
            if r.index in others:
                r.other = (others[r.index], maps[k])
    return out


def sanity_classes(ctx: Ctx) -> dict[int, int]:
    """Image index -> the random other class whose occlusion map the faithfulness section's sanity check asks for
    (the sanity protocol's images and classes, :mod:`._sanity_checks`); {} when it shows no checks."""
    enabled = {t.id for t in ctx.config.enabled()}
    if "faithfulness" not in enabled or not ctx.config.options("faithfulness").sanity or not hookable(ctx.model):
        return {}  # no checks (a TorchScript archive takes no hooks: no randomised copies either)
    try:
        p = protocol(ctx, technique_options(ctx, "sanity"))
    except ValueError:  # no parameters to randomise: no checks
        return {}
    return {int(i): int(c) for i, c in zip(p.batch.idx, p.other)}


def naive_occlusion(ctx: Ctx, index: int, target: int, window: int, stride: int, fill) -> np.ndarray:
    """Reference implementation: one occluded copy, one forward pass at a time (benchmarks, tests)."""
    img = ctx.images.tensor(index).float()
    c, h, w = img.shape
    ys, xs = window_positions(h, window, stride), window_positions(w, window, stride)
    wy, wx = min(window, h), min(window, w)
    fill_v = torch.as_tensor(np.broadcast_to(np.asarray(fill, dtype=np.float32), (c,)).copy())
    grid = np.empty((len(ys), len(xs)), dtype=np.float32)
    with torch.inference_mode():
        for a, y0 in enumerate(ys):
            for b, x0 in enumerate(xs):
                x = img.clone()
                x[:, y0:y0 + wy, x0:x0 + wx] = fill_v[:, None, None]
                p = torch.softmax(ctx.pixel_model(ctx.to_device(x[None])).float(), 1)[0, target]
                grid[a, b] = float(p)
    return grid


@dataclass
class OcclusionOptions:
    max_images: Annotated[int, Range(ge=1)] = 4
    """How many images (the same ones saliency and segmentation show)."""
    window: Annotated[int, Range(ge=1)] | None = None
    """Side of the occluding square in input pixels (None: 1/7 of the input side)."""
    stride: Annotated[int, Range(ge=1)] | None = None
    """Step between window positions in input pixels (None: half the window)."""
    batch_size: Annotated[int, Range(ge=0)] = 0
    """Occluded copies per forward pass (0: automatic, 64 on a GPU; on the CPU cache-sized for full passes, see
    device.device_batch_size, and at least 32 for incremental ones)."""
    fill: Literal["mean", "grey"] = "mean"
    """Colour of the square: "mean" (the image set's mean colour) or "grey" (0.5)."""
    scale_with_cost: bool = True
    """On a model costing more than device.REFERENCE_MACS (2 GMAC) per image, grow window and stride by the square
    root of the ratio, so the occluded copies (one forward pass each) fall by it; stated in the section."""


def occlusion_spec(window: int, stride: int, fill: np.ndarray) -> MapSpec:
    """Occlusion's map (``p(x) - heat``) at this window, stride and fill colour."""
    return MapSpec("occlusion", (int(window), int(stride), tuple(round(float(v), 6) for v in fill)))


def occlusion_method(ctx: Ctx, o: OcclusionOptions) -> MapMethod:
    """Occlusion maps (``p(x) - heat``) with the section's options and cost scaling, by exact incremental inference
    where the model allows it. ``classes`` serves several classes per image from the same occluded passes."""
    cs = cost_scaled_window(ctx, *resolve_window(ctx.pre.size, o.window, o.stride), scale=o.scale_with_cost)
    fill = ctx.features().mean_rgb if o.fill == "mean" else np.full(3, 0.5, dtype=np.float32)
    assert fill is not None  # the run's feature pass records the mean colour
    batch = device_batch_size(ctx)
    reuse = attention_reason(ctx) is None

    def occluder(pm):
        if not reuse:
            return None
        if pm is ctx.pixel_model:
            return ctx.memo(OCCLUDER, lambda: IncrementalOccluder.build(ctx.pixel_model))[0]
        return IncrementalOccluder.build(pm)[0]

    def classes(pm, x, targets, _idx):
        """B x K maps for B x K ``targets``, one occluded pass per window position for all K classes."""
        t = torch.as_tensor(np.asarray(targets, dtype=np.int64).reshape(len(x), -1))
        occ = occluder(pm)
        run = inference_model(ctx) if occ is None and pm is ctx.pixel_model else pm
        grid = A.occlusion_grid(run, x.float(), t.numpy(), cs.window, cs.stride, fill,
                                incremental_batch_size(ctx) if occ is not None else batch, occ is not None,
                                occluder=occ)
        with torch.inference_mode():
            p = torch.softmax(pm(x).float(), 1).gather(1, t.to(x.device)).cpu()
        size = cast(tuple[int, int], tuple(x.shape[-2:]))
        return np.stack([p[:, k].numpy()[:, None, None] - A.coverage_average(grid[:, k], size, cs.window, cs.stride,
                                                                             p[:, k]).numpy()
                         for k in range(t.shape[1])], 1)

    return MapMethod(occlusion_spec(cs.window, cs.stride, fill), lambda pm, x, t, i: classes(pm, x, t, i)[:, 0],
                     window=cs)


@technique(
    "occlusion", "Occlusion sensitivity", role="review", options=OcclusionOptions, order=40,
    references=[ZEILER_FERGUS_2014, NAKANDALA_2019],
    presets={"minimal": {"max_images": 1, "window": 8, "stride": 8},
             "full": {"max_images": 8}},
    methods=[AttributionMethod("occlusion", occlusion_method, order=60)],
)
def occlusion(ctx: Ctx, opts: OcclusionOptions) -> Section:
    """A square (by default of the image set's mean colour; the caption says which) is slid over each image and the
    probability of the class is recorded at every position; the map gives each pixel the average change of that
    probability while it was covered. Red regions are where hiding the image lowers the class probability (the
    evidence the model uses), blue where hiding it raises the probability, and clear where covering has no effect."""
    size = ctx.pre.size
    cs = cost_scaled_window(ctx, *resolve_window(size, opts.window, opts.stride), scale=opts.scale_with_cost)
    window, stride = cs.window, cs.stride
    if opts.fill not in ("mean", "grey", "gray"):
        raise ValueError(f"occlusion.fill must be 'mean' or 'grey', got {opts.fill!r}")
    fill = ctx.features().mean_rgb if opts.fill == "mean" else np.full(3, 0.5, dtype=np.float32)
    assert fill is not None  # the run's feature pass records the mean colour
    idx = show_indices(ctx, opts.max_images)
    batch = opts.batch_size if opts.batch_size > 0 else device_batch_size(ctx)
    inc_batch = batch if opts.batch_size > 0 else incremental_batch_size(ctx)
    results = split_rows(ctx, [(int(i), window, stride, tuple(float(v) for v in np.ravel(fill))) for i in idx],
                         lambda keys: occlusion_maps(ctx, [k[0] for k in keys], window, stride, batch, fill,
                                                     incremental_batch=inc_batch, others=sanity_classes(ctx))
                         )  # torchrun: ranks share images
    spec = occlusion_spec(window, stride, fill)
    put_maps(ctx, spec, [r.index for r in results], [r.target for r in results],
             np.stack([r.base - r.heat for r in results]))  # the maps faithfulness scores
    for r in results:  # and the random-class maps of its sanity check, from the same passes
        if r.other is not None:
            put_maps(ctx, spec, [r.index], [r.other[0]], r.other[1][None])
    sec = Section(id="occlusion", title="Occlusion sensitivity")
    items = []
    for r in results:
        items.append(image_item(ctx, r.index, r.target, r.from_label, r.pred, r.base))
        items.append(attr_item(r.base - r.heat, ctx.images.display(r.index), "overlay", label="change when covered",
                               sublabel=f"p={r.base:.2f} unoccluded, {r.heat.min():.2f}..{r.heat.max():.2f} occluded",
                               alt=f"occlusion map of {ctx.images.name(r.index)}", **CHANGE_SCALE))
    fill_txt = ("the image set's mean colour (" + ", ".join(f"{v:.2f}" for v in fill) + ")"
                if opts.fill == "mean" else "grey 0.5")
    any_pred = any(not r.from_label for r in results)
    which = "the true label" if not any_pred else (
        "the predicted class" if not any(r.from_label for r in results)
        else "the true label where known, else the prediction")
    npos = len(window_positions(size, window, stride)) ** 2
    sec.add(Grid(items, columns=4, cell_width=cell_width(ctx),
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
    scaled_note = cs.note("occlusion")
    if scaled_note:
        sec.add(Note(scaled_note, kind="info"))
    flat = [f"{ctx.images.name(r.index)} (largest change {_max_change(r):.3f})" for r in results
            if _max_change(r) < MIN_SPAN]
    if flat:
        sec.add(Note(f"Flat maps: for {', '.join(flat)} no {window}-px square changes the probability by "
                     f"{MIN_SPAN:g} or more. The evidence is spread over the image or present more than once, so "
                     "these maps do not locate it (a larger window would).", kind="warning"))
    sec.params.update({"window_px": window, "stride_px": stride, "positions_per_image": npos,
                       "batch_size": inc_batch if results and results[0].method == "incremental" else batch,
                       "images": [ctx.images.name(r.index) for r in results]})
    sec.results = to_json(OcclusionResults(
        method=results[0].method if results else None, fill=opts.fill, fill_rgb=[round(float(v), 4) for v in fill],
        window_px=window, stride_px=stride, cost_scaled=cs.scaled, images=[OcclusionImage(
            image=ctx.images.name(r.index), class_=ctx.class_name(r.target), class_from_label=r.from_label,
            p_unoccluded=round(r.base, 4), p_occluded_min=round(float(r.grid.min()), 4),
            p_occluded_max=round(float(r.grid.max()), 4), max_change=round(_max_change(r), 4),
        ) for r in results]))
    return sec


def _max_change(r: OcclusionResult) -> float:
    """Largest |p(occluded) - p(unoccluded)| over the window positions."""
    return float(np.abs(np.asarray(r.grid, dtype=np.float64) - r.base).max(initial=0.0))


def change_overlay(img: np.ndarray, base: float, heat: np.ndarray) -> np.ndarray:
    """The probability change ``base - heat`` over the image on a diverging scale centred on "no effect":
    red = the probability drops when covered, blue = it rises, white = unchanged; symmetric per image,
    and changes smaller than MIN_SPAN never reach full colour (a map of negligible changes stays pale)."""
    return attr_image(base - heat, img, "overlay", **CHANGE_SCALE)


def _heatmap_figure(ctx: Ctx, results: list[OcclusionResult]) -> ImageData:
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
