"""Concepts per class: CRAFT (Fel et al. 2023) / deep feature factorisation (Collins et al. 2018).

For each of the classes with the most images: crops of its images (a 3x3 lattice of half-size squares, each resized
to the input size) through the model up to a layer whose output is non-negative (after its activation), averaged
over positions; NMF of that crops x channels matrix, ``A ~ U W``, gives k concepts (rows of ``W``). A concept's
importance for the class score is gradient x coefficient, ``mean_images sum_p U_pk dS/dU_pk`` (a first-order
estimate; CRAFT's Sobol indices are not computed). Its most activating crops show what it is; its heatmap (the
projection of each position on ``W``) shows where it is on example images. The atlas lists concepts several classes
share (cosine of their basis vectors).
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING, Annotated, Any

import numpy as np

from ..concepts.craft import (
    crop_boxes,
    crop_similarity,
    crops_of,
    factorise,
    importance_and_maps,
    layer_and_grad,
    layer_output,
    shared_groups,
    top_crops,
)
from ..papers import COLLINS_2018, FEL_2023
from ..pictures import resize_map
from ..registry import Range, technique
from ..report import Grid, GridItem, Group, ImageData, Note, Section, Table, plural
from ..results_schema import result_type, to_json
from ..results_schema import UNSUPPORTED
from ..device import graph_batch_size
from ._explain import heat_item
from ._setlevel import image_classes, largest_classes, map_layer, map_unsupported

if TYPE_CHECKING:
    from ..context import Ctx


@result_type
class ConceptsCrop:
    image: str
    """one of its most activating crops: the image"""
    box: list[int]
    """that crop's box (y, x, side) in input pixels"""


@result_type
class ConceptsConcept:
    concept: int
    """concept id within the class (ordered by importance)"""
    importance: float
    """gradient x coefficient, mean over the class's images (logit units)"""
    share: float
    """importance / sum of |importance| over the class's concepts"""
    top_crops: list[ConceptsCrop]


@result_type
class ConceptsClass:
    class_: str
    """class name"""
    images: int
    """images of the class used"""
    crops: int
    """crops factorised"""
    reconstruction_error: float
    """|A - UW| / |A| of the NMF"""
    within_similarity: float
    """mean cosine similarity of activations among the top crops of the same concept"""
    across_similarity: float
    """the same between top crops of different concepts"""
    concepts: list[ConceptsConcept]


@result_type
class ConceptsAtlasGroup:
    members: list[str]
    """class:concept members of a group of concepts shared across classes"""
    min_cosine: float
    """the smallest basis-vector cosine between members of different classes in the group"""


@result_type
class ConceptsResults:
    layer: str
    """the layer factorised (its output must be non-negative)"""
    importance_method: str
    """gradient_x_coefficient (first-order; CRAFT's Sobol indices are not computed)"""
    crops_per_image: int
    """crops taken from each image"""
    classes: list[ConceptsClass]
    """one entry per class analysed (an empty list when none has enough images)"""
    atlas: list[ConceptsAtlasGroup]
    """groups of concepts shared across classes (an empty list when none)"""
    atlas_threshold: float
    """cosine at or above which two classes' concepts are joined"""


RESULTS = ConceptsResults  # report.json "results" of this section (docs/results.md is generated from it)


@dataclass
class ConceptsOptions:
    max_classes: Annotated[int, Range(ge=1)] = 4
    """Classes analysed: the ones with the most images."""
    per_class: Annotated[int, Range(ge=1)] = 40
    """Images per class at most (a seeded sample beyond)."""
    concepts: Annotated[int, Range(ge=1)] = 5
    """Concepts (NMF components) per class."""
    crop: Annotated[float, Range(gt=0, le=1)] = 0.5
    """Crop side as a fraction of the image side."""
    grid: Annotated[int, Range(ge=1)] = 3
    """Crops per image: grid x grid positions."""
    layer: str | None = None
    """Layer to factorise (None: the last spatial block the class score's gradient reaches). It must be
    non-negative (after a ReLU)."""
    top_crops: Annotated[int, Range(ge=1)] = 6
    """Most activating crops shown per concept."""
    examples: Annotated[int, Range(ge=0)] = 3
    """Images per class with concept heatmaps."""
    atlas_threshold: Annotated[float, Range(ge=-1, le=1)] = 0.8
    """Cosine of basis vectors at or above which concepts of two classes count as shared."""
    min_images: Annotated[int, Range(ge=1)] = 2
    """A class needs at least this many images."""


