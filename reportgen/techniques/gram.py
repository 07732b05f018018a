"""Gram matrices of style and texture images (Gatys, Ecker & Bethge 2015).

``G_l = F_l F_l^T / (H_l W_l)`` (``F_l``: the C_l x H_l W_l feature map of layer ``l``) says which channels fire
*together*, wherever in the image: the spatial layout is averaged away and only feature co-occurrence remains,
which is what a texture (and a painting's style) is. Each matrix is drawn as a heatmap with its channels
reordered by hierarchical clustering (SciPy, average linkage on the channels' Gram rows), so that groups of
co-active channels show as blocks; for the textures the relative error ``||G_l(x) - G_l(s)||^2 / ||G_l(s)||^2``
that the Gram synthesis of the texture section reached at each layer is given beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np

from ..pictures import figure_to_png, unit_to_uint8
from ..papers import GATYS_STYLE_2016, GATYS_TEXTURE_2015
from ..registry import Range, reads_options, technique
from ..report import Block, Figure, Group, ImageData, Note, Row, Section, Table
from ..results_schema import local, result_type, to_json
from ..synthesis.style import gram_targets, source_images
from ..synthesis.gatys import gram_synthesis, options_of

if TYPE_CHECKING:
    from ..context import Ctx


# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)


@result_type
class GramResults:
    layers: list[str]
    """the layers whose Gram matrices are shown"""
    gram_error: dict[str, dict[str, float]]
    """per texture, per layer: relative Gram error ||G(x) - G(s)||^2 / ||G(s)||^2 after the synthesis"""
    style_source: str
    """where the style images came from"""
    syn: dict[str, Any] = local()  # synthesis.gatys.gram_synthesis's record (the texture section's syntheses)
    styles: list[tuple[Any, dict[str, np.ndarray]]] = local()  # per style image: it and its Gram matrix per layer


RESULTS = GramResults  # report.json "results" of this section (docs/results.md is generated from it)

@dataclass
class GramOptions:
    max_styles: Annotated[int, Range(ge=0)] = 2
    """How many style images to show (besides the textures of the texture section)."""
    max_channels: Annotated[int, Range(ge=1)] = 128
    """Show at most this many channels per layer (the most active ones) so that the heatmap stays readable."""


def cluster_order(g: np.ndarray) -> np.ndarray:
    """Channel order from average-linkage hierarchical clustering of the rows of the (normalised) Gram matrix
    (correlation distance); the leading-eigenvector order when SciPy cannot cluster (constant rows)."""
    d = np.sqrt(np.clip(np.diag(g), 1e-12, None))
    corr = g / d[:, None] / d[None, :]
    try:
        from scipy.cluster.hierarchy import leaves_list, linkage

        return leaves_list(linkage(corr, method="average", metric="correlation"))
    except Exception:
        w, v = np.linalg.eigh(g)
        return np.argsort(v[:, -1])


def gram_heatmaps(grams: dict[str, np.ndarray], title: str, max_channels: int) -> ImageData:
    """One heatmap per layer, channels clustered."""
    from matplotlib.figure import Figure as MplFigure

    n = len(grams)
    fig = MplFigure(figsize=(2.3 * n, 2.6))
    for k, (name, g) in enumerate(grams.items()):
        if g.shape[0] > max_channels:
            keep = np.sort(np.argsort(-np.diag(g))[:max_channels])
            g = g[np.ix_(keep, keep)]
        o = cluster_order(g)
        ax = fig.add_subplot(1, n, k + 1)
        ax.imshow(np.log1p(np.maximum(g[np.ix_(o, o)], 0) / (np.mean(np.diag(g)) + 1e-12)), cmap="magma")
        ax.set_title(f"{name}\n{g.shape[0]} ch", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return figure_to_png(fig)


@technique(
    "gram", "Gram matrices", options=GramOptions, order=125, needs_autograd=True, needs_layers=True,
    references=[GATYS_TEXTURE_2015, GATYS_STYLE_2016],
    presets={"minimal": {"max_styles": 1, "max_channels": 32}, "full": {"max_styles": 3}},
    reads=reads_options("texture"),
    uses=("texture",),  # its Gram synthesis (synthesis/gatys.py)
)
def gram(ctx: Ctx, opts: GramOptions) -> Section:
    """Each heatmap is one layer's Gram matrix: entry (i, j) is how strongly channels i and j fire together over the
    whole image, with the position thrown away. Channels are reordered so co-active groups form bright blocks; this
    summary is all that texture synthesis and style transfer keep of an image."""
    r = compute_gram(ctx, opts)
    sec = Section(id="gram", title="Gram matrices")
    sec.add(*present_gram(opts, r))
    sec.params.update(layers=r.layers, styles=[st.name for st, _ in r.styles])
    sec.results = to_json(r)
    return sec


def compute_gram(ctx: Ctx, opts: GramOptions) -> GramResults:
    """The texture section's syntheses with their per-layer Gram errors, and the Gram matrices of the style images."""
    syn = gram_synthesis(ctx, options_of(ctx, "texture"))
    layers, n_sets, errors = syn["layers"], syn["n_sets"], syn["errors"]
    rows = []
    for j, tex in enumerate(syn["textures"]):
        b = j * n_sets + (n_sets - 1)  # the synthesis that matched every layer
        rows.append([tex.name] + [float(f"{errors[b, k]:.4g}") for k in range(len(layers))])
    styles, where = source_images(ctx, "styles", opts.max_styles, syn["size"])
    grams = [(st, {n: v[0].cpu().numpy() for n, v in gram_targets(ctx, layers, st.image[None]).items()})
             for st in styles]
    return GramResults(layers=layers, gram_error={r[0]: dict(zip(layers, r[1:])) for r in rows},
                       style_source=where, syn=syn, styles=grams)


