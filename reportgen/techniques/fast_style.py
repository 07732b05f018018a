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
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import torch

from ..cache import code_digest
from ..pictures import unit_to_uint8
from ..optvis.plotting import history_plot
from ..papers import GATYS_STYLE_2016, JOHNSON_2016
from ..registry import Range, reads_options, technique
from ..report import Figure, Grid, GridItem, ImageData, KeyValues, Note, Section
from ..results_schema import result_type, to_json
from ..synthesis.style import resize_to, style_objective
from ..synthesis.transformnet import TransformNet, load_numpy_state, perceptual_loss, state_to_numpy, train
from ..synthesis.gatys import options_of, per_image_seconds, style_setup

if TYPE_CHECKING:
    from ..context import Ctx


# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)


@result_type
class FastStyleResults:
    forward_ms_per_image: float
    """one transformation-network forward pass per image, ms"""
    optimisation_s_per_image: float
    """the optimisation-based style transfer per image, s (same device, batched)"""
    speed_ratio: float
    """optimisation time / network time per image"""
    training_seconds: list[float]
    """per style: training time of its network, s"""
    cached: list[bool]
    """per style: the network came from the cache of an earlier build"""
    held_out_loss_before: list[float]
    """per style: perceptual loss on held-out images before training"""
    held_out_loss_after: list[float]
    """per style: the same after training"""


RESULTS = FastStyleResults  # report.json "results" of this section (docs/results.md is generated from it)

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


def _content_set(ctx: Ctx, opts: FastStyleOptions, held_out: list[int], size: int) -> tuple[torch.Tensor, list[int]]:
    pool = [i for i in range(len(ctx.images)) if i not in set(held_out)]
    if not pool:  # a one-image set: train on it (then nothing is held out)
        pool = list(held_out)
    order = ctx.rng("fast_style/train_images").permutation(len(pool))[: max(1, opts.train_images)]
    chosen = sorted(pool[k] for k in order)
    return resize_to(ctx.images.batch(chosen), size), chosen


@dataclass(frozen=True, eq=False)
class StyleNet:
    """One style's trained transformation network, measured on the held-out images."""

    style: str
    losses: np.ndarray  # training loss per iteration
    seconds: float  # training time
    cached: bool  # the network came from the cache
    before: float  # held-out perceptual loss before training
    after: float  # the same after
    forward_s: float  # one forward pass per image, s
    images: torch.Tensor  # the held-out images stylised, (n, 3, H, W) in [0, 1]
    parameters: int


@dataclass(frozen=True, eq=False)
class FastStyleResult:
    """What the section computed: one trained network per style and the optimisation it is timed against."""

    nets: tuple[StyleNet, ...]
    setup: dict[str, Any]  # style_transfer's setup: layers, content_layer, size, idx (held out), contents, styles
    chosen: tuple[int, ...]  # training images
    optimisation: dict[str, Any]  # per_image_seconds: seconds_per_image, result (its images), pairs

    @property
    def forward_s(self) -> float:
        return float(np.mean([n.forward_s for n in self.nets]))

    @property
    def ratio(self) -> float:
        return self.optimisation["seconds_per_image"] / max(np.mean([n.forward_s for n in self.nets]), 1e-9)

    def results(self) -> FastStyleResults:
        """The section's report.json ``results``."""
        return FastStyleResults(
            forward_ms_per_image=round(1000 * self.forward_s, 3),
            optimisation_s_per_image=round(self.optimisation["seconds_per_image"], 3),
            speed_ratio=round(float(self.ratio), 1), training_seconds=[round(n.seconds, 1) for n in self.nets],
            cached=[n.cached for n in self.nets], held_out_loss_before=[n.before for n in self.nets],
            held_out_loss_after=[n.after for n in self.nets])


def _train_style(ctx: Ctx, opts: FastStyleOptions, st_opts, s: dict[str, Any], si: int, data: torch.Tensor,
                 held: torch.Tensor, chosen: list[int]) -> StyleNet:
    """Train (or load from the cache) style ``si``'s network; its held-out losses and forward time."""
    layers, clayer, size = s["layers"], s["content_layer"], s["size"]
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
    return StyleNet(style.name, info["losses"], info["seconds"], info["cached"], before, after, min(times),
                    out.float().cpu(), sum(p.numel() for p in net.parameters()))


def compute_fast_style(ctx: Ctx, opts: FastStyleOptions, st_opts) -> FastStyleResult:
    """Train one network per style on the image set (shown images held out), then time style_transfer's
    optimisation on the same images."""
    s = style_setup(ctx, st_opts)
    data, chosen = _content_set(ctx, opts, s["idx"], s["size"])
    data = ctx.to_device(data)
    held = ctx.to_device(s["contents"])
    nets = [_train_style(ctx, opts, st_opts, s, si, data, held, chosen)
            for si in range(min(max(1, opts.max_styles), len(s["styles"])))]
    return FastStyleResult(tuple(nets), s, tuple(chosen), per_image_seconds(ctx, st_opts))