@dataclass(frozen=True, eq=False)
class ClassConcepts:
    """One class's factorisation: what its row group shows and its ``results["classes"]`` entry."""

    cls: str
    images: tuple[int, ...]  # image indices used
    crops: int
    error: float
    within: float
    across: float
    importance: np.ndarray  # (k,) gradient x coefficient, mean over images
    share: np.ndarray  # (k,) importance / sum |importance|
    order: np.ndarray  # concept ids, most important first
    tops: np.ndarray  # (k, top) rows of the crops x channels matrix, most activating first
    examples: tuple[tuple[int, np.ndarray], ...]  # (image, (k, h, w) concept maps)
    basis: np.ndarray  # NMF basis rows in ``order``

    def crop(self, r: int, boxes: tuple[tuple[int, int, int], ...]) -> tuple[int, tuple[int, int, int]]:
        """Image index and box of row ``r`` of the crops x channels matrix."""
        return self.images[int(r) // len(boxes)], boxes[int(r) % len(boxes)]


@dataclass(frozen=True, eq=False)
class ConceptsResult:
    """What the concepts section computed."""

    layer: str
    boxes: tuple[tuple[int, int, int], ...]
    classes: tuple[ClassConcepts, ...]
    negative: float | None = None  # the layer's smallest output when negative (the factorisation stopped)
    atlas: tuple[ConceptsAtlasGroup, ...] = ()
    groups: tuple[Any, ...] = ()  # atlas groups: (class position, concept rank) members

    def results(self, ctx: Ctx, threshold: float) -> ConceptsResults:
        """The section's report.json ``results``."""
        out: list[ConceptsClass] = []
        for cc in ([] if self.negative is not None else self.classes):
            rows = [ConceptsConcept(concept=rank, importance=round(float(cc.importance[j]), 4),
                                    share=round(float(cc.share[j]), 4),
                                    top_crops=[ConceptsCrop(image=ctx.images.name(i), box=list(box))
                                               for i, box in (cc.crop(r, self.boxes) for r in cc.tops[j])])
                    for rank, j in enumerate(cc.order)]
            out.append(ConceptsClass(class_=cc.cls, images=len(cc.images), crops=cc.crops,
                                     reconstruction_error=round(cc.error, 4), within_similarity=round(cc.within, 4),
                                     across_similarity=round(cc.across, 4), concepts=rows))
        return ConceptsResults(layer=self.layer, importance_method="gradient_x_coefficient",
                               crops_per_image=len(self.boxes), classes=out, atlas=list(self.atlas),
                               atlas_threshold=threshold)


def _crop_thumb(ctx: Ctx, i: int, box: tuple[int, int, int], size: int) -> np.ndarray:
    y, x, s = box
    from PIL import Image

    a = ctx.images.display(i)[y:y + s, x:x + s]
    return np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.BILINEAR))


def _thumb(ctx: Ctx) -> int:
    return min(96, max(48, ctx.pre.size * 2))


def _factorise_class(ctx: Ctx, opts: ConceptsOptions, c: int, idx: list[int], name: str,
                     boxes: list[tuple[int, int, int]], step: int) -> ClassConcepts | float:
    """NMF of class ``c``'s crop activations and each concept's importance; the smallest output when negative."""
    pm = ctx.pixel_model
    acts, lowest = [], 0.0
    for s in range(0, len(idx), step):
        x = ctx.to_device(ctx.images.batch(idx[s:s + step]))
        a = layer_output(pm, ctx.model, name, crops_of(x, boxes))
        lowest = min(lowest, float(a.min()))
        acts.append(a.mean((2, 3)).cpu().numpy())
    if lowest < -1e-5:
        return lowest
    A = np.concatenate(acts)
    con = factorise(A, opts.concepts, ctx.seed_for(f"concepts/{c}"))
    k = con.basis.shape[0]
    imp = np.zeros(k)
    ex_maps: list[tuple[int, np.ndarray]] = []
    layer = ctx.layer(name)
    for s in range(0, len(idx), 16):
        x = ctx.to_device(ctx.images.batch(idx[s:s + 16]))
        la, lg = layer_and_grad(pm, layer, x, c)
        im, maps = importance_and_maps(con, la, lg)
        imp += im.sum(0)
        if len(ex_maps) < opts.examples:
            ex_maps += [(idx[s + j], maps[j]) for j in range(min(len(maps), opts.examples - len(ex_maps)))]
    imp /= max(1, len(idx))
    share = imp / max(float(np.abs(imp).sum()), 1e-12)
    order = np.lexsort((np.arange(k), -imp))
    tops = top_crops(con.coeffs, opts.top_crops)
    within, across = crop_similarity(A, tops)
    return ClassConcepts(ctx.class_name(c), tuple(idx), int(A.shape[0]), con.error, within, across, imp, share,
                         order, tops, tuple(ex_maps), con.basis[order])


