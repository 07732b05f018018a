"""Filter grids: the first convolution's kernels as RGB tiles, a higher one per input channel.

First layer (Krizhevsky et al. 2012, fig. 3): each kernel ``W[k]`` of shape 3 x kh x kw is drawn
as a colour tile, min-max normalised per filter: ``(W[k] - min W[k]) / (max W[k] - min W[k])``.
They usually look like oriented edges, colour blobs and Gabor-like gratings, because the first
layer matches the raw pixels directly.

Higher layer (ConvNetJS style): a kernel of shape C_in x kh x kw is not an image, so each input
channel's slice is drawn as its own greyscale tile; rows are filters, columns input channels.
These are hard to interpret on their own (they combine feature maps, not pixels), which is why
later sections look at activations and the images that excite units instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal, cast

import numpy as np
from torch import nn

from ..pictures import tile, to_uint8
from ..papers import KRIZHEVSKY_2012, YOSINSKI_2015
from ..registry import Range, technique
from ..report import Block, Figure, Grid, GridItem, ImageData, KeyValues, Note, Section, plural
from ..results_schema import MISSING, Absent, result_type, to_json

if TYPE_CHECKING:
    from ..context import Ctx

# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)


@result_type
class FiltersResults:
    patch_embedding_components: Absent[int] = MISSING
    """(when the first convolution is a patch embedding) principal components of its filters shown"""
    first_layer: str
    """dotted name of the first convolution"""
    first_shape: list[int]
    """[filters, input channels, kernel height, kernel width]"""
    scale: str
    """colour scale used: filter (per-filter min/max) or global"""
    first_max_abs_weight: float
    """largest |weight| of the first layer"""
    dead_filters: list[int]
    """indices of first-layer filters whose largest |weight| is below dead_fraction of the layer's"""
    higher_layer: str | None
    """dotted name of the higher convolution shown (null: none)"""
    filter_max_abs_weight: list[float]
    """largest |weight| of each shown first-layer filter"""


RESULTS = FiltersResults  # report.json "results" of this section (docs/results.md is generated from it)


@dataclass
class FiltersOptions:
    max_first: Annotated[int, Range(ge=1)] = 96
    """At most this many first-layer filters."""
    layer: str | None = None
    """The higher convolution to show per input channel (None: the second full convolution)."""
    max_filters: Annotated[int, Range(ge=1)] = 16
    """Filters (rows) of the higher layer."""
    max_in_channels: Annotated[int, Range(ge=1)] = 32
    """Input channels (columns) of the higher layer."""
    scale: Literal["filter", "global"] = "filter"
    """First layer colour scale: "filter" (each filter to its own min/max: shows every filter's pattern, but a
    dead, near-zero filter looks as strong as the rest) or "global" (one symmetric scale for the layer, grey = 0:
    filter strength is comparable and dead filters are flat grey)."""
    dead_fraction: Annotated[float, Range(ge=0, le=1)] = 0.02
    """A filter whose largest |weight| is below this fraction of the layer's largest is counted as dead."""


def filter_tile(f: np.ndarray, scale: str, layer_max: float) -> np.ndarray:
    """One first-layer kernel (C x kh x kw) as uint8 pixels: RGB when C == 3, else the mean over channels.

    ``scale="filter"``: ``(W - min W) / (max W - min W)``; ``"global"``: ``0.5 + W / (2 max|W_layer|)``."""
    a = f.transpose(1, 2, 0) if f.shape[0] == 3 else f.mean(0)
    if scale == "global":
        m = max(float(layer_max), 1e-12)
        return to_uint8(a, -m, m)
    return to_uint8(a)  # per-filter min-max over all channels keeps colour balance


def _higher_conv(model: nn.Module, first: str) -> str | None:
    """The first convolution after ``first`` with a spatial kernel and no grouping (else any later conv)."""
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    later = [(n, m) for n, m in convs if n != first]
    for n, m in later:
        if m.groups == 1 and max(m.kernel_size) > 1:
            return n
    return later[0][0] if later else None


def _upscale(a: np.ndarray, f: int) -> np.ndarray:
    return np.kron(a, np.ones((f, f), dtype=a.dtype)) if a.ndim == 2 else np.repeat(np.repeat(a, f, 0), f, 1)


@dataclass(frozen=True)
class HigherConv:
    """The higher convolution shown per input channel."""

    name: str
    weight: np.ndarray  # K x C x kh x kw
    groups: int


