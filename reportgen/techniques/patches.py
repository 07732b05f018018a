"""Maximally activating patches (Zeiler & Fergus 2014; Springenberg et al. 2015; Girshick et al. 2014).

For a layer ``l`` and channel ``c``, every image ``i`` is scored by the channel's maximum over
positions, ``max_{y,x} a_l(x_i)[c, y, x]``; the ``k`` best images across the WHOLE set (from the
one streaming pass of :mod:`reportgen.features.compute`) are shown, each cropped to the exact receptive
field of the unit ``(c, y*, x*)`` at that maximum (:mod:`reportgen.inspection.receptive`, gradient support),
padded with grey where the field runs past the image border. Patches that share a pattern
(a texture, a part, an object) show what that unit detects.
"""

from __future__ import annotations

import dataclasses

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import numpy as np
from torch import nn

from ..cache import MemoKey
from ..inspection import layers as layers_mod
from ..features.compute import TOPK
from ..papers import GIRSHICK_2014, SPRINGENBERG_2015, ZEILER_FERGUS_2014
from ..inspection.receptive import TOKEN_PATCH, ReceptiveField, crop_field, field_for
from ..registry import Range, technique
from ..report import Block, Grid, GridItem, Group, ImageData, Note, Section
from ..results_schema import result_type, to_json
from ._units import unit_set

if TYPE_CHECKING:
    from ..context import Ctx

# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)


@result_type
class PatchesChannel:
    channel: int
    """channel index"""
    peak: float
    """highest response over the set"""
    mean: float
    """mean response over the set"""
    top_images: list[str]
    """names of the images of the shown patches, best first"""


@result_type
class PatchesResults:
    layer: str
    """layer whose channels are ranked (post-activation by default; the activation's input when it clips, as ReLU6
    does)"""
    layer_type: str
    """its module class"""
    tied_channels: list[int]
    """shown channels where several of the top patches tie at the channel's largest value"""
    receptive_field: dict[str, Any]
    """receptive field of its units: layer, size, jump, origin, method, clipped, input_size"""
    interior_only: bool
    """only units whose field lies inside the image were searched"""
    channels: list[PatchesChannel]


RESULTS = PatchesResults  # report.json "results" of this section (docs/results.md is generated from it)

PAD_GREY = (128, 128, 128)


OUTLINE = (255, 140, 0)  # the outline of a token's own cell in its context crop


