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

from typing import Annotated, Any

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
from ..results_schema import UNSUPPORTED
from ..device import graph_batch_size
from ._explain import heat_item
from ._setlevel import image_classes, largest_classes, map_layer

RESULTS = {
    "layer": "the layer factorised (its output must be non-negative)",
    "importance_method": "gradient_x_coefficient (first-order; CRAFT's Sobol indices are not computed)",
    "crops_per_image": "crops taken from each image",
    "classes": "one entry per class analysed (an empty list when none has enough images)",
    "classes[].class": "class name",
    "classes[].images": "images of the class used",
    "classes[].crops": "crops factorised",
    "classes[].reconstruction_error": "|A - UW| / |A| of the NMF",
    "classes[].within_similarity": "mean cosine similarity of activations among the top crops of the same concept",
    "classes[].across_similarity": "the same between top crops of different concepts",
    "classes[].concepts[].concept": "concept id within the class (ordered by importance)",
    "classes[].concepts[].importance": "gradient x coefficient, mean over the class's images (logit units)",
    "classes[].concepts[].share": "importance / sum of |importance| over the class's concepts",
    "classes[].concepts[].top_crops[].image": "one of its most activating crops: the image",
    "classes[].concepts[].top_crops[].box": "that crop's box (y, x, side) in input pixels",
    "atlas": "groups of concepts shared across classes (an empty list when none)",
    "atlas[].members": "class:concept members of a group of concepts shared across classes",
    "atlas[].min_cosine": "the smallest basis-vector cosine between members of different classes in the group",
    "atlas_threshold": "cosine at or above which two classes' concepts are joined",
}


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
    """Layer to factorise (None: the last module with a spatial output). It must be non-negative (after a ReLU)."""
    top_crops: Annotated[int, Range(ge=1)] = 6
    """Most activating crops shown per concept."""
    examples: Annotated[int, Range(ge=0)] = 3
    """Images per class with concept heatmaps."""
    atlas_threshold: Annotated[float, Range(ge=-1, le=1)] = 0.8
    """Cosine of basis vectors at or above which concepts of two classes count as shared."""
    min_images: Annotated[int, Range(ge=1)] = 2
    """A class needs at least this many images."""


def _crop_thumb(ctx, i: int, box: tuple[int, int, int], size: int) -> np.ndarray:
    y, x, s = box
    from PIL import Image

    a = ctx.images.display(i)[y:y + s, x:x + s]
    return np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.BILINEAR))


