"""DeepDream: amplify the features a layer already sees (Mordvintsev, Olah & Tyka 2015).

From a real image, repeat: forward to layer ``l``, set the layer's gradient to its own *rectified*
activation (i.e. ascend ``0.5 ||a_l(I)||^2`` where ``a_l`` is the output of the activation function
that follows the chosen block, or ``relu`` of the layer's output when no activation follows it: the
paper dreams on rectified units, and squaring a raw pre-activation would reward pushing negative
responses further down), backprop to the pixels and take a step ``I <- I + lr * g / mean|g|``,
with a random jitter (roll) each step and pixels clipped to [0, 1]; do this over octaves (a small copy
of the image first, then larger ones, carrying the added detail up). Whatever the layer responds to
gets stronger: shallow layers paint strokes and textures, deeper layers paint object parts (eyes,
fur, arches) where the network half-sees them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..inspection import layers as layers_mod
from ..inspection.activations import spread_layers
from .. import optvis
from ..pictures import unit_to_uint8
from ..optvis import objectives as O
from ..optvis import transforms as T
from ..optvis.plotting import history_plot
from ..papers import MORDVINTSEV_2015
from ..registry import Range, technique
from ..report import Block, Figure, Group, ImageData, KeyValues, Row, Section, plural
from ..results_schema import local, result_type, to_json
from ..sampling import spread_indices

if TYPE_CHECKING:
    from ..context import Ctx

# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)


@result_type
class DeepDreamDream:
    image: str
    """image name"""
    layer: str
    """requested layer"""
    objective_layer: str
    """layer read"""
    relu_applied: bool
    """relu applied"""
    gain_last_octave: float
    """objective at the end / at the start of the last octave"""
    objective_start_last_octave: float
    """0.5 ||a||^2 at the start of the last octave"""
    objective_end: float
    """0.5 ||a||^2 at the end"""


@result_type
class DeepDreamResults:
    layers: list[str]
    """layers requested"""
    objective_layers: list[str]
    """layer each objective reads (the activation after the requested one where there is one)"""
    relu_applied: list[bool]
    """per layer: relu applied to the layer's output because no activation follows it"""
    jitter_px: int
    """jitter at full size after the cap"""
    image_size: int
    """side of the dreamed images"""
    dreams: list[DeepDreamDream]
    targets: list[tuple[str, bool, str]] = local()  # per layer: (layer read, relu applied, in words)
    runs: list[tuple[int, torch.Tensor, torch.Tensor, list[Any]]] = local()  # per image: (index, input, the
    # dreamed image per layer, the optvis result per octave)


RESULTS = DeepDreamResults  # report.json "results" of this section (docs/results.md is generated from it)


@dataclass
class DeepDreamOptions:
    layers: list[str] | None = None
    """Layers to dream with (None: the activations after three convolutions at 1/4, 1/2 and 3/4 of the
    depth). A convolution is replaced by the activation module that follows it; without one, relu(a) is used."""
    max_images: Annotated[int, Range(ge=1)] = 2
    """How many images (seeded, spread across classes)."""
    image_size: Annotated[int, Range(ge=1)] | None = None
    """Side of the dreamed image (None: the model's input size)."""
    octaves: Annotated[int, Range(ge=1)] = 3
    """Scales, each ``octave_scale`` times smaller than the next."""
    octave_scale: Annotated[float, Range(ge=1)] = 1.4
    """Size ratio between octaves."""
    steps: Annotated[int, Range(ge=1)] = 10
    """Gradient-ascent steps per octave."""
    lr: Annotated[float, Range(gt=0)] = 0.01
    """Step size in pixel units ([0, 1]) for a gradient normalised to a mean absolute value of 1."""
    jitter: Annotated[int, Range(ge=0)] = 16
    """Random roll of up to this many pixels each step (scaled down at small octaves)."""
    max_jitter_fraction: Annotated[float, Range(ge=0, le=1)] = 0.07
    """Cap on the roll as a fraction of the image side (16 px at 224 px, 2 px at 28 px)."""


def default_layers(model, k: int = 3, called: set[str] | None = None) -> list[str]:
    """``k`` convolutions evenly spread through the depth (by dotted name, never by index), preferring
    convolutions followed by an activation (on MobileNetV2 the linear 1x1 projections have none); only those
    that run in eval mode (``called``)."""
    convs = [c for c in layers_mod.conv_layers(model) if called is None or c in called]
    rectified = [c for c in convs if layers_mod.activation_after(model, c)]
    convs = rectified or convs
    if not convs:
        return []
    fracs = [(j + 1) / (k + 1) for j in range(k)]
    picks = [convs[min(len(convs) - 1, int(round(f * (len(convs) - 1))))] for f in fracs]
    return list(dict.fromkeys(picks))


