"""Attention maps of a vision transformer: rollout, gradient-weighted rollout, last-layer heads, and the ViT paper's
Fig. 7 (position-embedding similarity, mean attention distance).

Rollout (Abnar & Zuidema 2020): ``R = prod_l norm_rows(0.5 mean_h A_l + 0.5 I)``, the class token's row over the
patches. Gradient-weighted rollout (Chefer, Gur & Wolf 2021): ``R <- R + mean_h((dS/dA_l * A_l)^+) R``, for the
explained class ``S``. Per-head maps: the last layer's class-token attention. Position-embedding similarity and
mean attention distance (Dosovitskiy et al. 2021, Fig. 7): cosine similarity of every patch's learned position
embedding with every other's; per head and depth, ``sum_j A_ij |p_i - p_j|`` pixels, averaged over queries and images.
The attention weights are recomputed eagerly from each attention module's input (fused attention never forms them)
by :mod:`reportgen.attribution.attention`; this module picks the images, draws and writes the numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from dataclasses import dataclass

import numpy as np
import torch

from ..cache import MemoKey
from .. import attribution as A
from ..attribution import attention as AT
from ..papers import ABNAR_ZUIDEMA_2020, CHEFER_2021, DOSOVITSKIY_2021
from ..pictures import figure_to_png, new_figure
from ..registry import AttributionMethod, Range, technique
from ..report import Block, Figure, Grid, Note, Row, Section, Table, plural
from ..results_schema import MISSING, Absent, result_type, to_json
from ..sampling import spread_indices
from ..device import graph_batch_size
from ._explain import Batch, cell_width, explain_batch, heat_item, input_item
from ._faith_maps import MapMethod, as_numpy
from ._map_store import MapSpec

if TYPE_CHECKING:
    from ..context import Ctx


@result_type
class AttentionImage:
    image: str
    """image name"""
    class_: str
    """class explained (true label when known, else the prediction)"""
    p: float
    """its softmax probability"""
    rollout_top20_mass: float
    """share of the rollout map on its highest 20% of patches (0.2 = uniform)"""
    grad_rollout_top20_mass: float
    """the same for gradient-weighted rollout"""
    rank_corr: float
    """Spearman rank correlation between the two maps over the patches"""


@result_type
class AttentionResults:
    attention_modules: list[str]
    """dotted names of the self-attention modules read, in depth order"""
    heads: int
    """attention heads per module"""
    prefix_tokens: int
    """tokens before the patch tokens (class, distillation, register tokens); the maps use token 0's row"""
    grid: list[int]
    """patch-token grid [rows, columns]"""
    patch_px: float
    """side of one patch in input pixels"""
    passes: dict[str, int]
    """forward and backward passes the section ran ({'forward': n, 'backward': n}); rollout and gradient rollout share
    one forward and one backward pass per batch"""
    images: list[AttentionImage]
    mean_attention_distance_px: list[list[float]]
    """[layer][head] mean attention distance in pixels, averaged over distance_images"""
    uniform_attention_distance_px: float
    """the mean distance attention spread evenly over all patches would have"""
    distance_images: int
    """how many images the attention distances average over"""
    zero_gradient_maps: list[str]
    """images whose gradient rollout is zero everywhere (flagged: nothing to read)"""
    position_similarity: Absent[dict[str, float]] = MISSING
    """(when the model has a learned position embedding of the grid's length) mean cosine similarity of each patch's
    embedding to its 4 neighbours ('neighbours') and to all other patches ('all')"""


RESULTS = AttentionResults  # report.json "results" of this section (docs/results.md is generated from it)


@dataclass
class AttentionOptions:
    max_images: Annotated[int, Range(ge=1)] = 6
    """Images with rollout and gradient-rollout maps (the same ones saliency shows)."""
    head_images: Annotated[int, Range(ge=0)] = 2
    """Of those, how many get the last layer's per-head maps."""
    distance_images: Annotated[int, Range(ge=1)] = 64
    """Images averaged for the mean attention distance."""
    residual: Annotated[float, Range(ge=0, le=1)] = 0.5
    """Weight of the identity (the residual connection) in rollout's per-layer matrix."""

#: the attention sites and token layout, or why the section cannot run (:func:`_probe`, once per run)
ATTENTION_PROBE: MemoKey[AT.TokenLayout | str] = MemoKey("attention.probe")