def compute_concepts(ctx: Ctx, opts: ConceptsOptions, classes: np.ndarray, chosen: list[int]) -> ConceptsResult:
    """Factorise each chosen class's crop activations, then group concepts shared across classes."""
    name = map_layer(ctx, opts.layer)
    ctx.layer(name)  # an unknown layer fails here, before any pass
    boxes = crop_boxes(ctx.pre.size, float(opts.crop), max(1, int(opts.grid)))
    step = max(1, graph_batch_size(ctx, cap=min(ctx.batch_size, 64)) // len(boxes))
    done: list[ClassConcepts] = []
    for c in chosen:
        members = np.flatnonzero(classes == c)
        if members.size > opts.per_class:
            members = np.sort(ctx.rng(f"concepts/{c}").choice(members, opts.per_class, replace=False))
        got = _factorise_class(ctx, opts, c, [int(i) for i in members], name, boxes, step)
        if not isinstance(got, ClassConcepts):
            return ConceptsResult(name, tuple(boxes), tuple(done), negative=got)
        done.append(got)
    bases = [cc.basis for cc in done]
    groups, cos = shared_groups(bases, opts.atlas_threshold)
    offs = np.cumsum([0] + [len(b) for b in bases])
    atlas: list[ConceptsAtlasGroup] = []
    for g in groups:
        flat = [offs[ci] + j for ci, j in g]
        pairs = [cos[a, b] for a in flat for b in flat if a < b and
                 np.searchsorted(offs, a, "right") != np.searchsorted(offs, b, "right")]
        atlas.append(ConceptsAtlasGroup(members=[f"{done[ci].cls}:{j}" for ci, j in g],
                                        min_cosine=round(float(min(pairs)), 4)))
    return ConceptsResult(name, tuple(boxes), tuple(done), atlas=tuple(atlas), groups=tuple(groups))


def _class_blocks(ctx: Ctx, r: ConceptsResult, cc: ClassConcepts) -> Group:
    """One class's grid (a row per concept: top crops, then heatmaps) and its separation note."""
    thumb = _thumb(ctx)
    items = []
    for rank, j in enumerate(cc.order):
        for n, row in enumerate(cc.tops[j]):
            i, box = cc.crop(row, r.boxes)
            items.append(GridItem(ImageData(_crop_thumb(ctx, i, box, thumb)),
                                  label=(f"concept {rank}" if n == 0 else ""),
                                  sublabel=(f"share {cc.share[j]:+.0%}" if n == 0 else ""),
                                  alt=f"crop of {ctx.images.name(i)} for concept {rank} of {cc.cls}"))
        for i, m in cc.examples:
            img = ctx.images.display(i, thumb)
            items.append(heat_item(ctx, img, resize_map(m[j].astype(np.float32), (img.shape[1], img.shape[0])),
                                   ctx.images.name(i), f"concept {rank} heatmap"))
    cols = cc.tops.shape[1] + len(cc.examples)
    within, across = cc.within, cc.across
    return Group(f"{cc.cls}: {len(cc.images)} images, {len(cc.order)} concepts", [
        Grid(items, columns=cols, cell_width=thumb, caption=(
            f"One row per concept (most important first): its {cc.tops.shape[1]} most activating crops, then its "
            f"heatmap on {plural(len(cc.examples), 'image')} of the class. Share: the concept's gradient x coefficient "
            "importance for the class logit over the sum of |importance|.")),
        Note(f"NMF reconstruction error {cc.error:.2f}. Activation cosine among a concept's top crops "
             f"{within:.2f} vs {across:.2f} between different concepts' top crops"
             + (" — the concepts are distinct." if within > across + 0.05 else
                " — weakly separated: the concepts overlap; fewer concepts may read better."))])


def show_concepts(ctx: Ctx, opts: ConceptsOptions, r: ConceptsResult, n_chosen: int) -> list[Any]:
    """The section's blocks: a group per class, the atlas (grid and table) and the method note."""
    blocks: list[Any] = [_class_blocks(ctx, r, cc) for cc in r.classes]
    if r.negative is not None:
        return blocks + [Note(f"Layer {r.layer} has negative outputs (down to {r.negative:.3g}): NMF needs a layer "
                              "after its activation (e.g. a ReLU). Choose one with concepts.layer (see `reportgen "
                              "layers`).", kind="warning")]
    thumb = _thumb(ctx)
    if r.atlas:
        width = max(len(g) for g in r.groups)
        cells = []
        for g in r.groups:
            for ci, j in g:
                cc = r.classes[ci]
                i, box = cc.crop(cc.tops[cc.order[j]][0], r.boxes)
                cells.append(GridItem(ImageData(_crop_thumb(ctx, i, box, thumb)), label=f"{cc.cls}:{j}",
                                      alt=f"top crop of concept {j} of {cc.cls}"))
            cells += [GridItem(ImageData(np.full((4, 4, 3), 255, dtype=np.uint8)), alt="")] * (width - len(g))
        blocks.append(Grid(cells, columns=width, cell_width=thumb, title="Concept atlas: shared concepts",
                           caption="Each row: one group of concepts shared by several classes, shown by each member's "
                                   "most activating crop."))
    if n_chosen >= 2:
        blocks.append(Table(["shared concept group (class:concept)", "smallest cosine"],
                            [[", ".join(a.members), a.min_cosine] for a in r.atlas], numeric=[1],
                            title="Concept atlas: concepts that several classes share",
                            caption=(f"Concepts of different classes joined when their NMF basis vectors have cosine "
                                     f">= {opts.atlas_threshold}." + ("" if r.atlas else " None reach it here."))))
    blocks.append(Note(f"Layer {r.layer} (non-negative: its smallest output on these crops is >= 0), crops: "
                       f"{len(r.boxes)} per image ({opts.grid}x{opts.grid} squares of {opts.crop:.0%} of the side, "
                       f"resized to {ctx.pre.size} px). Importance: gradient x coefficient (first-order), not CRAFT's "
                       "Sobol indices. Classes are labels where known, else predictions."))
    return blocks


@technique(
    "concepts", "Concepts per class (CRAFT: NMF of crop activations)", role="review", options=ConceptsOptions, order=36,
    needs_autograd=True, needs_layers=True, unsupported_if=map_unsupported("concepts"),
    references=[FEL_2023, COLLINS_2018],
    presets={"minimal": {"max_classes": 2, "per_class": 8, "concepts": 3, "top_crops": 3, "examples": 2},
             "full": {"max_classes": 10, "per_class": 100, "concepts": 8}},
)
def concepts(ctx: Ctx, opts: ConceptsOptions) -> Section:
    """Each class's recurring visual parts, found by factorising the model's activations over crops of its images:
    one row per concept, ordered by its importance for the class score, with its most activating crops and where it
    lies on example images (heatmap). Crops that look alike within a row but differ between rows mean the
    factorisation found distinct parts; the atlas names concepts that several classes share."""
    sec = Section(id="concepts", title="Concepts per class (CRAFT: NMF of crop activations)")
    classes, _ = image_classes(ctx)
    chosen = largest_classes(classes, opts.max_classes, max(1, opts.min_images))
    if not chosen:  # nothing to factorise: say what it would need, in one line (the report lists it last)
        most = int(np.bincount(classes).max()) if classes.size else 0
        why = (f"Concepts need at least {max(1, opts.min_images)} images of one class (by label, else by "
               f"prediction); the largest class here has {most}: label the images (a folder per class) or add "
               "more images of a class.")
        sec.add(Note(why, kind="warning"))
        sec.results = {UNSUPPORTED: why}
        return sec
    r = compute_concepts(ctx, opts, classes, chosen)
    for block in show_concepts(ctx, opts, r, len(chosen)):
        sec.add(block)
    if r.negative is None:
        sec.params.update(layer=r.layer)
    sec.results = to_json(r.results(ctx, opts.atlas_threshold))
    return sec
