"""Shortcut scan: SpRAy (Lapuschkin et al. 2019) — spectral clustering of each class's attribution maps.

Per class (label, else prediction): every image's map for its class (Grad-CAM or gradient x input) downsampled to
``side x side`` and scaled to sum 1; spectral clustering with a self-tuning affinity, the number of clusters by
the eigengap of the normalised Laplacian (von Luxburg 2007), seeded. A cluster's mean map shows where that group of
images draws its evidence from. A cluster whose mean map sits apart from the rest of its class (mass in a corner or
the border band) is listed as a CANDIDATE shortcut: a person must look at its images.
"""

from __future__ import annotations

from typing import Annotated

from dataclasses import dataclass

import numpy as np

from ..concepts.spray import CORNERS, candidate, downsample, mass, spray
from ..papers import LAPUSCHKIN_2019, SELVARAJU_2017, VON_LUXBURG_2007
from ..pictures import resize_map
from ..registry import Range, technique
from ..report import Grid, GridItem, Group, ImageData, Note, Section, Table
from ._explain import heat_item
from ._setlevel import (
    METHOD_NAMES,
    MapMethod,
    check_method,
    class_maps,
    image_classes,
    largest_classes,
    map_layer,
)

RESULTS = {
    "method": "attribution behind the maps (gradcam or gradient_x_input)",
    "layer": "the Grad-CAM layer",
    "side": "maps are downsampled to side x side before clustering",
    "classes_from": "labels or predictions (the class each image is grouped under)",
    "candidates": "number of clusters named as candidate shortcuts (to be checked by a person)",
    "classes": "one entry per class scanned (an empty list when no class has enough images)",
    "classes[].class": "class name",
    "classes[].images": "images of the class that were clustered",
    "classes[].clusters": "number of clusters (eigengap)",
    "classes[].eigenvalues": "smallest eigenvalues of the normalised Laplacian (the eigengap picks the cluster count)",
    "classes[].groups[].cluster": "cluster id (0 = largest)",
    "classes[].groups[].size": "images in the cluster",
    "classes[].groups[].mean_confidence": "mean softmax probability of the class over its images",
    "classes[].groups[].images": "names of its member images",
    "classes[].groups[].centre_of_mass": "(y, x) of its mean map, in [0, 1] of the image side",
    "classes[].groups[].border_fraction": "share of its mean map's mass in the outer border band (1/8 of the side)",
    "classes[].groups[].corner_fraction": "share of its mean map's mass in its strongest corner square "
                                          "(1/4 of the side)",
    "classes[].groups[].corner": "that corner",
    "classes[].groups[].candidate_shortcut": "null, or why its evidence sits apart from the rest of the class",
}


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
    method: MapMethod = "gradcam"
    """Attribution behind the maps: "gradcam" (default) or "gradient_x_input"."""
    layer: str | None = None
    """Grad-CAM layer (None: the last module with a spatial output)."""


