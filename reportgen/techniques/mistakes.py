"""Mistakes: the most frequent confused pairs, and why the model said P rather than T.

For each (true T, predicted P) pair that the labelled set confuses most often (without labels: the lowest-margin
predictions, T = the runner-up): the images, a map for P and one for T (Grad-CAM, Selvaraju et al. 2017, or
gradient x input), and the contrastive map of the logit difference ``S_P - S_T`` (Prabhushankar et al. 2020):
Grad-CAM ``relu(sum_c w_c A_c)`` with ``w_c = mean_ij d(S_P - S_T)/dA_cij`` and gradient x input
``sum_c x_c d(S_P - S_T)/dx_c`` (positive part). Red in a contrastive map = what pushes the decision to P and away
from T. Beside each image: its nearest correctly classified images of P and of T in penultimate-feature space
(cosine distance), to show which class it resembles in the model's own features.
"""

from __future__ import annotations

from typing import Annotated

from dataclasses import dataclass

import numpy as np

from ..attribution import contrast as C
from ..attribution.visualization import attr_item
from ..concepts.confusions import confused_pairs, lowest_margin_pairs, nearest_of_class
from ..papers import PRABHUSHANKAR_2020, SELVARAJU_2017
from ..registry import Range, technique
from ..report import Grid, GridItem, Group, ImageData, Note, Section, Table, plural
from ..device import graph_batch_size
from ._explain import cell_width, heat_item
from ._setlevel import METHOD_NAMES, MapMethod, check_method, map_layer

RESULTS = {
    "mode": "confusions (labelled mistakes) or lowest_margin (no labelled mistakes: the least certain predictions)",
    "method": "what draws the per-class maps (gradcam or gradient_x_input)",
    "layer": "the Grad-CAM layer",
    "labelled_images": "images with a true label",
    "mistakes": "labelled images whose prediction differs from the label",
    "pairs": "the pairs shown",
    "pairs[].true": "(confusions) the true class",
    "pairs[].runner_up": "(lowest_margin) the runner-up class",
    "pairs[].predicted": "the predicted class",
    "pairs[].count": "images of the whole set with this (true, predicted) pair "
                     "(lowest_margin: this runner-up and prediction)",
    "pairs[].images[].image": "an image of the pair "
                              "(most confident mistakes first; lowest margin first without labels)",
    "pairs[].images[].margin": "p(predicted) - p(true) (lowest_margin: - p(runner-up))",
    "pairs[].images[].p_predicted": "softmax probability of the predicted class",
    "pairs[].images[].p_true": "(confusions) softmax probability of the true class",
    "pairs[].images[].p_runner_up": "(lowest_margin) softmax probability of the runner-up class",
    "pairs[].images[].nearest_predicted_distance": "cosine distance to the nearest correctly classified image of P "
                                                   "(null: none)",
    "pairs[].images[].nearest_true_distance": "(confusions) cosine distance to the nearest correctly classified "
                                              "image of T (null: none)",
    "pairs[].images[].nearest_runner_up_distance": "(lowest_margin) cosine distance to the nearest image predicted "
                                                   "as the runner-up class (null: none)",
}


@dataclass
class MistakesOptions:
    max_pairs: Annotated[int, Range(ge=1)] = 4
    """Confused pairs shown (the most frequent)."""
    images_per_pair: Annotated[int, Range(ge=1)] = 3
    """Images shown per pair."""
    neighbours: Annotated[int, Range(ge=0)] = 3
    """Nearest correctly classified images shown per class and image."""
    method: MapMethod = "gradcam"
    """Which attribution draws the maps for P and for T: "gradcam" (the default: the faithfulness section's ranking
    is not read, sections being independent) or "gradient_x_input". The contrastive map is always drawn both ways."""
    layer: str | None = None
    """Grad-CAM layer (None: the last module with a spatial output)."""
    thumb: Annotated[int, Range(ge=8)] = 64
    """Neighbour thumbnail side in pixels."""