def cell_in_context(image: np.ndarray, rf: ReceptiveField, y: int, x: int) -> np.ndarray:
    """Unit ``(y, x)``'s own cell (a :data:`TOKEN_PATCH` field) with one cell of the image around it on each
    side, the cell outlined: a 4x4-px token of a 28-px image alone is unreadable, and after attention the unit
    sees beyond its cell anyway."""
    h, w = rf.size
    wide = dataclasses.replace(rf, size=(3 * h, 3 * w), origin=(rf.origin[0] - h, rf.origin[1] - w))
    out = crop_field(image, wide, y, x, PAD_GREY)
    out = np.repeat(out[..., None], 3, -1) if out.ndim == 2 else out[..., :3].copy()
    t = max(1, min(h, w) // 8)
    out[h - t:h, w - t:2 * w + t] = OUTLINE
    out[2 * h:2 * h + t, w - t:2 * w + t] = OUTLINE
    out[h - t:2 * h + t, w - t:w] = OUTLINE
    out[h - t:2 * h + t, 2 * w:2 * w + t] = OUTLINE
    return out


def field_of(ctx: Ctx, layer: str) -> ReceptiveField:
    """Receptive field of ``layer`` at the run's input size (gradient support), memoised per run."""
    return field_for(ctx, layer)

#: the automatic layer for a receptive-field fraction (:func:`auto_layer`, once per run)
AUTO_LAYER: MemoKey[str] = MemoKey("patches.auto_layer")


def auto_layer(ctx: Ctx, fraction: float) -> str:
    """The deepest convolution whose receptive field is at most ``fraction`` of the input side.

    Binary search over the convolutions in definition order (fields grow with depth).
    """
    convs = layers_mod.conv_layers(ctx.model)
    if not convs:
        return ctx.chosen_layer()  # raises a helpful LayerError
    limit = fraction * ctx.pre.size
    lo, hi, best = 0, len(convs) - 1, convs[0]
    while lo <= hi:
        mid = (lo + hi) // 2
        rf = field_of(ctx, convs[mid])
        if max(rf.size) <= limit and not rf.clipped:
            best, lo = convs[mid], mid + 1
        else:
            hi = mid - 1
    return best


def patch_layer(ctx: Ctx, opts: "PatchesOptions") -> tuple[str, str]:
    """(layer, how it was chosen)."""
    if opts.layer:
        ctx.layer(opts.layer)
        return opts.layer, "option patches.layer"
    if ctx.general.layer:
        return ctx.chosen_layer(), "--layer"
    last = layers_mod.last_conv(ctx.model)
    block = ctx.probe().default_layer(last)
    if block is not None and block != last:  # convolutions are only a stem / patch embedding (ViT, Swin)
        return block, ("automatic: the last block with spatial structure (the network's convolutions are only its "
                       "stem or patch embedding; set --layer or patches.layer to choose)")
    conv = ctx.memo(AUTO_LAYER.at(opts.auto_rf_fraction), lambda: auto_layer(ctx, opts.auto_rf_fraction))
    # rank on the post-activation output (after batch-norm and the ReLU), as `activations` shows
    name = layers_mod.activation_after(ctx.model, conv) or conv
    after = f", ranked on the activation {name} that follows it" if name != conv else ""
    act = ctx.layer(name)
    pre = layers_mod.leaf_before(ctx.model, name) if name != conv and isinstance(act, nn.Hardtanh) else None
    if pre:  # ReLU6 / Hardtanh clip: the strongest responses would all tie at the ceiling, in arbitrary order
        after = (f", ranked on {pre}, the input of the {type(act).__name__} {name} that follows it: that clips at "
                 f"{float(cast(nn.Hardtanh, act).max_val):g} and would tie the strongest responses (below the clip the "
                 "order is the same)")
        name = pre
    return name, (f"automatic: the deepest convolution ({conv}) whose receptive field is at most "
                  f"{opts.auto_rf_fraction:g} of the input side{after} (set --layer or patches.layer to choose)")


def _plan(ctx: Ctx) -> list[str]:
    return [patch_layer(ctx, ctx.config.options("patches"))[0]]


def pick_channels(stats, n: int, rank: str = "peak") -> list[int]:
    """The ``n`` channels with the highest peak response over the set (or peak z-score)."""
    peak = stats.peak.astype(np.float64)
    if rank == "zscore":
        score = (peak - stats.mean) / np.maximum(stats.std, 1e-12)
    elif rank == "peak":
        score = peak
    else:
        raise ValueError(f"patches.rank must be 'peak' or 'zscore', got {rank!r}")
    score = np.where(np.isfinite(score) & (stats.top_image[:, 0] >= 0), score, -np.inf)
    order = np.argsort(-score, kind="stable")
    return [int(c) for c in order[:n] if np.isfinite(score[c])]


@dataclass
class PatchesOptions:
    layer: str | None = None
    """Layer (None: --layer if given, else chosen automatically from receptive-field size)."""
    channels: list[Annotated[int, Range(ge=0)]] | None = None
    """Channels to show (None: those with the highest peak response over the set)."""
    num_channels: Annotated[int, Range(ge=1)] = 8
    """How many channels when choosing automatically."""
    k: Annotated[int, Range(ge=1, le=16)] = 9
    """Top patches per channel (at most 16)."""
    rank: Literal["peak", "zscore"] = "peak"
    """Automatic channel choice: "peak" (highest response) or "zscore" (peak in standard deviations)."""
    interior: bool = True
    """Only units whose whole receptive field lies inside the image (no zero padding in the patch);
    all units when no unit's field fits."""
    auto_rf_fraction: Annotated[float, Range(gt=0, le=1)] = 0.5
    """Automatic layer: deepest convolution whose receptive field is at most this fraction of the input."""
    cell_width: Annotated[int, Range(ge=1)] = 80
    """Display width of each patch in CSS pixels."""


@dataclass(frozen=True)
class PatchesResult:
    """What the section shows; :meth:`results` is its report.json entry."""

    layer: str
    how: str  # how the layer was chosen
    layer_type: str
    rf: ReceptiveField
    stats: Any  # features.compute channel statistics searched (the interior units' when interior)
    shape: tuple[int, int, int]  # C, H, W of the layer's output
    interior: bool  # only units whose field lies inside the image were searched
    interior_region: tuple[int, int, int, int] | None  # y0, x0, y1, x1 of those units
    channels: tuple[int, ...]
    chosen: str  # how the channels were chosen
    k: int  # patches per channel
    tied: dict[int, int]  # channel -> patches tied at its peak (only channels with more than one)
    preds: np.ndarray  # every image's predicted class

    def results(self, ctx: Ctx) -> PatchesResults:
        st, k = self.stats, self.k
        return PatchesResults(
            layer=self.layer, layer_type=self.layer_type,
            tied_channels=sorted(self.tied),
            receptive_field=self.rf.to_dict(), interior_only=self.interior,
            channels=[PatchesChannel(channel=ch, peak=round(float(st.peak[ch]), 5), mean=round(float(st.mean[ch]), 5),
                                     top_images=[ctx.images.name(int(i)) for i in st.top_image[ch, :k] if i >= 0])
                      for ch in self.channels],
        )


def compute_patches(ctx: Ctx, opts: PatchesOptions) -> PatchesResult:
    """The layer, its receptive field, the channels shown and their top images over the whole set."""
    layer, how = patch_layer(ctx, opts)
    feats = ctx.features(layers=[layer])
    full = feats.stats(layer)
    if len(full.shape) != 3:
        raise ValueError(f"layer {layer!r} outputs shape {full.shape}; patches need a CxHxW feature map")
    rf = field_of(ctx, layer)
    st = full.interior if (opts.interior and full.interior is not None) else full
    c = st.channels
    if opts.channels:
        bad = [ch for ch in opts.channels if not 0 <= ch < c]
        if bad:
            raise ValueError(f"patches.channels {bad} out of range: {layer!r} has {c} channels")
        channels = [int(ch) for ch in opts.channels]
        chosen = "option patches.channels"
    else:
        channels = pick_channels(st, opts.num_channels, opts.rank)
        chosen = (f"the {len(channels)} of {c} channels with the highest "
                  f"{'peak' if opts.rank == 'peak' else 'peak z-score'}")
    k = max(1, min(int(opts.k), TOPK))
    tied = {ch: int(np.sum(np.isclose(st.top_values[ch, :k], st.peak[ch], rtol=1e-6, atol=0)
                           & (st.top_image[ch, :k] >= 0))) for ch in channels}
    interior = st is full.interior
    return PatchesResult(layer, how, type(ctx.layer(layer)).__name__, rf, st, (c, *full.spatial), interior,
                         full.interior_region if interior else None, tuple(channels), chosen, k,
                         {ch: t for ch, t in tied.items() if t > 1}, feats.preds)


def _channel_group(ctx: Ctx, res: PatchesResult, ch: int, cell: int) -> Group:
    """One channel: its top patches over the set, each the field of the unit where it peaks in that image."""
    st, rf, k = res.stats, res.rf, res.k
    items = []
    for j in range(k):
        i = int(st.top_image[ch, j])
        if i < 0:
            break
        y, x = int(st.top_y[ch, j]), int(st.top_x[ch, j])
        patch = (cell_in_context(ctx.images.array(i), rf, y, x) if rf.method == TOKEN_PATCH
                 else crop_field(ctx.images.array(i), rf, y, x, PAD_GREY))
        items.append(GridItem(ImageData(patch, pixelated=max(patch.shape[:2]) < 48,
                                        image_id=ctx.images.image_id(i)),
                              label=f"{float(st.top_values[ch, j]):.3g}",
                              sublabel=ctx.images.name(i)[-28:],
                              alt=f"patch of {ctx.images.name(i)} at unit ({y}, {x}) of channel {ch}"))
    return Group(f"Channel {ch}", [Grid(items, columns=min(k, 9 if k <= 9 else int(math.ceil(k / 2))),
                                       cell_width=cell)],
                 description=(f"peak {float(st.peak[ch]):.3g}, mean {float(st.mean[ch]):.3g} over the set"))


def _notes(ctx: Ctx, res: PatchesResult, requested_k: int) -> list[Note]:
    """What was searched, the receptive field, and the warnings (attention, field past the input, ties)."""
    layer, how, rf, k, tied, size = res.layer, res.how, res.rf, res.k, res.tied, ctx.pre.size
    c, hh, ww = res.shape
    notes = []
    if res.interior_region is not None:
        y0, x0, y1, x1 = res.interior_region
        where = (f"Only the {y1 - y0}x{x1 - x0} interior units (rows {y0}..{y1 - 1}, columns {x0}..{x1 - 1}) whose "
                 "field lies wholly inside the image are searched, so no patch contains padding.")
    else:
        where = ("All units are searched; grey in a patch is the zero padding beyond the image edge that the unit "
                 "also sees.")
    field_how = "the unit's own cell" if rf.method == TOKEN_PATCH else "from the gradient support of one unit"
    if rf.method == TOKEN_PATCH:
        notes.append(Note(
            f"Layer {layer} ({how}) comes after attention; each patch is the unit's own {rf.size[0]}x{rf.size[1]} "
            "cell of the image (outlined in orange, with one cell of the image around it). After global or grid "
            "attention a unit's value depends on the whole image, so its "
            "evidence is not confined to the patch shown: the patch says where the unit sits, not all that it sees.",
            kind="warning"))
    notes.append(Note(
        f"Layer {layer} ({how}); output {c}x{hh}x{ww}. Receptive field {rf.size[0]}x{rf.size[1]} input pixels "
        f"(step {rf.jump[0]} px between units, {field_how}), on a {size}x{size} input. "
        f"Channels: {res.chosen}. Each patch is the field of the unit where the channel peaks in that image (one "
        f"patch per image, the best images over the whole set); the label is the activation value. {where}"))
    if max(rf.size) > size and not res.interior:
        notes.append(Note(f"The receptive field ({rf.size[0]} px) is larger than the input ({size} px): every patch "
                          "holds the whole image inside grey padding. Pick an earlier layer (patches.layer) for "
                          "smaller patches.", kind="warning"))
    if tied:
        which = (" and, where every shown patch ties, which images are shown" if max(tied.values()) >= k else "")
        notes.append(Note(f"In {len(tied)} of the {len(res.channels)} channels shown, several patches tie at the "
                          f"channel's largest value ({sum(tied.values())} patches in all): the layer saturates (a "
                          f"clipping activation such as ReLU6), so the order among them{which} is arbitrary. "
                          "Rank on the layer before the activation (patches.layer) to order them.", kind="warning"))
    if requested_k > TOPK:
        notes.append(Note(f"Only the top {TOPK} images per channel are recorded; showing {k}.", kind="info"))
    return notes


def present_patches(ctx: Ctx, res: PatchesResult, opts: PatchesOptions) -> list[Block]:
    """The report blocks of a :class:`PatchesResult`."""
    blocks: list[Block] = [_channel_group(ctx, res, ch, opts.cell_width) for ch in res.channels]
    blocks += _notes(ctx, res, opts.k)
    blocks.append(unit_set(ctx, res.layer, res.stats, res.rf, res.k, res.preds))
    return blocks


@technique(
    "patches", "Maximally activating patches", options=PatchesOptions, order=34, needs_layers=True,
    plans_layers=_plan,
    references=[ZEILER_FERGUS_2014, SPRINGENBERG_2015, GIRSHICK_2014],
    presets={"minimal": {"num_channels": 2, "k": 4}, "full": {"num_channels": 16, "k": 16}},
)
def patches(ctx: Ctx, opts: PatchesOptions) -> Section:
    """Each row is one channel of the layer: the image regions, from the whole image set, where that channel
    responds most strongly, each cropped to exactly the pixels the unit can see. Patches that share a pattern (a
    texture, a part, an object) reveal what the unit detects."""
    res = compute_patches(ctx, opts)
    sec = Section(id="patches", title="Maximally activating patches")
    sec.add(*present_patches(ctx, res, opts))
    sec.params.update({"layer": res.layer, "layer_choice": res.how, "receptive_field": res.rf.to_dict(),
                       "channels": list(res.channels), "interior_only": res.interior})
    sec.results = to_json(res.results(ctx))
    return sec