def _probe(ctx: Ctx) -> AT.TokenLayout | str:
    """Sites and token layout from one forward pass, or why the section cannot run."""
    p = AT.probe_layout(ctx.model, ctx.to_device(ctx.images.batch([0])),
                        getattr(ctx.model, "num_prefix_tokens", None), ctx.pixel_model)
    return f"Attention maps were skipped: {p}" if isinstance(p, str) else p


def _why_not(ctx: Ctx) -> str | None:
    p = ctx.memo(ATTENTION_PROBE, lambda: _probe(ctx))
    return p if isinstance(p, str) else None


@dataclass(frozen=True, eq=False)
class AttentionResult:
    """What the attention section computed: the maps of the explained images (upsampled to the input), the
    last layer's per-head maps, the mean attention distances and the position-embedding similarity."""

    layout: AT.TokenLayout
    batch: Batch
    passes: dict[str, int]
    up: dict[str, np.ndarray]  # "roll" / "groll" -> (images, H, W) upsampled maps
    top20: dict[str, np.ndarray]  # "roll" / "groll" -> (images,) top-20% mass
    corr: tuple[float, ...]  # rank correlation of the two maps per image
    zero: tuple[str, ...]  # images whose gradient rollout is zero everywhere
    heads_up: np.ndarray | None  # (head images, heads, H, W) last layer per head, upsampled; None: no head images
    heads: int  # heads of the last layer
    mad: np.ndarray  # (layers, heads) mean attention distance in pixels
    uniform: float  # the distance of attention spread evenly
    distance_images: int
    similarity: np.ndarray | None  # (patches, patches) position-embedding cosine; None: no such embedding
    position: dict[str, float] | None  # mean similarity to the 4 neighbours and to all patches

    def rows(self, ctx: Ctx) -> list[list[Any]]:
        b, t20 = self.batch, self.top20
        return [[ctx.images.name(i), ctx.class_name(int(b.targets[k])), round(float(b.probs[k]), 3),
                 round(float(t20["roll"][k]), 3), round(float(t20["groll"][k]), 3), round(self.corr[k], 3)]
                for k, i in enumerate(b.idx)]

    def results(self, ctx: Ctx) -> AttentionResults:
        """The section's report.json ``results``."""
        sites, (h, w) = self.layout.sites, self.layout.grid
        return AttentionResults(
            attention_modules=[s.name for s in sites], heads=sites[0].heads, prefix_tokens=self.layout.prefix,
            grid=[h, w], patch_px=self.layout.patch_px, passes=self.passes,
            images=[AttentionImage(image=r[0], class_=r[1], p=r[2], rollout_top20_mass=r[3],
                                   grad_rollout_top20_mass=r[4], rank_corr=r[5]) for r in self.rows(ctx)],
            mean_attention_distance_px=np.round(self.mad, 3).tolist(),
            uniform_attention_distance_px=round(self.uniform, 3),
            distance_images=self.distance_images, zero_gradient_maps=list(self.zero),
            position_similarity=(MISSING if self.position is None
                                 else {k: round(v, 4) for k, v in self.position.items()}),
        )


def _mean_distances(ctx: Ctx, opts: AttentionOptions, layout: AT.TokenLayout, passes: dict[str, int]):
    """(layers, heads) mean attention distance over a spread of images, the uniform distance, the image count."""
    h, w = layout.grid
    dist_idx = spread_indices(ctx, opts.distance_images, "attention/distance")
    dist = []
    for _, xb in ctx.images.batches(ctx.batch_size, dist_idx):
        attns, _ = AT.attention_weights(ctx.pixel_model, layout.sites, ctx.to_device(xb))
        passes["forward"] += 1
        dist.append(torch.stack([AT.mean_attention_distance(a, layout.prefix, layout.grid, layout.patch_px)
                                 for a in attns], 1))
    mad = torch.cat(dist).mean(0).cpu().numpy()  # (layers, heads)
    uni = AT.mean_attention_distance(torch.ones(1, 1, h * w, h * w), 0, layout.grid, layout.patch_px).item()
    return mad, uni, len(dist_idx)


