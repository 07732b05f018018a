"""Fast style transfer (Johnson, Alahi & Fei-Fei, ECCV 2016): the optimisation done once, in a network.

A feed-forward image transformation network (:class:`reportgen.synthesis.transformnet.TransformNet`: downsampling
convolutions, residual blocks, instance normalisation, resize-convolution upsampling) is trained per style to
minimise the same perceptual loss as Gatys et al.'s optimisation, ``L_content + w_s L_style + w_tv TV``,
computed by the user's frozen model, over the image set (a seeded subsample, with the shown images held out).
After training, stylising an image is one forward pass; the section puts that time beside the per-image time
of the optimisation-based ``style_transfer`` on the same images. The trained network is stored in the build
cache (content-addressed by the model, the image set, the style image and the options), so a rebuild reuses it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch

from ..cache import code_digest
from ..pictures import unit_to_uint8
from ..optvis.plotting import history_plot
from ..papers import GATYS_STYLE_2016, JOHNSON_2016
from ..registry import Range, reads_options, technique
from ..report import Figure, Grid, GridItem, ImageData, KeyValues, Note, Section
from ..synthesis.style import resize_to, style_objective
from ..synthesis.transformnet import TransformNet, load_numpy_state, perceptual_loss, state_to_numpy, train
from ..synthesis.gatys import options_of, per_image_seconds, style_setup


# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)
RESULTS = {
    "forward_ms_per_image": "one transformation-network forward pass per image, ms",
    "optimisation_s_per_image": "the optimisation-based style transfer per image, s (same device, batched)",
    "speed_ratio": "optimisation time / network time per image",
    "training_seconds": "per style: training time of its network, s",
    "cached": "per style: the network came from the cache of an earlier build",
    "held_out_loss_before": "per style: perceptual loss on held-out images before training",
    "held_out_loss_after": "per style: the same after training",
}

@dataclass
class FastStyleOptions:
    max_styles: Annotated[int, Range(ge=1)] = 1
    """Styles to train a network for (the first ones used by style_transfer)."""
    iterations: Annotated[int, Range(ge=1)] = 300
    """Adam iterations of training per style."""
    batch: Annotated[int, Range(ge=1)] = 2
    """Content images per training iteration."""
    lr: Annotated[float, Range(gt=0)] = 3e-3
    """Adam learning rate."""
    train_images: Annotated[int, Range(ge=1)] = 64
    """At most this many images of the set as training content (seeded subsample; shown images held out)."""
    width: Annotated[int, Range(ge=1)] = 16
    """Channels of the first convolution (Johnson et al.: 32)."""
    res_blocks: Annotated[int, Range(ge=0)] = 3
    """Residual blocks (Johnson et al.: 5)."""
    style_weight: Annotated[float, Range(ge=0)] = 10.0
    """w_s for training (style_transfer's layers and TV weight are used): lower than style_transfer's, because a
    small, briefly trained network otherwise learns to paint the style over the content."""


def _content_set(ctx, opts: FastStyleOptions, held_out: list[int], size: int) -> tuple[torch.Tensor, list[int]]:
    pool = [i for i in range(len(ctx.images)) if i not in set(held_out)]
    if not pool:  # a one-image set: train on it (then nothing is held out)
        pool = list(held_out)
    order = ctx.rng("fast_style/train_images").permutation(len(pool))[: max(1, opts.train_images)]
    chosen = sorted(pool[k] for k in order)
    return resize_to(ctx.images.batch(chosen), size), chosen


@technique(
    "fast_style", "Fast style transfer (Johnson et al.)", options=FastStyleOptions, order=140, needs_autograd=True,
    needs_layers=True,
    references=[JOHNSON_2016, GATYS_STYLE_2016], reads=reads_options("style_transfer"),
    presets={
        "minimal": {"iterations": 6, "train_images": 6, "width": 8, "res_blocks": 1},
        "full": {"max_styles": 3, "iterations": 2000, "batch": 4, "width": 32, "res_blocks": 5, "train_images": 1000},
    },
)
def fast_style(ctx, opts: FastStyleOptions) -> Section:
    """A small network is trained to do style transfer in one forward pass, using this model's feature and Gram
    losses as the teacher. The stylised images are a little weaker than per-image optimisation, but each takes
    milliseconds instead of seconds: the time ratio below is the point of the method."""
    st_opts = options_of(ctx, "style_transfer")
    s = style_setup(ctx, st_opts)
    layers, clayer, size = s["layers"], s["content_layer"], s["size"]
    data, chosen = _content_set(ctx, opts, s["idx"], size)
    data = ctx.to_device(data)
    held = ctx.to_device(s["contents"])
    nets, infos = [], []
    for si in range(min(max(1, opts.max_styles), len(s["styles"]))):
        style = s["styles"][si]
        targets = s["style_targets"][si]

        def objective_for(ct, targets=targets):
            return style_objective(layers, targets, opts.style_weight, content=(clayer, ct),
                                   tv_weight=st_opts.tv_weight, pixels=size * size)

        def loss_fn(x, y, objective_for=objective_for):
            return perceptual_loss(ctx.pixel_model, ctx.model, objective_for, layers, clayer, x, y, fit=ctx.fit_input)

        # initial weights (the global RNG is only touched here)
        torch.manual_seed(ctx.seed_for(f"fast_style/weights/{si}"))
        net = TransformNet(opts.width, opts.res_blocks).to(ctx.device)
        style_sha = hashlib.sha256(style.image.numpy().tobytes()).hexdigest()[:16]
        # the trained net is kept apart from the section (other section options reuse it); keyed by the code too
        key = ctx.cache_key("fast_style.net.residual", code_digest(__name__), style_sha, layers, clayer, size,
                            repr(opts), st_opts.tv_weight, chosen)
        with torch.no_grad():
            before = float(loss_fn(held, net(held)).mean())
        hit = ctx.cache.get(key) if ctx.cache is not None else None
        if hit is not None:
            load_numpy_state(net, hit["state"])
            info = {"losses": np.asarray(hit["losses"]), "seconds": float(hit["seconds"]), "cached": True}
        else:
            info = train(net, loss_fn, data, iterations=opts.iterations, batch=opts.batch, lr=opts.lr,
                         generator=ctx.generator(f"fast_style/batches/{si}"), progress=ctx.progress)
            info["cached"] = False
            if ctx.cache is not None:
                ctx.cache.put(key, {"state": state_to_numpy(net), "losses": info["losses"].tolist(),
                                    "seconds": info["seconds"]})
        net.eval()
        with torch.inference_mode():
            after = float(loss_fn(held, net(held)).mean())
            net(held[:1])  # warm-up
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                out = net(held)
                times.append((time.perf_counter() - t0) / held.shape[0])
        info.update(before=before, after=after, forward_s=min(times), images=out.float().cpu(), style=style.name)
        nets.append(net)
        infos.append(info)

    opt_time = per_image_seconds(ctx, st_opts)
    st_res = opt_time["result"]
    sec = Section(id="fast_style", title="Fast style transfer (Johnson et al.)")
    items = []
    for ci in range(len(s["contents"])):
        name = ctx.images.name(s["idx"][ci])
        items.append(GridItem(_img(s["contents"][ci]), label=name, sublabel="content", alt=f"content {name}"))
        for si, info in enumerate(infos):
            b = opt_time["pairs"].index((ci, si))
            items.append(GridItem(_img(info["images"][ci]), label=f"fast × {info['style']}",
                                  sublabel=f"one pass, {1000 * info['forward_s']:.1f} ms", alt=f"{name} fast-stylised"))
            items.append(GridItem(_img(st_res.images[b]), label=f"optimised × {info['style']}",
                                  sublabel=f"{opt_time['seconds_per_image']:.2f} s per image",
                                  alt=f"{name} stylised by optimisation"))
    sec.add(Grid(items, columns=1 + 2 * len(infos), cell_width=160,
                 caption="Held-out content images (not used in training): the transformation network's output beside "
                         "the optimisation-based result of style_transfer for the same image and style."))
    ratio = opt_time["seconds_per_image"] / max(np.mean([i["forward_s"] for i in infos]), 1e-9)
    sec.add(Figure(history_plot({f"{i['style']}": i["losses"] for i in infos}, title="training loss per iteration",
                                ylabel="perceptual loss", xlabel="iteration"),
                   caption="Training loss (content + style + TV, mean over the batch) per Adam iteration.",
                   alt="fast style training loss"))
    improved = all(i["after"] < i["before"] for i in infos)
    sec.add(Note(
        f"One forward pass takes {1000 * np.mean([i['forward_s'] for i in infos]):.1f} ms per image against "
        f"{opt_time['seconds_per_image']:.2f} s per image for the optimisation (batched, same device): about "
        f"{ratio:,.0f}× faster once trained. On the held-out images the loss fell from "
        + ", ".join(f"{i['before']:.2f} to {i['after']:.2f} ({i['style']})" for i in infos) + " with training."
        + ("" if improved else " For at least one style it did not fall: the network is undertrained."),
        kind="info" if improved else "warning"))
    sec.add(KeyValues([
        ("network", f"TransformNet: width {opts.width}, {opts.res_blocks} residual blocks, instance norm, "
                    f"resize-conv upsampling, {sum(p.numel() for p in nets[0].parameters()):,} parameters"),
        ("training", f"Adam lr {opts.lr:g}, {opts.iterations} iterations of {opts.batch} images "
                     f"({len(chosen)} training images, {len(s['idx'])} held out), {size} px; losses of "
                     f"style_transfer with w_s = {opts.style_weight:g} (style_transfer: {st_opts.style_weight:g}; "
                     f"layers {', '.join(layers)}, content {clayer})"),
        ("training time", ", ".join(f"{i['style']}: {i['seconds']:.1f} s" + (" (cached network, from an earlier build)"
                                                                           if i["cached"] else "") for i in infos)),
        ("speed", f"forward {1000 * np.mean([i['forward_s'] for i in infos]):.2f} ms per image vs optimisation "
                  f"{opt_time['seconds_per_image']:.2f} s per image: ratio {ratio:,.0f}"),
    ], title="Settings"))
    sec.params.update(styles=[i["style"] for i in infos], layers=layers, content_layer=clayer)
    sec.results.update(
        forward_ms_per_image=round(1000 * float(np.mean([i["forward_s"] for i in infos])), 3),
        optimisation_s_per_image=round(opt_time["seconds_per_image"], 3), speed_ratio=round(float(ratio), 1),
        training_seconds=[round(i["seconds"], 1) for i in infos], cached=[i["cached"] for i in infos],
        held_out_loss_before=[i["before"] for i in infos], held_out_loss_after=[i["after"] for i in infos])
    return sec


def _img(x: torch.Tensor, width: int = 160) -> ImageData:
    return ImageData(unit_to_uint8(x.permute(1, 2, 0).numpy()), display_width=width)