def _thumb_map(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A flattened square map resized to ``size`` (width, height)."""
    side = round(np.sqrt(m.size))
    return resize_map(m.reshape(side, side).astype(np.float32), size)


@technique(
    "shortcuts", "Shortcut scan (SpRAy clusters of attribution maps)", options=ShortcutsOptions, order=48,
    needs_autograd=True, needs_layers=True, references=[LAPUSCHKIN_2019, SELVARAJU_2017, VON_LUXBURG_2007],
    presets={"minimal": {"max_classes": 2, "min_images": 4, "exemplars": 2, "max_per_class": 60},
             "full": {"max_classes": 12, "max_per_class": 1000}},
)
def shortcuts(ctx, opts: ShortcutsOptions) -> Section:
    """For each class, its images' attribution maps are grouped by where they put the evidence; each row is one
    group: its mean map (left) and the images closest to it with their own maps. Groups whose evidence sits in a
    corner or the border while the rest of the class looks elsewhere are flagged as candidate shortcuts — a
    watermark, a frame, a background — for a person to check; the flag is a lead, not a verdict."""
    check_method("shortcuts", opts.method)
    sec = Section(id="shortcuts", title="Shortcut scan (SpRAy clusters of attribution maps)")
    classes, all_labelled = image_classes(ctx)
    has = ctx.images.labels >= 0
    probs = ctx.features().probs
    chosen = largest_classes(classes, opts.max_classes, max(4, opts.min_images))
    name = map_layer(ctx, opts.layer)
    side = max(2, int(opts.side))
    thumb = min(160, max(64, ctx.pre.size * 2))
    out, table, flagged = [], [], []
    for c in chosen:
        members = np.flatnonzero(classes == c)
        if members.size > opts.max_per_class:
            members = np.sort(ctx.rng(f"shortcuts/{c}").choice(members, opts.max_per_class, replace=False))
        idx = [int(i) for i in members]
        x = class_maps(ctx, name, opts.method, idx, c, lambda m: downsample(m, side))
        cl = spray(x, opts.max_clusters, ctx.seed_for(f"shortcuts/{c}"))
        cname = ctx.class_name(c)
        items, groups = [], []
        for g in range(cl.k):
            sel = np.flatnonzero(cl.labels == g)
            if sel.size == 0:
                continue
            mean_map = x[sel].mean(0)
            rest = np.flatnonzero(cl.labels != g)
            mm = mass(mean_map.reshape(side, side))
            why = candidate(mm, mass(x[rest].mean(0).reshape(side, side))) if rest.size and sel.size >= 2 else None
            corner = max(CORNERS, key=lambda k: mm["corners"][k])
            conf = float(probs[members[sel], c].mean())
            names = [ctx.images.name(idx[i]) for i in sel]
            groups.append({"cluster": g, "size": int(sel.size), "mean_confidence": round(conf, 4), "images": names,
                           "centre_of_mass": list(mm["centre_of_mass"]),
                           "border_fraction": round(mm["border_fraction"], 4),
                           "corner_fraction": round(mm["corners"][corner], 4), "corner": corner,
                           "candidate_shortcut": why})
            if why:
                flagged.append(f"{cname}, cluster {g} ({sel.size} images): {why}")
            blank = np.full((thumb, thumb, 3), 255, dtype=np.uint8)
            items.append(heat_item(ctx, blank, _thumb_map(mean_map, (thumb, thumb)), f"cluster {g}: {sel.size} images",
                                   f"mean p={conf:.2f}" + ("; CANDIDATE shortcut" if why else "")))
            near = sel[np.argsort(((x[sel] - mean_map) ** 2).sum(1), kind="stable")][: opts.exemplars]
            for i in near:
                img = ctx.images.display(idx[i], thumb)
                items.append(heat_item(ctx, img, _thumb_map(x[i], (img.shape[1], img.shape[0])),
                                       ctx.images.name(idx[i]),
                                       f"p={probs[idx[i], c]:.2f}"))
            table.append([cname, g, int(sel.size), round(conf, 3), "({:.2f}, {:.2f})".format(*mm["centre_of_mass"]),
                          round(mm["border_fraction"], 3),
                          f"{mm['corners'][corner]:.2f} {corner}", "candidate" if why else ""])
        cols = 1 + max(1, min(opts.exemplars, max(g["size"] for g in groups)))
        rows_items = _pad_rows(items, groups, cols, opts.exemplars)
        sec.add(Group(f"{cname}: {len(idx)} images, {cl.k} cluster{'s' if cl.k != 1 else ''}", [
            Grid(rows_items, columns=cols, cell_width=thumb, caption=(
                "Each row: the cluster's mean map (on white), then its images closest to that mean, each with its "
                f"own map. {METHOD_NAMES[opts.method]} for {cname}, downsampled to {side}x{side}, each map scaled "
                "to sum 1 before clustering."))]))
        out.append({"class": cname, "images": len(idx), "clusters": cl.k,
                    "eigenvalues": [round(float(v), 4) for v in cl.eigenvalues], "groups": groups})
    if not chosen:
        sec.add(Note(f"No class has {max(4, opts.min_images)} or more images, so no class was clustered; lower "
                     "shortcuts.min_images or add images.", kind="warning"))
        sec.results = {"method": opts.method, "layer": name, "side": side, "candidates": 0,
                       "classes_from": "labels" if all_labelled else "predictions", "classes": []}
        return sec
    sec.add(Table(["class", "cluster", "images", "mean p", "centre of mass (y, x)", "border share", "top corner",
                   "flag"], table, numeric=[1, 2, 3, 5], title="Clusters and where their mean maps put the mass",
                  highlight={i: "bad" for i, r in enumerate(table) if r[-1]}))
    if flagged:
        sec.add(Note("Candidate shortcuts — evidence apart from the rest of the class; look at these images before "
                     "concluding anything (a corner cluster can also be objects that happen to sit there): "
                     + "; ".join(flagged) + ".", kind="warning"))
    else:
        sec.add(Note("No cluster's mean map sits apart from the rest of its class by the rules below: this scan "
                     "found no candidate shortcut (it cannot rule one out: a shortcut spread over the whole object "
                     "area, or present in every image of a class, does not separate into a cluster)."))
    sec.add(Note(f"Classes from {'labels' if all_labelled else 'labels where known, else predictions'}"
                 f"{'' if has.all() else ' (unlabelled images are grouped by their prediction)'}; the "
                 f"{len(chosen)} largest with at least {max(4, opts.min_images)} images. Maps: "
                 f"{METHOD_NAMES[opts.method]}{' at ' + name if opts.method == 'gradcam' else ''}. Candidate rule: "
                 "a corner square (1/4 of the side) holding at least 3x its area share and 15 points more than the "
                 "rest of the class; or the border band (1/8 of the side) holding half the mass and 20 points more "
                 "(a distant centre of mass alone is not flagged: objects at different places separate that way "
                 "too). Clusters of one image are never flagged."))
    sec.params.update(layer=name)
    sec.results = {"method": opts.method, "layer": name, "side": side, "candidates": len(flagged),
                   "classes_from": "labels" if all_labelled else "predictions", "classes": out}
    return sec


def _pad_rows(items: list, groups: list, cols: int, exemplars: int) -> list:
    """Items laid out one cluster per row of ``cols`` cells (short rows padded with empty white cells)."""
    out, k = [], 0
    for g in groups:
        n = 1 + min(exemplars, g["size"])
        out += items[k:k + n]
        k += n
        pad = cols - n
        out += [GridItem(ImageData(np.full((4, 4, 3), 255, dtype=np.uint8)), alt="")] * pad
    return out
