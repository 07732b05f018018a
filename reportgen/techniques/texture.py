"""Texture synthesis two ways, from the same source textures.

1. Non-parametric (Efros & Leung 1999; Wei & Levoy 2000): pixels generated in scan-line order over a pyramid,
   each copied from the source pixel whose causal neighbourhood matches best
   (:mod:`reportgen.synthesis.nearest_neighbour`).
   No model: the texture is a rearrangement of the source's own pixels.
2. Gram-matrix synthesis through the user's model (Gatys, Ecker & Bethge 2015): from noise, minimise
   ``sum_l ||G_l(x) - G_l(s)||^2 / ||G_l(s)||^2`` with ``G_l = F_l F_l^T / (H_l W_l)``, for growing sets of
   layers. Matching only the first layer reproduces colours and fine grain; each deeper layer adds larger
   structures, because the Gram matrices of deeper layers summarise bigger patches: the paper's figure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np

from ..pictures import unit_to_uint8
from ..synthesis.nearest_neighbour import synthesize_nn
from ..optvis.plotting import history_plot
from ..papers import EFROS_LEUNG_1999, GATYS_TEXTURE_2015, WEI_LEVOY_2000
from ..registry import Range, technique
from ..report import Block, Figure, Grid, GridItem, ImageData, KeyValues, Note, Section, plural
from ..results_schema import local, result_type, to_json
from ..synthesis.gatys import gram_synthesis
from ..synthesis.style import resize_to, resolve_parameterization

if TYPE_CHECKING:
    from ..context import Ctx


# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)


@result_type
class TextureResults:
    layers: list[str]
    """the layers whose Gram matrices are matched"""
    optimizer: str
    """the optimiser asked for (adam or lbfgs)"""
    gram_seconds: float
    """wall time of the Gram syntheses, s"""
    nn_seconds: list[float]
    """per texture: wall time of the nearest-neighbour synthesis, s"""
    nn_histogram_distance: list[float]
    """per texture: colour-histogram total variation distance of the nearest-neighbour synthesis from the source (0 =
    identical)"""
    gram_error_by_set: list[list[float]]
    """per texture, per growing set of matched layers: mean relative Gram error"""
    loss_fell: bool
    """the Gram loss fell for every synthesis"""
    contrast_by_set: list[list[float]]
    """per texture, per set of layers: pixel std of the synthesis / of the source"""
    syn: dict[str, Any] = local()  # synthesis.gatys.gram_synthesis's record (textures, result, errors, n_sets, ...)
    nn_images: list[np.ndarray] = local()  # per texture: its nearest-neighbour synthesis, uint8
    nn_times: list[float] = local()  # the same times and distances unrounded
    nn_hist: list[float] = local()
    contrast: np.ndarray = local()  # per synthesis (texture-major): contrast, mean Gram error, histogram distance
    err: np.ndarray = local()
    hist: np.ndarray = local()


RESULTS = TextureResults  # report.json "results" of this section (docs/results.md is generated from it)

@dataclass
class TextureOptions:
    max_textures: Annotated[int, Range(ge=1)] = 3
    """How many texture images (the first ones, sorted by name)."""
    nn_source_size: Annotated[int, Range(ge=1)] = 64
    """Side of the source texture for nearest-neighbour synthesis."""
    nn_size: Annotated[int, Range(ge=1)] = 96
    """Side of the nearest-neighbour output."""
    nn_window: Annotated[int, Range(ge=1)] = 5
    """Side of the (causal) neighbourhood window."""
    nn_levels: Annotated[int, Range(ge=1)] = 3
    """Pyramid levels of the nearest-neighbour synthesis."""
    layers: list[str] | None = None
    """Gram layers, shallow to deep (None: first block, then about 1/4, 1/2, 3/4 of the depth)."""
    image_size: Annotated[int, Range(ge=1)] | None = 112
    """Side of the Gram-synthesised texture (None: the model's input size), at most twice the input size."""
    steps: Annotated[int, Range(ge=1)] = 80
    """Optimisation steps of the Gram synthesis."""
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    """lbfgs (as in the paper) or adam."""
    parameterization: Literal["fft", "pixel", "auto"] = "auto"
    """fft (Olah et al.'s decorrelated Fourier image: from pixel noise a few dozen L-BFGS steps leave high-frequency
    noise on networks with strided convolutions), pixel (Gatys et al.) or auto (fft from 96 px up, else pixel)."""


@technique(
    "texture", "Texture synthesis", options=TextureOptions, order=120, needs_autograd=True, needs_layers=True,
    references=[EFROS_LEUNG_1999, WEI_LEVOY_2000, GATYS_TEXTURE_2015],
    presets={
        "minimal": {"max_textures": 1, "nn_source_size": 24, "nn_size": 32, "nn_levels": 2, "image_size": 32,
                    "steps": 10},
        "full": {"nn_source_size": 96, "nn_size": 160, "image_size": 256, "steps": 200},
    },
)
def texture(ctx: Ctx, opts: TextureOptions) -> Section:
    """New textures made from a source texture two ways: by copying source pixels whose neighbourhoods match (no
    network), and by optimising noise until its Gram matrices (channel co-activations) at some layers of this model
    match the source's. More Gram layers give larger structures."""
    r = compute_texture(ctx, opts)
    sec = Section(id="texture", title="Texture synthesis")
    sec.add(*present_texture(opts, r))
    sec.params.update(layers=r.layers, textures=[t.name for t in r.syn["textures"]])
    sec.results = to_json(r)
    return sec


def compute_texture(ctx: Ctx, opts: TextureOptions) -> TextureResults:
    """The Gram syntheses of each texture for growing sets of layers and its nearest-neighbour synthesis, with their
    errors, contrasts and colour-histogram distances: numbers and images, no blocks."""
    syn = gram_synthesis(ctx, opts)
    layers, textures, res, errors, n_sets = syn["layers"], syn["textures"], syn["result"], syn["errors"], syn["n_sets"]
    nn_images, nn_times, nn_hist = [], [], []
    for j, tex in enumerate(textures):
        src_small = unit_to_uint8(resize_to(tex.image, opts.nn_source_size).permute(1, 2, 0).numpy())
        src_small = src_small[: opts.nn_source_size, : opts.nn_source_size]
        t0 = time.perf_counter()
        nn_img, info = synthesize_nn(src_small, opts.nn_size, levels=opts.nn_levels, window=opts.nn_window,
                                     seed=ctx.seed_for(f"texture/nnsynth/{j}"))
        nn_times.append(time.perf_counter() - t0)
        nn_hist.append(_hist_distance(src_small, nn_img))
        nn_images.append(nn_img)
    fell = res.improved()
    contrast = np.array([float(res.images[j * n_sets + k].std() / max(float(textures[j].image.std()), 1e-6))
                         for j in range(len(textures)) for k in range(n_sets)])
    err = np.array([float(errors[b, :b % n_sets + 1].mean()) for b in range(len(textures) * n_sets)])
    hist = np.array([_hist_distance(unit_to_uint8(textures[b // n_sets].image.permute(1, 2, 0).numpy()),
                                    unit_to_uint8(res.images[b].permute(1, 2, 0).numpy()))
                     for b in range(len(contrast))])
    return TextureResults(
        layers=layers, optimizer=opts.optimizer, gram_seconds=round(res.wall_time_s, 2),
        nn_seconds=[round(t, 2) for t in nn_times], nn_histogram_distance=[round(h, 4) for h in nn_hist],
        gram_error_by_set=[[float(errors[j * n_sets + k, :k + 1].mean()) for k in range(n_sets)]
                           for j in range(len(textures))],
        loss_fell=bool(fell.all()), contrast_by_set=[[round(float(c), 3) for c in contrast[j * n_sets:(j + 1) * n_sets]]
                                                     for j in range(len(textures))],
        syn=syn, nn_images=nn_images, nn_times=nn_times, nn_hist=nn_hist, contrast=contrast, err=err, hist=hist)


def present_texture(opts: TextureOptions, r: TextureResults) -> list[Block]:
    """Per texture a row: the source, its nearest-neighbour synthesis and the Gram syntheses; the loss curves, the
    notes on what the syntheses show and the settings."""
    syn, layers = r.syn, r.layers
    textures, res, errors, n_sets = syn["textures"], syn["result"], syn["errors"], syn["n_sets"]
    items = []
    width = 128
    for j, tex in enumerate(textures):
        items.append(GridItem(ImageData(unit_to_uint8(tex.image.permute(1, 2, 0).numpy()), display_width=width),
                              label=tex.name, sublabel="source", alt=f"source texture {tex.name}"))
        items.append(GridItem(ImageData(r.nn_images[j], display_width=width), label="nearest neighbour",
                              sublabel=f"{opts.nn_size}² from {opts.nn_source_size}², {r.nn_times[j]:.1f} s",
                              alt=f"nearest-neighbour synthesis of {tex.name}"))
        for k in range(n_sets):
            b = j * n_sets + k
            items.append(GridItem(
                ImageData(unit_to_uint8(res.images[b].permute(1, 2, 0).numpy()), display_width=width),
                label=f"Gram: {k + 1} layer{'s' if k else ''}",
                sublabel=f"up to {layers[k]}; Gram err {errors[b, :k + 1].mean():.3f}",
                alt=f"Gram synthesis of {tex.name} matching {k + 1} layers"))
    blocks: list[Block] = [Grid(
        items, columns=2 + n_sets, cell_width=128,
        caption="Per row: the source; nearest-neighbour synthesis (pixels copied from the source in scan-line "
                "order); Gram synthesis matching a growing set of layers (first column: the shallowest only). "
                "Gram err = mean relative error ||G − G_src||² / ||G_src||² over the matched layers.")]
    fell = res.improved()
    curves = {f"{textures[j].name}: {k + 1} layers"[:40]: -res.history[:, j * n_sets + k]
              for j in range(min(2, len(textures))) for k in range(n_sets)}
    blocks.append(Figure(history_plot(curves, title="Gram loss per step", ylabel="Σ relative Gram error"),
                         caption="Gram loss per optimisation step (first two textures).", alt="Gram loss per step"))
    blocks.append(Note(f"Nearest-neighbour copies only source pixels: its colour histogram is {np.mean(r.nn_hist):.3f} "
                       "(total variation distance, 0 = identical) from the source's."))
    blocks.append(_gram_note(r.contrast, r.err, [f"{textures[b // n_sets].name} with {plural(b % n_sets + 1, 'layer')}"
                                                 for b in range(len(r.contrast))], r.hist))
    if not fell.all():
        blocks.append(Note(f"The Gram loss did not fall for {int((~fell).sum())} of {len(fell)} syntheses.",
                           kind="warning"))
    blocks.append(KeyValues([
        ("textures", syn["where"]),
        ("Gram layers", ", ".join(layers)),
        ("Gram synthesis", f"{'L-BFGS' if opts.optimizer == 'lbfgs' else 'Adam'} ({opts.optimizer} ran), "
                           f"{res.steps} steps per image, {res.info['evaluations']} evaluations in all, "
                           f"{resolve_parameterization(opts.parameterization, syn['size'])} "
                           f"parameterisation, {syn['size']}×{syn['size']} from noise, {res.wall_time_s:.1f} s"),
        ("nearest neighbour", f"{opts.nn_window}×{opts.nn_window} causal window, {opts.nn_levels} levels, "
                              f"{np.mean(r.nn_times):.1f} s per texture"),
    ], title="Settings"))
    return blocks


FLAT_CONTRAST = 0.3  # pixel std of a synthesis below this fraction of its source's: a flat image, not a texture
GRAM_MISSED = 0.1  # mean relative Gram error above this: the optimisation did not match the statistics
COLOURS_FAR = 0.5  # colour-histogram distance (total variation, 8 bins per channel) from the source: other colours


def _gram_note(contrast: np.ndarray, err: np.ndarray, names: list[str], hist: np.ndarray | None = None) -> Note:
    """What this run's Gram syntheses show, from their contrast, Gram error and colour-histogram distance to the
    source (weak ones named)."""
    hist = np.zeros(len(names)) if hist is None else np.asarray(hist)
    flat = [f"{n} (contrast {100 * c:.0f}% of the source's)" for n, c in zip(names, contrast) if c < FLAT_CONTRAST]
    missed = [f"{n} (Gram err {e:.3f})" for n, e in zip(names, err) if e > GRAM_MISSED]
    colours = [f"{n} ({h:.2f})" for n, h in zip(names, hist) if h >= COLOURS_FAR]
    good = int(((contrast >= FLAT_CONTRAST) & (err <= GRAM_MISSED) & (hist < COLOURS_FAR)).sum())
    text = (f"{good} of {len(names)} Gram syntheses match their layers' statistics (Gram err <= {GRAM_MISSED:g}) with "
            f"at least {100 * FLAT_CONTRAST:.0f}% of the source's contrast and colours close to the source's "
            f"(histogram distance < {COLOURS_FAR:g}); compare the columns: with more (deeper) layers the structures "
            "should grow (blobs, strokes, repeated elements).")
    if colours:
        text += (" Colours unlike the source's (histogram distance): " + "; ".join(colours) + ": the matched "
                 "statistics do not pin the colours down (a model that sees little colour, or too few layers), so "
                 "these are not textures of the source.")
    if flat:
        text += (" Flat, not a texture: " + "; ".join(flat) + ". The Gram matrices used here are not centred, so at "
                 "shallow layers the mean colour alone can match them.")
    if missed:
        text += " Statistics not reached: " + "; ".join(missed) + "."
    return Note(text, kind="warning" if flat or missed or colours else "info")


def _hist_distance(a: np.ndarray, b: np.ndarray, bins: int = 8) -> float:
    """Total-variation distance between the joint colour histograms (bins per channel) of two uint8 images."""
    def h(x):
        q = (x.reshape(-1, x.shape[-1] if x.ndim == 3 else 1).astype(np.int64) * bins) // 256
        idx = np.ravel_multi_index(q.T, (bins,) * q.shape[1])
        return np.bincount(idx, minlength=bins ** q.shape[1]) / len(idx)

    return float(0.5 * np.abs(h(a) - h(b)).sum())
