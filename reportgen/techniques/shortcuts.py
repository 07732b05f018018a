"""Shortcut scan: SpRAy (Lapuschkin et al. 2019) — spectral clustering of each class's attribution maps.

Per class (label, else prediction): every image's map for its class (Grad-CAM or gradient x input) downsampled to
``side x side`` and scaled to sum 1; spectral clustering with a self-tuning affinity, the number of clusters by
the eigengap of the normalised Laplacian (von Luxburg 2007), seeded. A cluster's mean map shows where that group of
images draws its evidence from. A cluster whose mean map sits apart from the rest of its class (mass in a corner or
the border band) is listed as a CANDIDATE shortcut: a person must look at its images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from dataclasses import dataclass

import numpy as np

from ..concepts.spray import CORNERS, candidate, downsample, mass, spray
from ..papers import LAPUSCHKIN_2019, SELVARAJU_2017, VON_LUXBURG_2007
from ..pictures import resize_map
from ..registry import Range, technique
from ..report import Block, Grid, GridItem, Group, ImageData, Note, Section, Table
from ..results_schema import result_type, to_json
from ._explain import heat_item
from ._setlevel import (
    SetLevelMethod,
    class_maps,
    image_classes,
    largest_classes,
    map_layer,
    map_unsupported,
    method_text,
    set_level_method,
)


if TYPE_CHECKING:
    from ..context import Ctx

@result_type
class ShortcutsGroup:
    cluster: int
    """cluster id (0 = largest)"""
    size: int
    """images in the cluster"""
    mean_confidence: float
    """mean softmax probability of the class over its images"""
    images: list[str]
    """names of its member images"""
    centre_of_mass: list[float]
    """(y, x) of its mean map, in [0, 1] of the image side"""
    border_fraction: float
    """share of its mean map's mass in the outer border band (1/8 of the side)"""
    corner_fraction: float
    """share of its mean map's mass in its strongest corner square (1/4 of the side)"""
    corner: str
    """that corner"""
    candidate_shortcut: str | None
    """null, or why its evidence sits apart from the rest of the class"""


@result_type
class ShortcutsClass:
    class_: str
    """class name"""
    images: int
    """images of the class that were clustered"""
    clusters: int
    """number of clusters (eigengap)"""
    eigenvalues: list[float]
    """smallest eigenvalues of the normalised Laplacian (the eigengap picks the cluster count)"""
    groups: list[ShortcutsGroup]


@result_type
class ShortcutsResults:
    method: str
    """attribution behind the maps (gradcam or gradient_x_input)"""
    layer: str
    """the Grad-CAM layer"""
    side: int
    """maps are downsampled to side x side before clustering"""
    candidates: int
    """number of clusters named as candidate shortcuts (to be checked by a person)"""
    classes_from: str
    """labels or predictions (the class each image is grouped under)"""
    classes: list[ShortcutsClass]
    """one entry per class scanned (an empty list when no class has enough images)"""


RESULTS = ShortcutsResults  # report.json "results" of this section (docs/results.md is generated from it)


@dataclass
class ShortcutsOptions:
    max_classes: Annotated[int, Range(ge=1)] = 6
    """Classes scanned (the ones with the most images)."""
    min_images: Annotated[int, Range(ge=2)] = 8
    """A class needs at least this many images to be clustered."""
    max_per_class: Annotated[int, Range(ge=2)] = 400
    """Images per class clustered at most (a seeded sample beyond: clustering is quadratic in a class's size)."""
    max_clusters: Annotated[int, Range(ge=2)] = 6
    """Upper bound for the eigengap's cluster count."""
    side: Annotated[int, Range(ge=2)] = 16
    """Maps are area-downsampled to side x side before clustering."""
    exemplars: Annotated[int, Range(ge=1)] = 4
    """Images shown per cluster (the closest to its mean map)."""
    method: SetLevelMethod = "gradcam"
    """Attribution behind the maps: "gradcam" (default) or "gradient_x_input"."""
    layer: str | None = None
    """Grad-CAM layer (None: the last spatial block the class score's gradient reaches)."""


