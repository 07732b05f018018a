"""Shared by the attribution techniques (saliency, occlusion, gradcam, smoothgrad, integrated_gradients, sanity):
which images, which classes, and the grid cells that show them (maps are drawn by :mod:`reportgen.attribution.visualization`).
Not a technique (the leading underscore keeps the registry out)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..report import GridItem, ImageData
from ..sampling import spread_indices, target_classes
from ..attribution.visualization import attr_item


@dataclass
class Batch:
    """The images a section explains: indices, pixel batch on the device, class per image and the prediction."""

    idx: list[int]
    x: torch.Tensor
    targets: np.ndarray
    from_label: np.ndarray
    preds: np.ndarray
    probs: np.ndarray  # softmax probability of the target


def predict_batch(ctx, idx: list[int], classes=None) -> Batch:
    """``idx`` on the device with one forward pass: prediction, and the class to explain per image (``classes``,
    else the true label when known, else the predicted class) with its softmax probability."""
    x = ctx.to_device(ctx.images.batch(idx))
    with torch.inference_mode():
        p = torch.softmax(ctx.pixel_model(x).float(), 1).cpu().numpy()
    preds = p.argmax(1)
    if classes is None:
        tgt, known = target_classes(ctx, idx, preds)
    else:
        tgt, known = np.asarray(classes, dtype=np.int64), np.zeros(len(idx), dtype=bool)
    return Batch(list(idx), x, tgt, known, preds, p[np.arange(len(idx)), tgt])


def show_indices(ctx, n: int) -> list[int]:
    """The images that saliency, occlusion and segmentation show (the same ones, in order)."""
    return spread_indices(ctx, n, "explain/images")


def explain_batch(ctx, n: int) -> Batch:
    """The same images saliency/occlusion show; the true label where known, else the predicted class."""
    return predict_batch(ctx, show_indices(ctx, n))


def image_item(ctx, i: int, target: int, from_label: bool, pred: int, prob: float) -> GridItem:
    """Image ``i`` with the explained class, its probability and (if wrong) the prediction; green/red
    outline where the true label is known and the prediction is right/wrong. The picture carries the image's id:
    the renderer links it, and the maps that follow it in its grid, to the image's page."""
    wrong = int(pred) != int(target)
    sub = f"{ctx.class_name(int(target))} ({'true label' if from_label else 'predicted'}), p={prob:.2f}"
    if wrong:
        sub += f"; predicted {ctx.class_name(int(pred))}"
    return GridItem(ImageData(ctx.images.display(i), image_id=ctx.images.image_id(i)), label=ctx.images.name(i), sublabel=sub,
                    alt=f"input {ctx.images.name(i)}", tone=("" if not from_label else "bad" if wrong else "ok"))


def input_item(ctx, b: Batch, k: int) -> GridItem:
    """:func:`image_item` of the ``k``-th image of a batch."""
    return image_item(ctx, b.idx[k], int(b.targets[k]), bool(b.from_label[k]), int(b.preds[k]), float(b.probs[k]))


def heat_item(ctx, image: np.ndarray, m: np.ndarray, label: str, sublabel: str = "", over: bool = True,
              pct: float = 99.5) -> GridItem:
    """A non-negative map, over the image (``jet``) or on its own (grey, white = its ``pct`` percentile)."""
    return attr_item(m, image, "overlay" if over else "map", label, sublabel, outlier_perc=100.0 - pct)


def cell_width(ctx) -> int:
    return min(224, ctx.pre.size * 2 if ctx.pre.size < 112 else ctx.pre.size)


def peak_area(m: np.ndarray) -> float:
    """Fraction of the map at or above half its maximum (0 for an all-zero map): how focused it is."""
    mx = float(m.max())
    return float((m >= 0.5 * mx).mean()) if mx > 0 else 0.0