def rectified_layer(model, name: str) -> tuple[str, bool, str]:
    """(layer to read, apply relu to it?, how to say it) for a requested dream layer ``name``."""
    m = layers_mod.resolve_layer(model, name)
    if isinstance(m, layers_mod.ACTIVATION_TYPES):
        return name, False, f"{name} ({type(m).__name__} output)"
    act = layers_mod.activation_after(model, name)
    if act:
        return act, False, f"{act} ({type(layers_mod.resolve_layer(model, act)).__name__} after {name})"
    return name, True, f"relu({name}) (no activation module follows {type(m).__name__} {name})"


def rectified_l2(layer: str, relu: bool) -> O.Objective:
    """``0.5 ||a||^2`` of ``layer``'s output, rectified first when ``relu``; gradient = the (rectified) activation."""
    if not relu:
        return O.layer_l2(layer)

    def fn(acts, img):
        a = acts[layer]
        return 0.5 * torch.relu(a).pow(2).flatten(1).sum(1)

    return O.Objective(fn, (layer,), f"0.5·||relu({layer})||²")


def dream(pixel_model, layer_names: Sequence[str | tuple[str, bool]], image: torch.Tensor, *, octaves: int = 3,
          octave_scale: float = 1.4, steps: int = 10, lr: float = 0.01, jitter: int = 16,
          generator: torch.Generator | None = None,
          layer_root=None, progress=None, fit=None) -> tuple[torch.Tensor, list[optvis.OptResult]]:
    """Dream ``image`` (3 x H x W in [0, 1]) once per layer (batched: element b uses layer b).
    A layer is a name (its output squared) or ``(name, relu)`` (see :func:`rectified_l2`). ``fit``
    (``ctx.fit_input``) resizes each octave to a size the model accepts before the forward pass.

    Returns (dreams L x 3 x H x W, one OptResult per octave, smallest first)."""
    L = len(layer_names)
    base = image[None].expand(L, -1, -1, -1).contiguous()
    pyramid = [base]
    for _ in range(max(1, octaves) - 1):
        h, w = pyramid[-1].shape[2:]
        nh, nw = max(8, round(h / octave_scale)), max(8, round(w / octave_scale))
        pyramid.append(F.interpolate(pyramid[-1], size=(nh, nw), mode="bilinear", align_corners=False,
                                     antialias=True))
    objective = O.per_image([rectified_l2(n, False) if isinstance(n, str) else rectified_l2(*n)
                             for n in layer_names])
    detail = torch.zeros_like(pyramid[-1])
    results = []
    full = base.shape[-1]
    for k, oct_img in enumerate(reversed(pyramid)):
        if detail.shape[2:] != oct_img.shape[2:]:
            detail = F.interpolate(detail, size=oct_img.shape[2:], mode="bilinear", align_corners=False)
        start = (oct_img + detail).clamp(0, 1)
        j = max(1, round(jitter * oct_img.shape[-1] / full)) if jitter > 0 else 0
        res = optvis.render(pixel_model, objective, optvis.pixel_image(init=start), transforms=[T.jitter(j)],
                            optimizer="sgd", lr=lr, grad_norm="mean_abs", steps=steps, generator=generator,
                            layer_root=layer_root, progress=progress, fit=fit,
                            desc=f"DeepDream octave {k + 1}/{len(pyramid)}")
        results.append(res)
        detail = res.images.to(oct_img) - oct_img
    return results[-1].images, results


@technique(
    "deepdream", "DeepDream", options=DeepDreamOptions, order=100, needs_autograd=True, needs_layers=True,
    references=[MORDVINTSEV_2015],
    presets={
        "minimal": {"max_images": 1, "octaves": 2, "steps": 3},
        "full": {"max_images": 4, "octaves": 4, "steps": 20, "image_size": 320},
    },
)
def deepdream(ctx: Ctx, opts: DeepDreamOptions) -> Section:
    """The image is changed by gradient ascent to make the chosen layer's rectified activations (the output of the
    activation function after it) stronger everywhere, so whatever that layer already detects is exaggerated.
    Shallow layers add strokes and textures; deeper layers hallucinate object parts, showing what the network is
    primed to see."""
    r = compute_deepdream(ctx, opts)
    sec = Section(id="deepdream", title="DeepDream")
    sec.add(*present_deepdream(ctx, opts, r))
    sec.params["layers"] = r.layers
    sec.results = to_json(r)
    return sec