def show_fast_style(ctx: Ctx, opts: FastStyleOptions, st_opts, r: FastStyleResult) -> list[Any]:
    """The section's blocks: held-out images (content, fast, optimised), training curves, the verdict, settings."""
    s, opt_time, infos = r.setup, r.optimisation, r.nets
    items = []
    for ci in range(len(s["contents"])):
        name = ctx.images.name(s["idx"][ci])
        items.append(GridItem(_img(s["contents"][ci]), label=name, sublabel="content", alt=f"content {name}"))
        for si, info in enumerate(infos):
            b = opt_time["pairs"].index((ci, si))
            items.append(GridItem(_img(info.images[ci]), label=f"fast × {info.style}",
                                  sublabel=f"one pass, {1000 * info.forward_s:.1f} ms", alt=f"{name} fast-stylised"))
            items.append(GridItem(_img(opt_time["result"].images[b]), label=f"optimised × {info.style}",
                                  sublabel=f"{opt_time['seconds_per_image']:.2f} s per image",
                                  alt=f"{name} stylised by optimisation"))
    ratio, improved = r.ratio, all(i.after < i.before for i in infos)
    return [
        Grid(items, columns=1 + 2 * len(infos), cell_width=160,
             caption="Held-out content images (not used in training): the transformation network's output beside "
                     "the optimisation-based result of style_transfer for the same image and style."),
        Figure(history_plot({f"{i.style}": i.losses for i in infos}, title="training loss per iteration",
                            ylabel="perceptual loss", xlabel="iteration"),
               caption="Training loss (content + style + TV, mean over the batch) per Adam iteration.",
               alt="fast style training loss"),
        Note(f"One forward pass takes {1000 * r.forward_s:.1f} ms per image against "
             f"{opt_time['seconds_per_image']:.2f} s per image for the optimisation (batched, same device): about "
             f"{ratio:,.0f}× faster once trained. On the held-out images the loss fell from "
             + ", ".join(f"{i.before:.2f} to {i.after:.2f} ({i.style})" for i in infos) + " with training."
             + ("" if improved else " For at least one style it did not fall: the network is undertrained."),
             kind="info" if improved else "warning"),
        KeyValues([
            ("network", f"TransformNet: width {opts.width}, {opts.res_blocks} residual blocks, instance norm, "
                        f"resize-conv upsampling, {infos[0].parameters:,} parameters"),
            ("training", f"Adam lr {opts.lr:g}, {opts.iterations} iterations of {opts.batch} images "
                         f"({len(r.chosen)} training images, {len(s['idx'])} held out), {s['size']} px; losses of "
                         f"style_transfer with w_s = {opts.style_weight:g} (style_transfer: {st_opts.style_weight:g}; "
                         f"layers {', '.join(s['layers'])}, content {s['content_layer']})"),
            ("training time", ", ".join(f"{i.style}: {i.seconds:.1f} s" + (" (cached network, from an earlier build)"
                                                                         if i.cached else "") for i in infos)),
            ("speed", f"forward {1000 * r.forward_s:.2f} ms per image vs optimisation "
                      f"{opt_time['seconds_per_image']:.2f} s per image: ratio {ratio:,.0f}"),
        ], title="Settings"),
    ]


@technique(
    "fast_style", "Fast style transfer (Johnson et al.)", options=FastStyleOptions, order=140, needs_autograd=True,
    needs_layers=True,
    references=[JOHNSON_2016, GATYS_STYLE_2016], reads=reads_options("style_transfer"),
    presets={
        "minimal": {"iterations": 6, "train_images": 6, "width": 8, "res_blocks": 1},
        "full": {"max_styles": 3, "iterations": 2000, "batch": 4, "width": 32, "res_blocks": 5, "train_images": 1000},
    },
    uses=("style_transfer",),  # its setup and timed grid (synthesis/gatys.py)
)
def fast_style(ctx: Ctx, opts: FastStyleOptions) -> Section:
    """A small network is trained to do style transfer in one forward pass, using this model's feature and Gram
    losses as the teacher. The stylised images are a little weaker than per-image optimisation, but each takes
    milliseconds instead of seconds: the time ratio below is the point of the method."""
    st_opts = options_of(ctx, "style_transfer")
    r = compute_fast_style(ctx, opts, st_opts)
    sec = Section(id="fast_style", title="Fast style transfer (Johnson et al.)")
    for block in show_fast_style(ctx, opts, st_opts, r):
        sec.add(block)
    sec.params.update(styles=[n.style for n in r.nets], layers=r.setup["layers"],
                      content_layer=r.setup["content_layer"])
    sec.results = to_json(r.results())
    return sec


def _img(x: torch.Tensor, width: int = 160) -> ImageData:
    return ImageData(unit_to_uint8(x.permute(1, 2, 0).numpy()), display_width=width)