def compute_attention(ctx: Ctx, opts: AttentionOptions) -> AttentionResult:
    """Rollout, gradient rollout and last-layer heads of the explained images; attention distances; position
    embedding similarity."""
    probe = ctx.memo(ATTENTION_PROBE, lambda: _probe(ctx))
    if isinstance(probe, str):  # the build skips the section then (_why_not)
        raise ValueError(probe)
    sites, prefix, grid = probe.sites, probe.prefix, probe.grid
    passes = {"forward": 0, "backward": 0}
    b = explain_batch(ctx, opts.max_images)
    roll, groll, last = [], [], []
    step = graph_batch_size(ctx)  # a bounded autograd graph per pass (ViT-B/16: a few images, not the batch)
    for s in range(0, len(b.idx), step):
        x, t = b.x[s: s + step], torch.as_tensor(b.targets[s: s + step])
        attns, grads, _ = AT.attention_with_grads(ctx.pixel_model, sites, x, t)
        passes["forward"] += 1
        passes["backward"] += 1
        roll.append(AT.class_row(AT.rollout(attns, opts.residual), prefix))
        groll.append(AT.class_row(AT.gradient_rollout(attns, grads), prefix))
        last.append(AT.class_row(attns[-1], prefix))
    h, w = grid
    size = tuple(b.x.shape[-2:])
    maps = {k: torch.cat(v).view(-1, h, w) for k, v in (("roll", roll), ("groll", groll))}
    heads = torch.cat(last).view(len(b.idx), -1, h, w)
    mad, uni, n_dist = _mean_distances(ctx, opts, probe, passes)
    up = {k: A.upsample(v, size).cpu().numpy() for k, v in maps.items()}
    t20 = {k: AT.top_area_mass(v).cpu().numpy() for k, v in maps.items()}
    corr = tuple(A.rank_correlation(maps["roll"][k].cpu().numpy(), maps["groll"][k].cpu().numpy())
                 for k in range(len(b.idx)))
    zero = tuple(ctx.images.name(i) for k, i in enumerate(b.idx) if float(maps["groll"][k].max()) <= 0)
    n_head = min(opts.head_images, len(b.idx))
    hup = (A.upsample(heads[:n_head].flatten(0, 1), size).view(n_head, heads.shape[1], *size).cpu().numpy()
           if n_head else None)
    sim, pos_stats = None, None
    pos = AT.position_embedding(ctx.model, h * w)
    if pos is not None:
        sim = AT.position_similarity(pos).cpu().numpy()
        pos_stats = _neighbour_similarity(sim, grid)
    return AttentionResult(probe, b, passes, up, t20, corr, zero, hup, int(heads.shape[1]), mad, uni, n_dist, sim,
                           pos_stats)


def _figures(r: AttentionResult) -> Block:
    figs: list[Block] = []
    if r.similarity is not None and r.position is not None:
        figs.append(Figure(_similarity_png(r.similarity, r.layout.grid), caption=(
            f"Position-embedding similarity (Dosovitskiy et al. 2021, Fig. 7 centre): tile (r, c) shows the cosine "
            f"similarity of patch (r, c)'s learned position embedding with every patch's. Mean similarity to the 4 "
            f"neighbours {r.position['neighbours']:.2f}, to all other patches {r.position['all']:.2f}."),
            alt="position embedding cosine similarity, one tile per patch"))
    figs.append(Figure(_distance_png(r.mad, r.uniform), caption=(
        f"Mean attention distance per head against depth (Fig. 7 right), averaged over {r.distance_images} images; "
        f"dashed: {r.uniform:.1f} px, the distance of attention spread evenly over all patches."),
        alt="mean attention distance per head and layer"))
    return Row(figs) if len(figs) > 1 else figs[0]