def compute_deepdream(ctx: Ctx, opts: DeepDreamOptions) -> DeepDreamResults:
    """The layers, then each chosen image dreamed at each of them octave by octave: images and objective curves, no
    blocks."""
    probe = ctx.probe()
    if opts.layers:
        names = list(opts.layers)
    elif probe.default_layer(layers_mod.last_conv(ctx.model)) != layers_mod.last_conv(ctx.model):
        names = spread_layers(ctx.model, (1 / 3, 2 / 3, 1.0), probe.called)  # convolutions are only a stem
    else:
        names = default_layers(ctx.model, called=probe.called)
    if not names:
        names = [ctx.chosen_layer()]
    for name in names:
        ctx.layer(name)  # validate early, with a helpful error
    targets = [rectified_layer(ctx.model, name) for name in names]  # (read, relu?, text)
    n = min(max(1, opts.max_images), len(ctx.images))
    size = int(opts.image_size or ctx.pre.size)
    jitter = min(int(opts.jitter), max(1, round(opts.max_jitter_fraction * size))) if opts.jitter > 0 else 0
    gains: list[DeepDreamDream] = []
    runs = []
    for i in spread_indices(ctx, n, "deepdream/images"):
        img = ctx.images.tensor(i)
        if img.shape[-1] != size:
            img = F.interpolate(img[None], size=(size, size), mode="bilinear", align_corners=False,
                                antialias=True)[0]
        img = ctx.to_device(img)
        dreams, results = dream(ctx.pixel_model, [(r, relu) for r, relu, _ in targets], img, octaves=opts.octaves,
                                octave_scale=opts.octave_scale, steps=opts.steps, lr=opts.lr, jitter=jitter,
                                generator=ctx.generator(f"deepdream/jitter/{i}"),
                                layer_root=ctx.model, progress=ctx.progress, fit=ctx.fit_input)
        runs.append((i, img, dreams, results))
        for b, name in enumerate(names):
            gain = float(results[-1].history[-1, b] / max(results[-1].history[0, b], 1e-12))
            gains.append(DeepDreamDream(image=ctx.images.name(i), layer=name, objective_layer=targets[b][0],
                                        relu_applied=targets[b][1], gain_last_octave=round(gain, 4),
                                        objective_start_last_octave=float(results[-1].history[0, b]),
                                        objective_end=float(results[-1].history[-1, b])))
    return DeepDreamResults(layers=names, objective_layers=[t[0] for t in targets],
                            relu_applied=[t[1] for t in targets], jitter_px=jitter, image_size=size, dreams=gains,
                            targets=targets, runs=runs)


def present_deepdream(ctx: Ctx, opts: DeepDreamOptions, r: DeepDreamResults) -> list[Block]:
    """Per image the input and its dream at each layer with the objective's curve, then the settings."""
    names, targets, size, jitter = r.layers, r.targets, r.image_size, r.jitter_px
    blocks: list[Block] = []
    for i, img, dreams, results in r.runs:
        figs: list[Block] = [Figure(ImageData(unit_to_uint8(img.cpu().permute(1, 2, 0).numpy()), display_width=224),
                       caption=f"{ctx.images.name(i)} (input)", alt=f"input {ctx.images.name(i)}")]
        hist = np.concatenate([res.history for res in results], 0)  # steps x layers
        for b, name in enumerate(names):
            gain = float(results[-1].history[-1, b] / max(results[-1].history[0, b], 1e-12))
            weak = "" if gain > 1.05 else " — barely changed: the layer is hardly active here"
            figs.append(Figure(ImageData(unit_to_uint8(dreams[b].permute(1, 2, 0).numpy()), display_width=224),
                               caption=f"dreamed at {targets[b][2]}; 0.5‖a‖² ×{gain:.2f} over the last "
                                       f"octave{weak}",
                               alt=f"DeepDream of {ctx.images.name(i)} at layer {name}"))
        boundaries = list(np.cumsum([len(res.history) for res in results])[:-1])
        norm = hist / np.maximum(hist[:1], 1e-12)
        plot = history_plot({nm: norm[:, b] for b, nm in enumerate(names)}, boundaries=boundaries,
                            title="0.5‖a‖² per step (÷ first step); dashed: new octave",
                            ylabel="relative objective")
        blocks.append(Group(ctx.images.name(i), [Row(figs), Figure(plot, caption="DeepDream objective per step, "
                                                                   "relative to the first step of the first octave",
                                                                   alt="objective per step")]))
    blocks.append(KeyValues([
        ("layers", ", ".join(names) + ("" if opts.layers else " (convolutions at 1/4, 1/2, 3/4 of the depth)")),
        ("objective", "0.5‖a‖² of the rectified activation: " + "; ".join(t for _, _, t in targets)),
        ("schedule", f"{plural(opts.octaves, 'octave')} × {plural(opts.steps, 'step')}, "
                     f"octave scale {opts.octave_scale:g}, image {size}×{size}"),
        ("step", f"I ← clip(I + {opts.lr:g}·g/mean|g|, 0, 1), jitter ±{jitter}px at full size (scaled per "
                 f"octave; at most {opts.max_jitter_fraction:g} of the side)"),
    ], title="Settings"))
    return blocks
