"""Vanilla saliency maps (Simonyan, Vedaldi & Zisserman 2014).

``M(x) = max_c |d S_k(x) / d x_c|``: the absolute gradient of the unnormalised class score
``S_k`` (the logit, not the softmax probability) w.r.t. each input pixel, maximised over the
colour channels. Bright pixels are those whose small change would change the class score most.
Computed in pixel space (RGB in [0, 1], the normalisation is part of the model) with one
backward pass per batch of images (the sum of the selected class scores: images do not
interact, so each image's gradient is its own). The maps are memoised per run, so
``segmentation`` reuses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np

from .. import attribution as A
from ..papers import SIMONYAN_2014
from ..registry import Range, technique
from ..report import Grid, Note, Section
from ..sampling import device_batch_size
from ..attribution.visualization import attr_image, attr_item
from ._explain import cell_width, image_item, predict_batch, show_indices

# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)
RESULTS = {
    "images[].image": "image name",
    "images[].class": "class explained",
    "images[].class_index": "its index",
    "images[].class_from_label": "the class is the true label (else the prediction)",
    "images[].p": "softmax probability of the class",
    "images[].predicted": "predicted class",
    "images[].max_abs_grad": "largest |d score / d pixel|",
    "images[].top5pct_mass": "share of the map's total in its brightest 5% of pixels (0.05: flat)",
}

MEMO_KEY = "saliency:maps"


@dataclass
class SaliencyResult:
    """Saliency of one image: the map (H x W float32), the class it explains and the prediction."""

    index: int
    map: np.ndarray
    target: int
    from_label: bool
    pred: int
    prob: float  # softmax probability of ``target``


def saliency_maps(ctx, indices: list[int], classes: list[int] | None = None,
                  batch_size: int | None = None) -> list[SaliencyResult]:
    """Saliency maps of ``indices``, ``batch_size`` images per forward/backward pass.

    ``batch_size`` None: the run's batch size on a GPU; cache-sized batches on the CPU (see
    :func:`reportgen.sampling.device_batch_size`).

    ``classes`` gives the class to explain per image; by default the true label when known,
    else the predicted class (decided by a forward pass before the gradient's).
    """
    bs = max(1, int(batch_size or device_batch_size(ctx, cap=ctx.batch_size)))
    out: list[SaliencyResult] = []
    nb = (len(indices) + bs - 1) // bs
    for b in ctx.progress(range(nb), "Saliency maps", total=nb):
        sl = slice(b * bs, (b + 1) * bs)
        bt = predict_batch(ctx, list(indices[sl]), None if classes is None else classes[sl])
        sal = A.to_map(A.saliency(ctx.output_model, bt.x, bt.targets)).float().cpu().numpy()
        for k, i in enumerate(bt.idx):
            out.append(SaliencyResult(int(i), sal[k].astype(np.float32), int(bt.targets[k]), bool(bt.from_label[k]),
                                      int(bt.preds[k]), float(bt.probs[k])))
    return out


def cached_saliency(ctx, indices: list[int]) -> list[SaliencyResult]:
    """Saliency maps (default classes) for ``indices``, computed once per run and shared."""
    memo: dict[int, SaliencyResult] = ctx.memo(MEMO_KEY, dict)
    todo = [i for i in indices if i not in memo]
    if todo:
        for r in saliency_maps(ctx, todo):
            memo[r.index] = r
    return [memo[i] for i in indices]


def saliency_to_uint8(m: np.ndarray, pct: float = 99.0) -> np.ndarray:
    """A saliency map as greyscale: 0 -> black, its ``pct`` percentile and above -> white."""
    return attr_image(m, view="map", outlier_perc=100.0 - pct)


def smooth(m: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a float map (OpenCV)."""
    import cv2

    return cv2.GaussianBlur(np.asarray(m, dtype=np.float32), (0, 0), sigmaX=float(sigma))


@dataclass
class SaliencyOptions:
    max_images: Annotated[int, Range(ge=1)] = 8
    """How many images to show (chosen deterministically, spread across classes)."""
    percentile: Annotated[float, Range(gt=0, le=100)] = 99.0
    """Map values at or above this percentile are shown white (a few extreme pixels would hide the rest)."""
    smoothed_overlay: bool = True
    """Also show the map Gaussian-smoothed and overlaid on the image (easier to see where it lies)."""


@technique(
    "saliency", "Saliency maps", options=SaliencyOptions, order=44, needs_autograd=True,
    references=[SIMONYAN_2014],
    presets={"minimal": {"max_images": 2}, "full": {"max_images": 16}},
)
def saliency(ctx, opts: SaliencyOptions) -> Section:
    """Beside each image is the absolute gradient of its class score with respect to every pixel (max over colour
    channels): bright pixels are those whose change would move the score most. A model that looks at the object
    lights up the object's outline and parts; light on the background or the frame means it relies on context."""
    idx = show_indices(ctx, opts.max_images)
    results = cached_saliency(ctx, idx)
    items = []
    for r in results:
        img = ctx.images.display(r.index)
        name = ctx.images.name(r.index)
        items.append(image_item(ctx, r.index, r.target, r.from_label, r.pred, r.prob))
        items.append(attr_item(r.map, view="map", label="saliency", sublabel=f"max |grad| = {float(r.map.max()):.3g}",
                               alt=f"saliency map of {name} for {ctx.class_name(r.target)}",
                               outlier_perc=100.0 - opts.percentile))
        if opts.smoothed_overlay:
            items.append(attr_item(smooth(r.map, max(1.0, ctx.pre.size / 56.0)), img, "overlay",
                                   label="smoothed, over the image", alt=f"smoothed saliency of {name} over the image",
                                   outlier_perc=0.5, cmap="inferno", alpha=0.55))
    sec = Section(id="saliency", title="Saliency maps")
    any_label = any(r.from_label for r in results)
    any_pred = any(not r.from_label for r in results)
    which = ("the true label" if any_label and not any_pred else "the predicted class" if not any_label
             else "the true label where known, else the predicted class")
    per = 3 if opts.smoothed_overlay else 2
    sec.add(Grid(items, columns=2 * per, cell_width=cell_width(ctx),
                 caption=(f"Each image beside |d score / d pixel| (max over RGB) for {which}, the unnormalised "
                          f"score (logit) of that class. Grey scale per map: black = 0, white = its "
                          f"{opts.percentile:g}th percentile or more"
                          + ("; then the same map Gaussian-smoothed (sigma = input side / 56) over the image."
                             if opts.smoothed_overlay else "."))))
    if not results:
        sec.add(Note("No images to show.", kind="warning"))
    sec.params["images"] = [ctx.images.name(r.index) for r in results]
    sec.results = {"images": [{
        "image": ctx.images.name(r.index), "class": ctx.class_name(r.target), "class_index": int(r.target),
        "class_from_label": bool(r.from_label), "p": round(float(r.prob), 4), "predicted": ctx.class_name(r.pred),
        "max_abs_grad": float(r.map.max()),
        # share of the total saliency inside the brightest 5% of pixels: 0.05 = flat, near 1 = concentrated
        "top5pct_mass": round(float(np.sort(r.map.ravel())[::-1][:max(1, r.map.size // 20)].sum()
                                    / max(float(r.map.sum()), 1e-12)), 4),
    } for r in results]}
    return sec


__all__ = ["saliency_maps", "cached_saliency", "SaliencyResult", "show_indices", "saliency_to_uint8"]