@dataclass(frozen=True)
class FiltersResult:
    """What the section shows; :meth:`results` is its report.json entry."""

    first: str  # dotted name of the first convolution
    first_type: str
    stride: tuple
    weight: np.ndarray  # first layer, K x C x kh x kw
    shown: int  # first-layer filters shown
    scale: str
    layer_max: float  # largest |weight| of the first layer
    strength: np.ndarray  # per filter: largest |weight|
    dead: list[int]
    patch_embedding: int | None  # principal components shown when the first conv is a patch embedding, else None
    higher: HigherConv | None

    def results(self) -> FiltersResults:
        k, c, kh, kw = self.weight.shape
        return FiltersResults(
            patch_embedding_components=MISSING if self.patch_embedding is None else self.patch_embedding,
            first_layer=self.first, first_shape=[k, c, kh, kw],
            scale=self.scale, first_max_abs_weight=round(self.layer_max, 6), dead_filters=self.dead,
            higher_layer=self.higher.name if self.higher else None,
            filter_max_abs_weight=[round(float(v), 6) for v in self.strength[:self.shown]])


def compute_filters(ctx: Ctx, opts: FiltersOptions) -> FiltersResult:
    """The first convolution's weights, their strengths and dead filters, and the higher convolution's weights."""
    first = ctx.first_conv()
    conv = cast(nn.Conv2d, ctx.layer(first))  # first_conv names an nn.Conv2d
    w = conv.weight.detach().float().cpu().numpy()  # K x C x kh x kw
    k, c, kh, kw = w.shape
    if opts.scale not in ("filter", "global"):
        raise ValueError(f"filters.scale must be 'filter' or 'global', got {opts.scale!r}")
    layer_max = float(np.abs(w).max()) if w.size else 0.0
    strength = np.abs(w).reshape(k, -1).max(1)
    dead = [int(i) for i in np.flatnonzero(strength < opts.dead_fraction * max(layer_max, 1e-12))]
    patch_embedding = tuple(conv.kernel_size) == tuple(conv.stride) and max(kh, kw) > 1
    name = opts.layer or _higher_conv(ctx.model, first)
    higher = None
    if name is not None:
        hconv = ctx.layer(name)
        if not isinstance(hconv, nn.Conv2d):
            raise ValueError(f"layer {name!r} is a {type(hconv).__name__}, not a Conv2d")
        higher = HigherConv(name, hconv.weight.detach().float().cpu().numpy(), hconv.groups)
    return FiltersResult(first, type(conv).__name__, conv.stride, w, min(k, opts.max_first), opts.scale, layer_max,
                         strength, dead, min(28, k, c * kh * kw) if patch_embedding else None, higher)


def _first_blocks(res: FiltersResult, dead_fraction: float) -> list[Block]:
    """The first convolution: its facts, its filters as tiles, dead filters and greyscale notes."""
    w, first, dead, shown, layer_max = res.weight, res.first, res.dead, res.shown, res.layer_max
    k, c, kh, kw = w.shape
    items = []
    for i in range(shown):
        img = filter_tile(w[i], res.scale, layer_max)
        items.append(GridItem(ImageData(img, pixelated=True), label=str(i) + (" (dead)" if i in dead else ""),
                              alt=f"first-layer filter {i}", tone="bad" if i in dead else ""))
    cell = max(40, min(72, kw * 6))
    blocks: list[Block] = [
        KeyValues([("layer", first), ("type", res.first_type),
                   ("weight shape", f"{k} x {c} x {kh} x {kw} (filters x input channels x height x width)"),
                   ("stride", str(res.stride)), ("drawn as", "RGB tile per filter" if c == 3 else
                                                 "greyscale (mean over input channels)")],
                  title="First convolution"),
        Grid(items, columns=min(16, max(4, int(math.ceil(math.sqrt(shown))))), cell_width=cell,
             title=f"First layer: {first}",
             caption=f"{shown} of {k} filters, {kh}x{kw}, " + (
                 "each normalised to its own min/max (a weak filter looks as strong as the rest; filters.scale = "
                 "global shows them on one scale)." if res.scale == "filter" else
                 f"on one symmetric scale for the layer: grey = 0, full colour = ±{layer_max:.3g}.")),
    ]
    if dead:
        blocks.append(Note(f"{len(dead)} of {k} first-layer filters are nearly dead (largest |weight| below "
                           f"{dead_fraction:g} of the layer's largest): {', '.join(map(str, dead[:20]))}"
                           + ("..." if len(dead) > 20 else "") + ".", kind="warning"))
    if c != 3:
        blocks.append(Note(f"The first convolution takes {c} input channels, so filters are drawn in greyscale "
                           "(mean over input channels) rather than as RGB."))
    if res.patch_embedding is not None:
        blocks += _embedding_components(w, first, res.patch_embedding)
    return blocks


