"""DeepDream: amplify the features a layer already sees (Mordvintsev, Olah & Tyka 2015).

From a real image, repeat: forward to layer ``l``, set the layer's gradient to its own activation
(i.e. ascend ``0.5 ||a_l(I)||^2``), backprop to the pixels and take a step ``I <- I + lr * g / mean|g|``,
with a random jitter (roll) each step and pixels clipped to [0, 1]; do this over octaves (a small copy
of the image first, then larger ones, carrying the added detail up). Whatever the layer responds to
gets stronger: shallow layers paint strokes and textures, deeper layers paint object parts (eyes,
fur, arches) where the network half-sees them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import layers as layers_mod
from .. import optvis
from ..imaging import unit_to_uint8
from ..optvis import objectives as O
from ..optvis import transforms as T
from ..optvis.plotting import history_plot
from ..papers import MORDVINTSEV_2015
from ..registry import technique
from ..report import Figure, Group, ImageData, KeyValues, Row, Section


@dataclass
class DeepDreamOptions:
    layers: list[str] | None = None
    """Layers to dream with (None: three convolutions at 1/4, 1/2 and 3/4 of the depth)."""
    max_images: int = 2
    """How many images (the first ones of the set)."""
    image_size: int | None = None
    """Side of the dreamed image (None: the model's input size)."""
    octaves: int = 3
    """Scales, each ``octave_scale`` times smaller than the next."""
    octave_scale: float = 1.4
    """Size ratio between octaves."""
    steps: int = 10
    """Gradient-ascent steps per octave."""
    lr: float = 0.01
    """Step size in pixel units ([0, 1]) for a gradient normalised to a mean absolute value of 1."""
    jitter: int = 16
    """Random roll of up to this many pixels each step (scaled down at small octaves)."""


def default_layers(model, k: int = 3) -> list[str]:
    """``k`` convolutions evenly spread through the depth (by dotted name, never by index)."""
    convs = layers_mod.conv_layers(model)
    if not convs:
        return []
    fracs = [(j + 1) / (k + 1) for j in range(k)]
    picks = [convs[min(len(convs) - 1, int(round(f * (len(convs) - 1))))] for f in fracs]
    return list(dict.fromkeys(picks))


def dream(pixel_model, layer_names: list[str], image: torch.Tensor, *, octaves: int = 3, octave_scale: float = 1.4,
          steps: int = 10, lr: float = 0.01, jitter: int = 16, generator: torch.Generator | None = None,
          layer_root=None, progress=None) -> tuple[torch.Tensor, list[optvis.OptResult]]:
    """Dream ``image`` (3 x H x W in [0, 1]) once per layer (batched: element b uses layer b).

    Returns (dreams L x 3 x H x W, one OptResult per octave, smallest first)."""
    L = len(layer_names)
    base = image[None].expand(L, -1, -1, -1).contiguous()
    pyramid = [base]
    for _ in range(max(1, octaves) - 1):
        h, w = pyramid[-1].shape[2:]
        nh, nw = max(8, round(h / octave_scale)), max(8, round(w / octave_scale))
        pyramid.append(F.interpolate(pyramid[-1], size=(nh, nw), mode="bilinear", align_corners=False,
                                     antialias=True))
    objective = O.per_image([O.layer_l2(n) for n in layer_names])
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
                            layer_root=layer_root, progress=progress,
                            desc=f"DeepDream octave {k + 1}/{len(pyramid)}")
        results.append(res)
        detail = res.images.to(oct_img) - oct_img
    return results[-1].images, results


@technique(
    "deepdream",
    "DeepDream",
    options=DeepDreamOptions,
    presets={
        "minimal": {"max_images": 1, "octaves": 2, "steps": 3, "jitter": 2},
        "full": {"max_images": 4, "octaves": 4, "steps": 20, "image_size": 320},
    },
    references=[MORDVINTSEV_2015],
    order=100,
    summary=(
        "The image is changed by gradient ascent to make the chosen layer's activations stronger everywhere, so "
        "whatever that layer already detects is exaggerated. Shallow layers add strokes and textures; deeper "
        "layers hallucinate object parts, showing what the network is primed to see."
    ),
    needs_autograd=True,
    needs_layers=True,
)
def deepdream(ctx, opts: DeepDreamOptions) -> Section:
    names = list(opts.layers) if opts.layers else default_layers(ctx.model)
    if not names:
        names = [ctx.chosen_layer()]
    for name in names:
        ctx.layer(name)  # validate early, with a helpful error
    n = min(max(1, opts.max_images), len(ctx.images))
    size = int(opts.image_size or ctx.pre.size)
    sec = Section(id="deepdream", title="DeepDream")
    for i in range(n):
        img = ctx.images.tensor(i)
        if img.shape[-1] != size:
            img = F.interpolate(img[None], size=(size, size), mode="bilinear", align_corners=False,
                                antialias=True)[0]
        img = ctx.to_device(img)
        dreams, results = dream(ctx.pixel_model, names, img, octaves=opts.octaves, octave_scale=opts.octave_scale,
                                steps=opts.steps, lr=opts.lr, jitter=opts.jitter, generator=ctx.generator(7000 + i),
                                layer_root=ctx.model, progress=ctx.progress)
        figs = [Figure(ImageData(unit_to_uint8(img.cpu().permute(1, 2, 0).numpy()), display_width=224),
                       caption=f"{ctx.images.name(i)} (input)", alt=f"input {ctx.images.name(i)}")]
        hist = np.concatenate([r.history for r in results], 0)  # steps x layers
        for b, name in enumerate(names):
            gain = [float(r.history[-1, b] / max(r.history[0, b], 1e-12)) for r in results]
            figs.append(Figure(ImageData(unit_to_uint8(dreams[b].permute(1, 2, 0).numpy()), display_width=224),
                               caption=f"dreamed at {name} ({type(ctx.layer(name)).__name__}); "
                                       f"0.5‖a‖² ×{gain[-1]:.2f} over the last octave",
                               alt=f"DeepDream of {ctx.images.name(i)} at layer {name}"))
        boundaries = list(np.cumsum([len(r.history) for r in results])[:-1])
        norm = hist / np.maximum(hist[:1], 1e-12)
        plot = history_plot({nm: norm[:, b] for b, nm in enumerate(names)}, boundaries=boundaries,
                            title="0.5‖a‖² per step (÷ first step); dashed: new octave",
                            ylabel="relative objective")
        sec.add(Group(ctx.images.name(i), [Row(figs), Figure(plot, caption="DeepDream objective per step, "
                                                               "relative to the first step of the first octave",
                                                               alt="objective per step")]))
    sec.add(KeyValues([
        ("layers", ", ".join(names) + ("" if opts.layers else " (convolutions at 1/4, 1/2, 3/4 of the depth)")),
        ("schedule", f"{opts.octaves} octave(s) × {opts.steps} steps, octave scale {opts.octave_scale:g}, "
                     f"image {size}×{size}"),
        ("step", f"I ← clip(I + {opts.lr:g}·g/mean|g|, 0, 1), jitter ±{opts.jitter}px (scaled per octave)"),
    ], title="Settings"))
    sec.params["layers"] = names
    return sec
