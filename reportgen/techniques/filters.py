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

import numpy as np
from torch import nn

from ..imaging import tile, to_uint8
from ..papers import KRIZHEVSKY_2012, YOSINSKI_2015
from ..registry import technique
from ..report import Figure, Grid, GridItem, ImageData, KeyValues, Note, Section


@dataclass
class FiltersOptions:
    max_first: int = 96
    """At most this many first-layer filters."""
    layer: str | None = None
    """The higher convolution to show per input channel (None: the second full convolution)."""
    max_filters: int = 16
    """Filters (rows) of the higher layer."""
    max_in_channels: int = 32
    """Input channels (columns) of the higher layer."""


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


@technique(
    "filters",
    "Filters",
    options=FiltersOptions,
    presets={"minimal": {"max_first": 16, "max_filters": 4, "max_in_channels": 8},
             "full": {"max_first": 256, "max_filters": 32, "max_in_channels": 64}},
    references=[KRIZHEVSKY_2012, YOSINSKI_2015],
    order=20,
    summary=(
        "The first grid shows each first-layer kernel as a colour image (normalised per filter): they are the "
        "pixel patterns the network matches directly, typically edges, colour blobs and gratings. The second "
        "shows a deeper convolution's kernels one input channel at a time in greyscale: these weigh feature "
        "maps, not pixels, so they are much harder to read than the first layer."
    ),
    needs_layers=True,
)
def filters(ctx, opts: FiltersOptions) -> Section:
    sec = Section(id="filters", title="Filters")
    model = ctx.model
    first = ctx.first_conv()
    conv = ctx.layer(first)
    w = conv.weight.detach().float().cpu().numpy()  # K x C x kh x kw
    k, c, kh, kw = w.shape
    shown = min(k, opts.max_first)
    items = []
    for i in range(shown):
        f = w[i]
        if c == 3:
            img = to_uint8(f.transpose(1, 2, 0))  # per-filter min-max over all channels keeps colour balance
        else:
            img = to_uint8(f.mean(0))
        items.append(GridItem(ImageData(img, pixelated=True), label=str(i), alt=f"first-layer filter {i}"))
    cell = max(40, min(72, kw * 6))
    sec.add(
        KeyValues([("layer", first), ("type", type(conv).__name__),
                   ("weight shape", f"{k} x {c} x {kh} x {kw} (filters x input channels x height x width)"),
                   ("stride", str(conv.stride)), ("drawn as", "RGB tile per filter" if c == 3 else
                                                     "greyscale (mean over input channels)")],
                  title="First convolution"),
        Grid(items, columns=min(16, max(4, int(math.ceil(math.sqrt(shown))))), cell_width=cell,
             title=f"First layer: {first}",
             caption=f"{shown} of {k} filters, {kh}x{kw}, each normalised to its own min/max."),
    )
    if c != 3:
        sec.add(Note(f"The first convolution takes {c} input channels, so filters are drawn in greyscale "
                     "(mean over input channels) rather than as RGB."))

    higher = opts.layer or _higher_conv(model, first)
    if higher is None:
        sec.add(Note("The model has a single convolution: there is no higher layer to show."))
    else:
        hconv = ctx.layer(higher)
        if not isinstance(hconv, nn.Conv2d):
            raise ValueError(f"layer {higher!r} is a {type(hconv).__name__}, not a Conv2d")
        hw = hconv.weight.detach().float().cpu().numpy()
        hk, hc, hkh, hkw = hw.shape
        nf, nc = min(hk, opts.max_filters), min(hc, opts.max_in_channels)
        factor = max(1, 24 // max(hkh, hkw))
        tiles = []
        for i in range(nf):
            for j in range(nc):
                tiles.append(_upscale(to_uint8(hw[i, j]), factor))
        # one input channel per filter (depthwise): tile the filters in a square-ish block, not a 16x1 column
        mosaic = tile(tiles, columns=nc if nc > 1 else int(math.ceil(math.sqrt(nf))), pad=2, pad_value=128)
        sec.add(
            KeyValues([("layer", higher), ("weight shape", f"{hk} x {hc} x {hkh} x {hkw}"),
                       ("groups", str(hconv.groups)), ("shown", f"{nf} filters (rows) x {nc} input channels (columns)")],
                      title="Higher convolution"),
            Figure(ImageData(mosaic, pixelated=True, display_width=min(1100, mosaic.shape[1] * 2)),
                   title=f"Higher layer: {higher}",
                   caption=(f"Rows: filters 0-{nf - 1} of {hk}; columns: input channels 0-{nc - 1} of {hc}. "
                            f"Each {hkh}x{hkw} slice is normalised to its own min/max (white = most positive weight)."),
                   alt=f"weights of {higher} per input channel in greyscale"),
        )
        if hconv.groups > 1:
            sec.add(Note(f"{higher} is a grouped convolution ({hconv.groups} groups): each filter sees only "
                         f"{hc} input channel(s) of its group."))
    sec.params.update({"first_layer": first, "higher_layer": higher})
    return sec