def _higher_blocks(h: HigherConv, opts: FiltersOptions) -> list[Block]:
    """The higher convolution: one greyscale tile per (filter, input channel)."""
    hk, hc, hkh, hkw = h.weight.shape
    nf, nc = min(hk, opts.max_filters), min(hc, opts.max_in_channels)
    factor = max(1, 24 // max(hkh, hkw))
    tiles = []
    for i in range(nf):
        for j in range(nc):
            tiles.append(_upscale(to_uint8(h.weight[i, j]), factor))
    # one input channel per filter (depthwise): tile the filters in a square-ish block, not a 16x1 column
    mosaic = tile(tiles, columns=nc if nc > 1 else int(math.ceil(math.sqrt(nf))), pad=2, pad_value=128)
    blocks: list[Block] = [
        KeyValues([("layer", h.name), ("weight shape", f"{hk} x {hc} x {hkh} x {hkw}"),
                   ("groups", str(h.groups)),
                   ("shown", f"{nf} filters (rows) x {nc} input channels (columns)")],
                  title="Higher convolution"),
        Figure(ImageData(mosaic, pixelated=True, display_width=min(1100, mosaic.shape[1] * 2)),
               title=f"Higher layer: {h.name}",
               caption=(f"Rows: filters 0-{nf - 1} of {hk}; columns: input channels 0-{nc - 1} of {hc}. "
                        f"Each {hkh}x{hkw} slice is normalised to its own min/max (white = most positive weight)."),
               alt=f"weights of {h.name} per input channel in greyscale"),
    ]
    if h.groups > 1:
        blocks.append(Note(f"{h.name} is a grouped convolution ({h.groups} groups): each filter sees only "
                           f"{plural(hc, 'input channel')} of its group."))
    return blocks


def present_filters(res: FiltersResult, opts: FiltersOptions) -> list[Block]:
    """The report blocks of a :class:`FiltersResult`."""
    if res.higher is None:
        return _first_blocks(res, opts.dead_fraction) + [
            Note("The model has a single convolution: there is no higher layer to show.")]
    return _first_blocks(res, opts.dead_fraction) + _higher_blocks(res.higher, opts)


@technique(
    "filters", "Filters", options=FiltersOptions, order=20, needs_layers=True,
    references=[KRIZHEVSKY_2012, YOSINSKI_2015],
    presets={"minimal": {"max_first": 16, "max_filters": 4, "max_in_channels": 8},
             "full": {"max_first": 256, "max_filters": 32, "max_in_channels": 64}},
)
def filters(ctx: Ctx, opts: FiltersOptions) -> Section:
    """The first grid shows each first-layer kernel as a colour image (normalised per filter): they are the pixel
    patterns the network matches directly, typically edges, colour blobs and gratings. The second shows a deeper
    convolution's kernels one input channel at a time in greyscale: these weigh feature maps, not pixels, so they
    are much harder to read than the first layer."""
    res = compute_filters(ctx, opts)
    sec = Section(id="filters", title="Filters")
    sec.add(*present_filters(res, opts))
    sec.params.update({"first_layer": res.first, "higher_layer": res.higher.name if res.higher else None})
    sec.results = to_json(res.results())
    return sec


def embedding_components(w: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` leading principal components of the patch-embedding filters ``w`` (K x C x kh x kw), each
    C x kh x kw, and the share of the filters' variance each explains (Dosovitskiy et al. 2021, Fig. 7 left)."""
    k = w.shape[0]
    flat = w.reshape(k, -1).astype(np.float64)
    flat = flat - flat.mean(0, keepdims=True)
    _, sv, vt = np.linalg.svd(flat, full_matrices=False)
    var = sv ** 2
    share = var / max(float(var.sum()), 1e-12)
    return vt[:n].reshape((n,) + w.shape[1:]), share[:n]


def _embedding_components(w: np.ndarray, first: str, n: int) -> list:
    comps, share = embedding_components(w, n)
    items = [GridItem(ImageData(filter_tile(comps[i], "filter", 1.0), pixelated=True),
                      label=f"PC{i + 1} {share[i]:.0%}", alt=f"principal component {i + 1} of the patch embedding")
             for i in range(len(comps))]
    return [
        Grid(items, columns=min(14, max(4, len(items))), cell_width=56,
             title=f"Patch embedding {first}: leading principal components",
             caption=(f"{first} has stride equal to its kernel: it is a patch embedding (ViT), a linear projection "
                      f"of each patch. Shown as in Dosovitskiy et al. (2021, Fig. 7 left): the {len(comps)} leading "
                      "principal components of its filters, each normalised to its own min/max, labelled with the "
                      f"share of the filters' variance it explains ({share.sum():.0%} together).")),
        Note("The filter tiles above are individual rows of the patch embedding; the principal components summarise "
             "the basis it spans. Trained ViTs give smooth, low-frequency, Gabor-like components; random "
             "initialisation gives noise."),
    ]