def show_attention(ctx: Ctx, r: AttentionResult) -> list[Block]:
    """The section's blocks: maps grid, per-image table, notes, per-head grid, figures."""
    b, up, t20 = r.batch, r.up, r.top20
    sites, prefix, (h, w), patch_px = r.layout.sites, r.layout.prefix, r.layout.grid, r.layout.patch_px
    items = []
    for k, i in enumerate(b.idx):
        img = ctx.images.display(i)
        items += [input_item(ctx, b, k),
                  heat_item(ctx, img, up["roll"][k], "rollout", f"top-20% mass {t20['roll'][k]:.2f}"),
                  heat_item(ctx, img, up["groll"][k], "gradient rollout",
                            f"top-20% mass {t20['groll'][k]:.2f}; rank corr. {r.corr[k]:.2f}")]
    rows = r.rows(ctx)
    blocks: list[Block] = [Grid(items, columns=6 if len(b.idx) > 1 else 3, cell_width=cell_width(ctx), caption=(
        f"{len(sites)} attention modules ({sites[0].name} ... {sites[-1].name}), {sites[0].heads} heads, "
        f"{h}x{w} patch tokens of {patch_px:g} px" + (f" after {plural(prefix, 'extra token')}" if prefix else "") +
        " (maps upsampled bilinearly). Each image, then the class token's rollout and gradient rollout "
        "(colour scale per map, red = its 99.5th percentile). Top-20% mass: the share of the map on its "
        "highest-valued fifth of the patches (0.20 for a uniform map).")),
        Table(["image", "class", "p", "rollout top-20% mass", "grad. rollout top-20% mass", "rank corr."],
              rows, numeric=[2, 3, 4, 5]),
        _rollout_note(t20, [row[5] for row in rows])]
    if r.zero:
        blocks.append(Note(f"Gradient rollout is zero everywhere for: {', '.join(r.zero)} (no attention weight has a "
                           "positive gradient x attention product for the class: its map, top-20% mass and rank "
                           "correlation carry no information).", kind="warning"))
    if r.heads_up is not None:
        hitems = []
        for k in range(r.heads_up.shape[0]):
            img = ctx.images.display(b.idx[k])
            hitems.append(input_item(ctx, b, k))
            hitems += [heat_item(ctx, img, r.heads_up[k, j], f"head {j}", f"mean distance {r.mad[-1, j]:.1f} px")
                       for j in range(r.heads)]
        blocks.append(Grid(hitems, columns=min(r.heads + 1, 9), cell_width=min(cell_width(ctx), 160), caption=(
            f"Last layer ({sites[-1].name}): the class token's attention per head"
            + (" (no class token: the mean over all query tokens)" if prefix == 0 else "")
            + ", one colour scale per map; the distance is the head's mean attention distance over "
              f"{r.distance_images} images.")))
    blocks += [_figures(r), Note(_distance_text(r.mad, r.uniform))]
    if r.similarity is None:
        blocks.append(Note("No learned position embedding with one entry per patch of this grid was found "
                           "(a parameter pos_embedding / pos_embed / position_embeddings), so its similarity is not "
                           "shown."))
    return blocks


def rollout_method(ctx: Ctx, _opts) -> MapMethod | None:
    """Attention rollout (Abnar & Zuidema 2020) when one probing pass finds global self-attention over one token
    sequence (:func:`reportgen.attribution.attention.probe_layout`); None otherwise (no rollout row)."""
    probe = AT.probe_layout(ctx.model, ctx.to_device(ctx.images.batch([0])),
                            getattr(ctx.model, "num_prefix_tokens", None), ctx.pixel_model)
    if isinstance(probe, str):
        return None

    def fn(pm, x, t, _idx):
        attns, _ = AT.attention_weights(pm, AT.find_attention(pm), x)
        prefix, (h, w) = AT.token_layout(attns[0].shape[-1], tuple(x.shape[-2:]), probe.prefix)
        row = AT.class_row(AT.rollout(attns), prefix)
        return as_numpy(A.upsample(row.reshape(len(x), h, w), tuple(x.shape[-2:])))

    return MapMethod(MapSpec("attention rollout"), fn)


@technique(
    "attention", "Attention maps (rollout, gradient rollout, heads)", role="review", options=AttentionOptions, order=48,
    needs_autograd=True, needs_layers=True, unsupported_if=_why_not,
    references=[ABNAR_ZUIDEMA_2020, CHEFER_2021, DOSOVITSKIY_2021],
    presets={"minimal": {"max_images": 2, "head_images": 1, "distance_images": 16},
             "full": {"max_images": 12, "head_images": 4, "distance_images": 256}},
    methods=[AttributionMethod("attention rollout", rollout_method, order=70)],
)
def attention(ctx: Ctx, opts: AttentionOptions) -> Section:
    """Where a vision transformer's class token gathers information from. Rollout multiplies the head-averaged
    attention (plus the residual path) through the layers; gradient rollout keeps only attention that raises the
    explained class's score. Red = much. Per-head maps show the last layer's class-token attention; the position
    embedding panel shows, for each patch, how similar every other patch's learned position is (yellow = similar);
    the distance plot shows how far, in pixels, each head looks at each depth (low = local, high = global)."""
    r = compute_attention(ctx, opts)
    sec = Section(id="attention", title="Attention maps (rollout, gradient rollout, heads)")
    for block in show_attention(ctx, r):
        sec.add(block)
    sec.params.update(images=[ctx.images.name(i) for i in r.batch.idx])
    sec.results = to_json(r.results(ctx))
    return sec