def present_gram(opts: GramOptions, r: GramResults) -> list[Block]:
    """Per texture its synthesis and Gram matrices, per style image its Gram matrices, the error table and a note."""
    syn, layers = r.syn, r.layers
    n_sets, errors = syn["n_sets"], syn["errors"]
    blocks: list[Block] = []
    for j, tex in enumerate(syn["textures"]):
        grams = {n: syn["targets"][j][n][0].cpu().numpy() for n in layers}
        b = j * n_sets + (n_sets - 1)  # the synthesis that matched every layer
        synth = syn["result"].images[b]
        blocks.append(Group(f"texture: {tex.name}", [Row([
            Figure(ImageData(unit_to_uint8(tex.image.permute(1, 2, 0).numpy()), display_width=128),
                   caption=f"{tex.name}", alt=f"texture {tex.name}"),
            Figure(ImageData(unit_to_uint8(synth.permute(1, 2, 0).numpy()), display_width=128),
                   caption="Gram synthesis (all layers)", alt=f"Gram synthesis of {tex.name}"),
            Figure(gram_heatmaps(grams, f"Gram matrices of {tex.name} (clustered channels, log scale)",
                                 opts.max_channels),
                   caption="Per layer: G_l of the texture. Relative error reached by the synthesis: "
                           + ", ".join(f"{n} {errors[b, k]:.3g}" for k, n in enumerate(layers)) + ".",
                   alt=f"Gram matrices of {tex.name}"),
        ])]))
    for st, g in r.styles:
        blocks.append(Group(f"style: {st.name}", [Row([
            Figure(ImageData(unit_to_uint8(st.image.permute(1, 2, 0).numpy()), display_width=128), caption=st.name,
                   alt=f"style image {st.name}"),
            Figure(gram_heatmaps(g, f"Gram matrices of {st.name}", opts.max_channels),
                   caption="Per layer: G_l of the painting (what style transfer matches).",
                   alt=f"Gram matrices of {st.name}"),
        ])]))
    rows = [[tex.name] + [float(f"{errors[j * n_sets + n_sets - 1, k]:.4g}") for k in range(len(layers))]
            for j, tex in enumerate(syn["textures"])]
    blocks.append(Table(["texture"] + layers, rows, numeric=list(range(1, len(layers) + 1)),
                        title="Relative Gram error of the synthesised texture, per layer",
                        caption="||G_l(x) − G_l(s)||² / ||G_l(s)||² after the synthesis that matched every layer."))
    shown = errors[n_sets - 1::n_sets]  # each texture's all-layer synthesis (the table), not the partial ones
    worst = float(shown.max()) if shown.size else 0.0
    if worst > 0.1:
        blocks.append(Note(f"Some layers were matched only loosely (relative Gram error up to {worst:.2f}): the "
                           "synthesis ran too few steps for them.", kind="warning"))
    return blocks


__all__ = ["cluster_order", "gram_heatmaps"]