def _maps(ctx, layer, idx: list[int], pred: np.ndarray, other: np.ndarray, method: str):
    """Per image: map for P, map for T, contrastive Grad-CAM, contrastive gradient x input (numpy, H x W)."""
    pm = ctx.pixel_model
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("p", "t", "cg", "cx")}
    step = graph_batch_size(ctx, cap=min(ctx.batch_size, 16))
    for s in range(0, len(idx), step):
        x = ctx.to_device(ctx.images.batch(idx[s:s + step]))
        size = tuple(x.shape[-2:])
        p, t = pred[s:s + step], other[s:s + step]
        if method == "gradcam":
            mp, mt = C.class_gradcam(pm, layer, x, p, size), C.class_gradcam(pm, layer, x, t, size)
        else:
            mp, mt = C.gradient_x_input(pm, x, p).clamp_min(0), C.gradient_x_input(pm, x, t).clamp_min(0)
        out["p"].append(mp.cpu().numpy())
        out["t"].append(mt.cpu().numpy())
        out["cg"].append(C.contrastive_gradcam(pm, layer, x, p, t, size=size).cpu().numpy())
        out["cx"].append(C.contrastive_gradient_x_input(pm, x, p, t).clamp_min(0).cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


@technique(
    "mistakes", "Mistakes: confused pairs and why P rather than T", options=MistakesOptions, order=47,
    needs_autograd=True, needs_layers=True, references=[SELVARAJU_2017, PRABHUSHANKAR_2020],
    presets={"minimal": {"max_pairs": 2, "images_per_pair": 2, "neighbours": 2, "thumb": 48},
             "full": {"max_pairs": 8, "images_per_pair": 4, "neighbours": 4}},
)
def mistakes(ctx, opts: MistakesOptions) -> Section:
    """Each row is one misclassified image (true class T, predicted P): the image, the evidence for P, the evidence
    for T, and two contrastive maps of the logit difference S_P - S_T (Grad-CAM and gradient x input, positive
    part: what makes the model prefer P over T). Under each pair, the image's nearest correctly classified images
    of P and of T in the model's feature space: if the P neighbours are closer, the model sees the image as a P."""
    check_method("mistakes", opts.method)
    sec = Section(id="mistakes", title="Mistakes: confused pairs and why P rather than T")
    feats = ctx.features()
    probs, preds, labels = feats.probs, feats.preds, ctx.images.labels
    known = labels >= 0
    pairs, wrong = confused_pairs(probs, labels, opts.max_pairs, opts.images_per_pair)
    mode = "confusions"
    if not pairs:
        mode = "lowest_margin"
        pairs = lowest_margin_pairs(probs, opts.max_pairs * opts.images_per_pair)
        sec.add(Note(("No labelled image is misclassified" if known.any() else "The images have no labels")
                     + f": shown instead are the {sum(len(p.images) for p in pairs)} predictions with the smallest "
                     "margin between the two most probable classes; 'T' is then the runner-up class, not a label.",
                     kind="info"))
    name = map_layer(ctx, opts.layer)
    layer = ctx.layer(name)
    idx = [i for p in pairs for i in p.images]
    pv = np.array([p.predicted for p in pairs for _ in p.images], dtype=np.int64)
    ov = np.array([p.other for p in pairs for _ in p.images], dtype=np.int64)
    maps = _maps(ctx, layer, idx, pv, ov, opts.method)
    correct = known & (preds == labels) if known.any() else np.ones(len(preds), dtype=bool)
    tname = "T" if mode == "confusions" else "runner-up"
    tkey = "true" if mode == "confusions" else "runner_up"  # without a labelled mistake no number is a "true" one
    mname = METHOD_NAMES[opts.method]
    if mode == "confusions":
        rows = [[ctx.class_name(p.other), ctx.class_name(p.predicted), p.count] for p in pairs]
        sec.add(Table(["true class", "predicted", "images"], rows, numeric=[2],
                      title=f"Most frequent confusions ({wrong} of {int(known.sum())} labelled images are wrong)",
                      caption=("Every pair shown occurs once in this set, so none is a systematic confusion yet; ties "
                               "are ordered by the most confident mistake." if all(p.count == 1 for p in pairs)
                               else "Ties are ordered by the most confident mistake.")))
    out_pairs, k, thumb = [], max(0, opts.neighbours), int(opts.thumb)
    row = 0
    for p in pairs:
        items, nrows, rimgs = [], [], []
        pool_p = np.flatnonzero(correct & (preds == p.predicted))
        pool_t = np.flatnonzero(correct & (preds == p.other))
        np_idx, np_d = nearest_of_class(feats.penultimate, p.images, pool_p, k + 1)
        nt_idx, nt_d = nearest_of_class(feats.penultimate, p.images, pool_t, k + 1)
        for j, i in enumerate(p.images):
            r = row + j
            pP, pT = float(probs[i, p.predicted]), float(probs[i, p.other])
            img = ctx.images.display(i)
            items.append(GridItem(ImageData(img), label=ctx.images.name(i),
                                  sublabel=f"p({ctx.class_name(p.predicted)})={pP:.2f}, "
                                           f"p({ctx.class_name(p.other)})={pT:.2f}",
                                  alt=f"misclassified {ctx.images.name(i)}",
                                  tone="bad" if mode == "confusions" else ""))
            items.append(heat_item(ctx, img, maps["p"][r], f"for P: {ctx.class_name(p.predicted)}", mname))
            items.append(heat_item(ctx, img, maps["t"][r], f"for {tname}: {ctx.class_name(p.other)}", mname))
            items.append(heat_item(ctx, img, maps["cg"][r], "P rather than " + tname, "Grad-CAM of S_P - S_T"))
            items.append(attr_item(maps["cx"][r], img, "overlay", "P rather than " + tname,
                                   "grad x input of S_P - S_T", sign="positive", outlier_perc=0.5))
            cells = [GridItem(ImageData(ctx.images.thumbnail(i, thumb)), label="this image", alt=ctx.images.name(i))]
            dist = {}
            for tag, cls, nn, dd in (("P", p.predicted, np_idx[j], np_d[j]), (tname, p.other, nt_idx[j], nt_d[j])):
                keep = [(int(a), float(b)) for a, b in zip(nn, dd) if np.isfinite(b)][:k]
                dist[tag] = keep[0][1] if keep else None
                cells += [GridItem(ImageData(ctx.images.thumbnail(a, thumb)), label=f"{tag}: {ctx.class_name(cls)}",
                                   sublabel=f"d = {b:.3f}", alt=f"neighbour {ctx.images.name(a)}") for a, b in keep]
            nrows.append(Grid(cells, columns=len(cells), cell_width=thumb))
            rimgs.append({"image": ctx.images.name(i), "margin": round(pP - pT, 4), "p_predicted": round(pP, 4),
                          f"p_{tkey}": round(pT, 4), "nearest_predicted_distance": _r(dist["P"]),
                          f"nearest_{tkey}_distance": _r(dist[tname])})
        row += len(p.images)
        both = [d for d in rimgs if d["nearest_predicted_distance"] is not None
                and d[f"nearest_{tkey}_distance"] is not None]
        closer = sum(1 for d in both if d["nearest_predicted_distance"] < d[f"nearest_{tkey}_distance"])
        if both:
            verdict = (f"for {closer} of {plural(len(both), 'image')} the nearest {ctx.class_name(p.predicted)} is "
                       f"closer than the nearest {ctx.class_name(p.other)}.")
        else:
            missing = [ctx.class_name(c) for c, pool in ((p.predicted, pool_p), (p.other, pool_t)) if pool.size == 0]
            verdict = (f"no correctly classified image of {' or '.join(missing) or 'either class'} "
                       "in the set to compare with.")
        title = (f"{'true' if mode == 'confusions' else 'runner-up'} {ctx.class_name(p.other)} → predicted "
                 f"{ctx.class_name(p.predicted)} ({plural(p.count, 'image')} in the set)")
        sec.add(Group(title, [Grid(items, columns=5, cell_width=cell_width(ctx)), *nrows, Note(
            f"Nearest correctly classified neighbours (cosine distance of penultimate features"
            f"{'' if known.any() else '; without labels: images predicted as that class, not checked'}): "
            + verdict)]))
        out_pairs.append({tkey: ctx.class_name(p.other), "predicted": ctx.class_name(p.predicted),
                          "count": p.count, "images": rimgs})
    sec.add(Note(f"Maps for P and for {tname}: {mname}" + (f" at layer {name}" if opts.method == "gradcam" else "")
                 + f". Contrastive maps: Grad-CAM of S_P - S_T at {name}, and gradient x input of S_P - S_T "
                 "(positive part), each scaled to its own 99.5th percentile. The per-class maps use "
                 f"{mname} because this section does not read the faithfulness ranking (sections are independent); "
                 "set mistakes.method to change it."))
    sec.params.update(layer=name, images=[ctx.images.name(i) for i in idx])
    sec.results = {"mode": mode, "method": opts.method, "layer": name, "labelled_images": int(known.sum()),
                   "mistakes": wrong, "pairs": out_pairs}
    return sec


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 4)