def _rollout_note(t20: dict, corr: list[float]) -> Note:
    m, g = float(np.median(t20["roll"])), float(np.median(t20["groll"]))

    def focus(v: float) -> str:
        return "concentrated" if v >= 0.5 else "spread out" if v < 0.3 else "moderately concentrated"

    text = (f"Median top-20% mass: rollout {m:.2f} ({focus(m)}), gradient rollout {g:.2f} ({focus(g)}); 0.20 would "
            f"be a uniform map. Median rank correlation between the two {float(np.median(corr)):.2f}. Rollout "
            "assumes attention alone moves information between tokens (the MLPs and value vectors are ignored); "
            "a concentrated map says where the class token reads from, not that those pixels decide the class.")
    return Note(text, kind="warning" if m < 0.3 else "info")


def _distance_text(mad: np.ndarray, uni: float) -> str:
    first, final = mad[0], mad[-1]
    trend = float(final.mean()) - float(first.mean())
    text = (f"Layer 1's heads attend {first.min():.1f}-{first.max():.1f} px away on average, the last layer's "
            f"{final.min():.1f}-{final.max():.1f} px (even spread: {uni:.1f} px).")
    if mad.shape[0] > 1 and abs(trend) > 0.1 * uni:
        text += f" The mean distance {'grows' if trend > 0 else 'shrinks'} with depth by {abs(trend):.1f} px."
    elif mad.shape[0] > 1:
        text += " No clear trend with depth (the first and last layers' means differ by under 10% of the even spread)."
    return text


def _neighbour_similarity(sim: np.ndarray, grid: tuple[int, int]) -> dict[str, float]:
    h, w = grid
    s = sim.reshape(h, w, h, w)
    nb = [s[r, c, r + dr, c + dc] for r in range(h) for c in range(w) for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0))
          if 0 <= r + dr < h and 0 <= c + dc < w]
    off = sim[~np.eye(h * w, dtype=bool)]
    return {"neighbours": float(np.mean(nb)), "all": float(off.mean())}


def _similarity_png(sim: np.ndarray, grid: tuple[int, int]):
    h, w = grid
    tiles = np.full((h * (h + 1) - 1, w * (w + 1) - 1), np.nan)  # a one-cell gap between tiles
    s = sim.reshape(h, w, h, w)
    for r in range(h):
        for c in range(w):
            tiles[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = s[r, c]
    fig = new_figure((4.6, 4.0))
    ax = fig.subplots()
    im = ax.imshow(tiles, cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks([(w + 1) * c + (w - 1) / 2 for c in range(w)], [str(c + 1) for c in range(w)], fontsize=7)
    ax.set_yticks([(h + 1) * r + (h - 1) / 2 for r in range(h)], [str(r + 1) for r in range(h)], fontsize=7)
    ax.set_xlabel("input patch column")
    ax.set_ylabel("input patch row")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.colorbar(im, ax=ax, shrink=0.8, label="cosine similarity")
    return figure_to_png(fig)


def _distance_png(mad: np.ndarray, uni: float):
    layers, heads = mad.shape
    fig = new_figure((4.6, 3.6))
    ax = fig.subplots()
    for j in range(heads):
        ax.scatter(np.arange(1, layers + 1), mad[:, j], s=14, label=f"head {j}" if heads <= 16 else None)
    ax.axhline(uni, color="0.4", ls="--", lw=1)
    ax.set_xlabel("network depth (layer)")
    ax.set_ylabel("mean attention distance (pixels)")
    ax.set_xticks(np.arange(1, layers + 1))
    ax.set_ylim(0, max(float(mad.max()), uni) * 1.1)
    if heads <= 16:
        ax.legend(fontsize=6, ncol=2, loc="lower right")
    return figure_to_png(fig)
