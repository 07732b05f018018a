"""Activation maps: every channel of one layer for a few images (Yosinski et al. 2015, ConvNetJS).

For input ``x`` and layer ``l``, shows ``a_l(x)[c]`` for every channel ``c`` as a greyscale tile,
min-max normalised over the whole layer for that image (so tiles are comparable: black = the
channel's lowest response in that image's layer, white = the highest). Most channels are dark
on any given image: units are sparse and selective.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import torch

from ..inspection.hooks import capture_outputs
from ..pictures import to_uint8
from ..inspection.layers import activation_after
from ..papers import YOSINSKI_2015, ZEILER_FERGUS_2014
from ..registry import Range, technique
from ..report import Block, Figure, Grid, GridItem, Group, ImageData, Note, Row, Section
from ..results_schema import local, result_type, to_json
from ..sampling import spread_indices

if TYPE_CHECKING:
    from ..context import Ctx

# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)


@result_type
class ActivationsImage:
    image: str
    """image name"""
    predicted: str
    """predicted class"""
    active_channels: int
    """channels with a positive value somewhere in the map"""
    strongest_channels: list[int]
    """the five channels with the highest maximum"""
    index: int = local()  # the image's index in the set
    maps: np.ndarray = local()  # the shown channels' maps, C x H x W


@result_type
class ActivationsResults:
    layer: str
    """dotted name of the layer shown"""
    layer_type: str
    """its module class (ReLU when the post-activation output is shown)"""
    shape: list[int]
    """[channels, height, width] of its output"""
    layout: str
    """how the layer's output was read as a grid (NCHW, channels-last NHWC, or a token sequence
    with its extra tokens)"""
    images: list[ActivationsImage]
    grid: Any = local()  # how the output was read as a grid (inspection.hooks' layout), None: a plain NCHW map


RESULTS = ActivationsResults  # report.json "results" of this section (docs/results.md is generated from it)


@dataclass
class ActivationsOptions:
    layer: str | None = None
    """Layer to show (None: the run's --layer, else the activation right after the last convolution)."""
    max_images: Annotated[int, Range(ge=1)] = 3
    """How many images to show."""
    max_channels: Annotated[int, Range(ge=1)] = 256
    """At most this many channels per image (the first ones, in channel order)."""


@technique(
    "activations", "Activation maps", options=ActivationsOptions, order=30, needs_layers=True,
    references=[YOSINSKI_2015, ZEILER_FERGUS_2014],
    presets={"minimal": {"max_images": 1, "max_channels": 32}, "full": {"max_images": 6, "max_channels": 512}},
)
def activations(ctx: Ctx, opts: ActivationsOptions) -> Section:
    """Each tile is one channel of the chosen layer's output for the image on the left, drawn in greyscale (white =
    strong response). Channels that light up on the object rather than the background are the units the network
    relies on; most channels stay dark because units are selective."""
    r = compute_activations(ctx, opts)
    sec = Section(id="activations", title="Activation maps")
    sec.add(*present_activations(ctx, opts, r))
    c, h, w = r.shape
    sec.params["layer"] = r.layer
    sec.params["layer_shape"] = f"{c}x{h}x{w}"
    sec.results = to_json(r)
    return sec


def compute_activations(ctx: Ctx, opts: ActivationsOptions) -> ActivationsResults:
    """The layer's output for a spread of images (one forward pass) and each image's active and strongest channels."""
    name = opts.layer or ctx.general.layer
    if not name:  # post-activation maps read best: the ReLU after the last conv when there is one
        conv = ctx.chosen_layer()
        name = activation_after(ctx.model, conv) or conv
    layer = ctx.layer(name)
    n = min(opts.max_images, len(ctx.images))
    idx = spread_indices(ctx, n, "activations/images")  # one image per class, seeded
    x = ctx.to_device(ctx.images.batch(idx))
    layouts: dict = {}
    hw = (int(x.shape[-2]), int(x.shape[-1]))
    with torch.inference_mode(), capture_outputs({name: layer}, grid=hw, layouts=layouts) as out:
        logits = ctx.pixel_model(x)
    if name not in out:
        raise RuntimeError(f"layer {name!r} was not called in the forward pass")
    acts = out[name].float().cpu().numpy()
    if acts.ndim != 4:
        raise ValueError(f"layer {name!r} outputs shape {tuple(acts.shape[1:])}; activation maps need a CxHxW output")
    preds = logits.argmax(1).cpu().numpy()
    c, h, w = acts.shape[1:]
    shown = min(c, opts.max_channels)
    lay = layouts.get(name)
    flat = acts.reshape(acts.shape[0], c, -1)
    return ActivationsResults(
        layer=name, layer_type=type(layer).__name__, shape=[int(c), int(h), int(w)],
        layout=lay.short() if lay is not None else "other",
        images=[ActivationsImage(image=ctx.images.name(i), predicted=ctx.class_name(int(preds[k])),
                                 # channels whose map is > 0 somewhere (post-ReLU: the units that fired)
                                 active_channels=int((flat[k].max(1) > 0).sum()),
                                 strongest_channels=[int(v) for v in np.argsort(-flat[k].max(1), kind="stable")[:5]],
                                 index=i, maps=acts[k, :shown])
                for k, i in enumerate(idx)],
        grid=lay)


def present_activations(ctx: Ctx, opts: ActivationsOptions, r: ActivationsResults) -> list[Block]:
    """Per image the input beside a grid of its channels' maps, and notes on the layer's layout and the channels
    left out."""
    name, (c, h, w) = r.layer, r.shape
    shown = min(c, opts.max_channels)
    cell = max(40, min(96, 4 * max(h, w)))
    blocks: list[Block] = []
    for im in r.images:
        a, i = im.maps, im.index
        lo, hi = float(a.min()), float(a.max())
        items = [
            GridItem(ImageData(to_uint8(a[ch], lo, hi), pixelated=True), label=str(ch),
                     alt=f"channel {ch} of {name}")
            for ch in range(shown)
        ]
        inp = Figure(
            ImageData(ctx.images.display(i), display_width=224),
            caption=f"{ctx.images.name(i)} — predicted {im.predicted}",
            alt=f"input image {ctx.images.name(i)}",
        )
        grid = Grid(items, columns=max(8, int(math.ceil(math.sqrt(shown)))), cell_width=cell,
                    caption=f"{shown} of {c} channels, {h}x{w} each, one shared grey scale [{lo:.3g}, {hi:.3g}]")
        blocks.append(Group(f"{ctx.images.name(i)}", [Row([inp, grid])]))
    lay = r.grid
    if lay is not None and lay.kind in ("tokens", "nhwc"):
        blocks.append(Note(f"Layer {name} returns a {lay.describe()}."))
    if shown < c:
        blocks.append(Note(f"Showing the first {shown} of {c} channels (option activations.max_channels)."))
    return blocks