@technique(
    "concepts", "Concepts per class (CRAFT: NMF of crop activations)", options=ConceptsOptions, order=36,
    needs_autograd=True, needs_layers=True, references=[FEL_2023, COLLINS_2018],
    presets={"minimal": {"max_classes": 2, "per_class": 8, "concepts": 3, "top_crops": 3, "examples": 2},
             "full": {"max_classes": 10, "per_class": 100, "concepts": 8}},
)
def concepts(ctx, opts: ConceptsOptions) -> Section:
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
    name = map_layer(ctx, opts.layer)
    layer = ctx.layer(name)
    pm = ctx.pixel_model
    boxes = crop_boxes(ctx.pre.size, float(opts.crop), max(1, int(opts.grid)))
    step = max(1, graph_batch_size(ctx, cap=min(ctx.batch_size, 64)) // len(boxes))
    thumb = min(96, max(48, ctx.pre.size * 2))
    out: list[dict[str, Any]] = []
    bases: list[np.ndarray] = []
    cnames: list[str] = []
    first_crop: dict[tuple[int, int], tuple[int, tuple[int, int, int]]] = {}  # (class pos, concept) -> top crop
    for c in chosen:
        members = np.flatnonzero(classes == c)
        if members.size > opts.per_class:
            members = np.sort(ctx.rng(f"concepts/{c}").choice(members, opts.per_class, replace=False))
        idx = [int(i) for i in members]
        acts, lowest = [], 0.0
        for s in range(0, len(idx), step):
            x = ctx.to_device(ctx.images.batch(idx[s:s + step]))
            a = layer_output(pm, ctx.model, name, crops_of(x, boxes))
            lowest = min(lowest, float(a.min()))
            acts.append(a.mean((2, 3)).cpu().numpy())
        if lowest < -1e-5:
            sec.add(Note(f"Layer {name} has negative outputs (down to {lowest:.3g}): NMF needs a layer after its "
                         "activation (e.g. a ReLU). Choose one with concepts.layer (see `reportgen layers`).",
                         kind="warning"))
            sec.results = {"layer": name, "importance_method": "gradient_x_coefficient",
                           "crops_per_image": len(boxes), "classes": [], "atlas": [],
                           "atlas_threshold": opts.atlas_threshold}
            return sec
        A = np.concatenate(acts)
        con = factorise(A, opts.concepts, ctx.seed_for(f"concepts/{c}"))
        k = con.basis.shape[0]
        imp = np.zeros(k)
        ex_maps: list[tuple[int, np.ndarray]] = []
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
        cname = ctx.class_name(c)
        items, rows = [], []
        for rank, j in enumerate(order):
            crops_j = []
            for r in tops[j]:
                i, box = idx[int(r) // len(boxes)], boxes[int(r) % len(boxes)]
                crops_j.append({"image": ctx.images.name(i), "box": list(box)})
                if len(crops_j) == 1:
                    first_crop[(len(cnames), rank)] = (i, box)
                items.append(GridItem(ImageData(_crop_thumb(ctx, i, box, thumb)),
                                      label=(f"concept {rank}" if len(crops_j) == 1 else ""),
                                      sublabel=(f"share {share[j]:+.0%}" if len(crops_j) == 1 else ""),
                                      alt=f"crop of {ctx.images.name(i)} for concept {rank} of {cname}"))
            for i, m in ex_maps:
                img = ctx.images.display(i, thumb)
                items.append(heat_item(ctx, img, resize_map(m[j].astype(np.float32), (img.shape[1], img.shape[0])),
                                       ctx.images.name(i), f"concept {rank} heatmap"))
            rows.append({"concept": rank, "importance": round(float(imp[j]), 4), "share": round(float(share[j]), 4),
                         "top_crops": crops_j})
        cols = tops.shape[1] + len(ex_maps)
        sec.add(Group(f"{cname}: {len(idx)} images, {k} concepts", [
            Grid(items, columns=cols, cell_width=thumb, caption=(
                f"One row per concept (most important first): its {tops.shape[1]} most activating crops, then its "
                f"heatmap on {plural(len(ex_maps), 'image')} of the class. Share: the concept's gradient x coefficient "
                "importance for the class logit over the sum of |importance|.")),
            Note(f"NMF reconstruction error {con.error:.2f}. Activation cosine among a concept's top crops "
                 f"{within:.2f} vs {across:.2f} between different concepts' top crops"
                 + (" — the concepts are distinct." if within > across + 0.05 else
                    " — weakly separated: the concepts overlap; fewer concepts may read better."))]))
        out.append({"class": cname, "images": len(idx), "crops": int(A.shape[0]),
                    "reconstruction_error": round(con.error, 4), "within_similarity": round(within, 4),
                    "across_similarity": round(across, 4), "concepts": rows})
        bases.append(con.basis[order])
        cnames.append(cname)
    groups, cos = shared_groups(bases, opts.atlas_threshold)
    offs = np.cumsum([0] + [len(b) for b in bases])
    atlas: list[dict[str, Any]] = []
    for g in groups:
        flat = [offs[ci] + j for ci, j in g]
        pairs = [cos[a, b] for a in flat for b in flat if a < b and
                 np.searchsorted(offs, a, "right") != np.searchsorted(offs, b, "right")]
        atlas.append({"members": [f"{cnames[ci]}:{j}" for ci, j in g], "min_cosine": round(float(min(pairs)), 4)})
    if atlas:
        width = max(len(g) for g in groups)
        cells = []
        for g in groups:
            for ci, j in g:
                i, box = first_crop[(ci, j)]
                cells.append(GridItem(ImageData(_crop_thumb(ctx, i, box, thumb)), label=f"{cnames[ci]}:{j}",
                                      alt=f"top crop of concept {j} of {cnames[ci]}"))
            cells += [GridItem(ImageData(np.full((4, 4, 3), 255, dtype=np.uint8)), alt="")] * (width - len(g))
        sec.add(Grid(cells, columns=width, cell_width=thumb, title="Concept atlas: shared concepts",
                     caption="Each row: one group of concepts shared by several classes, shown by each member's most "
                             "activating crop."))
    if len(chosen) >= 2:
        sec.add(Table(["shared concept group (class:concept)", "smallest cosine"],
                      [[", ".join(a["members"]), a["min_cosine"]] for a in atlas], numeric=[1],
                      title="Concept atlas: concepts that several classes share",
                      caption=(f"Concepts of different classes joined when their NMF basis vectors have cosine >= "
                               f"{opts.atlas_threshold}." + ("" if atlas else " None reach it here."))))
    sec.add(Note(f"Layer {name} (non-negative: its smallest output on these crops is >= 0), crops: {len(boxes)} per "
                 f"image ({opts.grid}x{opts.grid} squares of {opts.crop:.0%} of the side, resized to "
                 f"{ctx.pre.size} px). Importance: gradient x coefficient (first-order), not CRAFT's Sobol indices. "
                 "Classes are labels where known, else predictions."))
    sec.params.update(layer=name)
    sec.results = {"layer": name, "importance_method": "gradient_x_coefficient", "crops_per_image": len(boxes),
                   "classes": out, "atlas": atlas, "atlas_threshold": opts.atlas_threshold}
    return sec