def _thumb_map(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A flattened square map resized to ``size`` (width, height)."""
    side = round(np.sqrt(m.size))
    return resize_map(m.reshape(side, side).astype(np.float32), size)


@dataclass(frozen=True)
class ShortcutCluster:
    """One SpRAy cluster of a class: its mean map, where that map puts the mass, and its closest images."""

    cluster: int
    names: tuple[str, ...]  # member images
    mean_map: np.ndarray  # side*side, flattened
    mean_confidence: float
    mass: dict  # concepts.spray.mass of the mean map
    corner: str  # its strongest corner
    why: str | None  # why it is a candidate shortcut, or None
    exemplars: tuple[tuple[int, np.ndarray, float], ...]  # (image index, its flattened map, p(class)), closest first

    @property
    def size(self) -> int:
        return len(self.names)

    def results(self) -> ShortcutsGroup:
        mm = self.mass
        return ShortcutsGroup(cluster=self.cluster, size=self.size, mean_confidence=round(self.mean_confidence, 4),
                              images=list(self.names), centre_of_mass=list(mm["centre_of_mass"]),
                              border_fraction=round(mm["border_fraction"], 4),
                              corner_fraction=round(mm["corners"][self.corner], 4), corner=self.corner,
                              candidate_shortcut=self.why)


@dataclass(frozen=True)
class ShortcutClass:
    """One scanned class: its clustered images and the clusters the eigengap chose."""

    name: str
    images: int
    k: int
    eigenvalues: tuple[float, ...]
    clusters: tuple[ShortcutCluster, ...]


@dataclass(frozen=True)
class ShortcutsResult:
    """What the section shows; :meth:`results` is its report.json entry."""

    method: str
    layer: str
    side: int
    all_labelled: bool
    min_images: int  # a class needs this many images to be clustered
    classes: tuple[ShortcutClass, ...]

    @property
    def flagged(self) -> list[str]:
        return [f"{c.name}, cluster {g.cluster} ({g.size} images): {g.why}"
                for c in self.classes for g in c.clusters if g.why]

    def results(self) -> ShortcutsResults:
        out = [ShortcutsClass(class_=c.name, images=c.images, clusters=c.k,
                              eigenvalues=[round(float(v), 4) for v in c.eigenvalues],
                              groups=[g.results() for g in c.clusters]) for c in self.classes]
        return ShortcutsResults(method=self.method, layer=self.layer, side=self.side, candidates=len(self.flagged),
                                classes_from="labels" if self.all_labelled else "predictions", classes=out)


def _clusters(ctx: Ctx, x: np.ndarray, labels: np.ndarray, k: int, idx: list[int], probs: np.ndarray, c,
              side: int, exemplars: int) -> list[ShortcutCluster]:
    """The non-empty clusters of one class's maps ``x`` (N x side*side) with SpRAy ``labels``."""
    out = []
    for g in range(k):
        sel = np.flatnonzero(labels == g)
        if sel.size == 0:
            continue
        mean_map = x[sel].mean(0)
        rest = np.flatnonzero(labels != g)
        mm = mass(mean_map.reshape(side, side))
        why = candidate(mm, mass(x[rest].mean(0).reshape(side, side))) if rest.size and sel.size >= 2 else None
        corner = max(CORNERS, key=lambda k: mm["corners"][k])
        conf = float(probs[np.asarray(idx)[sel], c].mean())
        near = sel[np.argsort(((x[sel] - mean_map) ** 2).sum(1), kind="stable")][:exemplars]
        out.append(ShortcutCluster(g, tuple(ctx.images.name(idx[i]) for i in sel), mean_map, conf, mm, corner, why,
                                   tuple((idx[i], x[i], float(probs[idx[i], c])) for i in near)))
    return out


def compute_shortcuts(ctx: Ctx, opts: ShortcutsOptions) -> ShortcutsResult:
    """Per chosen class: its images' maps, downsampled, clustered by SpRAy, and each cluster's mass statistics."""
    set_level_method("shortcuts", opts.method)
    classes, all_labelled = image_classes(ctx)
    probs = ctx.features().probs
    chosen = largest_classes(classes, opts.max_classes, max(4, opts.min_images))
    name = map_layer(ctx, opts.layer)
    side = max(2, int(opts.side))
    out = []
    for c in chosen:
        members = np.flatnonzero(classes == c)
        if members.size > opts.max_per_class:
            members = np.sort(ctx.rng(f"shortcuts/{c}").choice(members, opts.max_per_class, replace=False))
        idx = [int(i) for i in members]
        x = class_maps(ctx, name, opts.method, idx, c, lambda m: downsample(m, side))
        cl = spray(x, opts.max_clusters, ctx.seed_for(f"shortcuts/{c}"))
        groups = _clusters(ctx, x, cl.labels, cl.k, idx, probs, c, side, opts.exemplars)
        out.append(ShortcutClass(ctx.class_name(c), len(idx), cl.k, tuple(cl.eigenvalues), tuple(groups)))
    return ShortcutsResult(opts.method, name, side, all_labelled, max(4, opts.min_images), tuple(out))


def _class_group(ctx: Ctx, res: ShortcutsResult, sc: ShortcutClass, exemplars: int) -> Group:
    """One class: a row per cluster, its mean map then its closest images with their own maps."""
    thumb = min(160, max(64, ctx.pre.size * 2))
    items = []
    for g in sc.clusters:
        blank = np.full((thumb, thumb, 3), 255, dtype=np.uint8)
        items.append(heat_item(ctx, blank, _thumb_map(g.mean_map, (thumb, thumb)),
                               f"cluster {g.cluster}: {g.size} images",
                               f"mean p={g.mean_confidence:.2f}" + ("; CANDIDATE shortcut" if g.why else "")))
        for i, m, p in g.exemplars:
            img = ctx.images.display(i, thumb)
            items.append(heat_item(ctx, img, _thumb_map(m, (img.shape[1], img.shape[0])), ctx.images.name(i),
                                   f"p={p:.2f}"))
    cols = 1 + max(1, min(exemplars, max(g.size for g in sc.clusters)))
    rows_items = _pad_rows(items, [g.size for g in sc.clusters], cols, exemplars)
    return Group(f"{sc.name}: {sc.images} images, {sc.k} cluster{'s' if sc.k != 1 else ''}", [
        Grid(rows_items, columns=cols, cell_width=thumb, caption=(
            "Each row: the cluster's mean map (on white), then its images closest to that mean, each with its "
            f"own map. {set_level_method('shortcuts', res.method).name} for {sc.name}, downsampled to "
            f"{res.side}x{res.side}, each map "
            "scaled to sum 1 before clustering."))])


def present_shortcuts(ctx: Ctx, res: ShortcutsResult, exemplars: int) -> list[Block]:
    """The report blocks of a :class:`ShortcutsResult`."""
    blocks: list[Block] = [_class_group(ctx, res, sc, exemplars) for sc in res.classes]
    if not res.classes:
        return blocks + [Note(f"No class has {res.min_images} or more images, so no class was clustered; lower "
                              "shortcuts.min_images or add images.", kind="warning")]
    table = [[sc.name, g.cluster, g.size, round(g.mean_confidence, 3),
              "({:.2f}, {:.2f})".format(*g.mass["centre_of_mass"]), round(g.mass["border_fraction"], 3),
              f"{g.mass['corners'][g.corner]:.2f} {g.corner}", "candidate" if g.why else ""]
             for sc in res.classes for g in sc.clusters]
    blocks.append(Table(["class", "cluster", "images", "mean p", "centre of mass (y, x)", "border share",
                         "top corner", "flag"], table, numeric=[1, 2, 3, 5],
                        title="Clusters and where their mean maps put the mass",
                        highlight={i: "bad" for i, r in enumerate(table) if r[-1]}))
    flagged = res.flagged
    if flagged:
        blocks.append(Note("Candidate shortcuts — evidence apart from the rest of the class; look at these images "
                           "before concluding anything (a corner cluster can also be objects that happen to sit "
                           "there): " + "; ".join(flagged) + ".", kind="warning"))
    else:
        blocks.append(Note("No cluster's mean map sits apart from the rest of its class by the rules below: this scan "
                           "found no candidate shortcut (it cannot rule one out: a shortcut spread over the whole "
                           "object area, or present in every image of a class, does not separate into a cluster)."))
    has = ctx.images.labels >= 0
    blocks.append(Note(
        f"Classes from {'labels' if res.all_labelled else 'labels where known, else predictions'}"
        f"{'' if has.all() else ' (unlabelled images are grouped by their prediction)'}; the "
        f"{len(res.classes)} largest with at least {res.min_images} images. Maps: "
        f"{method_text(res.method, res.layer)}. Candidate rule: "
        "a corner square (1/4 of the side) holding at least 3x its area share and 15 points more than the "
        "rest of the class; or the border band (1/8 of the side) holding half the mass and 20 points more "
        "(a distant centre of mass alone is not flagged: objects at different places separate that way "
        "too). Clusters of one image are never flagged."))
    return blocks


@technique(
    "shortcuts", "Shortcut scan (SpRAy clusters of attribution maps)", options=ShortcutsOptions, order=48,
    role="review",
    needs_autograd=True, needs_layers=True, unsupported_if=map_unsupported("shortcuts"),
    references=[LAPUSCHKIN_2019, SELVARAJU_2017, VON_LUXBURG_2007],
    presets={"minimal": {"max_classes": 2, "min_images": 4, "exemplars": 2, "max_per_class": 60},
             "full": {"max_classes": 12, "max_per_class": 1000}},
)
def shortcuts(ctx: Ctx, opts: ShortcutsOptions) -> Section:
    """For each class, its images' attribution maps are grouped by where they put the evidence; each row is one
    group: its mean map (left) and the images closest to it with their own maps. Groups whose evidence sits in a
    corner or the border while the rest of the class looks elsewhere are flagged as candidate shortcuts — a
    watermark, a frame, a background — for a person to check; the flag is a lead, not a verdict."""
    res = compute_shortcuts(ctx, opts)
    sec = Section(id="shortcuts", title="Shortcut scan (SpRAy clusters of attribution maps)")
    sec.add(*present_shortcuts(ctx, res, opts.exemplars))
    if res.classes:
        sec.params.update(layer=res.layer)
    sec.results = to_json(res.results())
    return sec


def _pad_rows(items: list, sizes: list[int], cols: int, exemplars: int) -> list:
    """Items laid out one cluster per row of ``cols`` cells (short rows padded with empty white cells)."""
    out, k = [], 0
    for size in sizes:
        n = 1 + min(exemplars, size)
        out += items[k:k + n]
        k += n
        pad = cols - n
        out += [GridItem(ImageData(np.full((4, 4, 3), 255, dtype=np.uint8)), alt="")] * pad
    return out
