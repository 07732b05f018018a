"""Shared by the attribution techniques (gradcam, smoothgrad, integrated_gradients, sanity): which images,
which classes, and how a map is drawn. Not a technique (the leading underscore keeps the registry out)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..features import target_classes
from ..hooks import eval_mode
from ..pictures import overlay
from ..report import GridItem, ImageData
from .saliency import saliency_to_uint8, show_indices


@dataclass
class Batch:
    """The images a section explains: indices, pixel batch on the device, class per image and the prediction."""

    idx: list[int]
    x: torch.Tensor
    targets: np.ndarray
    from_label: np.ndarray
    preds: np.ndarray
    probs: np.ndarray  # softmax probability of the target


def explain_batch(ctx, n: int) -> Batch:
    """The same images saliency/occlusion show; the true label where known, else the predicted class."""
    idx = show_indices(ctx, n)
    x = ctx.to_device(ctx.images.batch(idx))
    with eval_mode(ctx.model), torch.inference_mode():
        p = torch.softmax(ctx.pixel_model(x).float(), 1).cpu().numpy()
    preds = p.argmax(1)
    tgt, known = target_classes(ctx, idx, preds)
    return Batch(idx, x, tgt, known, preds, p[np.arange(len(idx)), tgt])


def input_item(ctx, b: Batch, k: int) -> GridItem:
    """The input image with its class, probability and (if wrong) the prediction."""
    i, t = b.idx[k], int(b.targets[k])
    wrong = int(b.preds[k]) != t
    sub = f"{ctx.class_name(t)} ({'true label' if b.from_label[k] else 'predicted'}), p={b.probs[k]:.2f}"
    if wrong:
        sub += f"; predicted {ctx.class_name(int(b.preds[k]))}"
    return GridItem(ImageData(ctx.images.display(i)), label=ctx.images.name(i), sublabel=sub,
                    alt=f"input {ctx.images.name(i)}", tone=("bad" if wrong and b.from_label[k] else ""))


def heat_item(ctx, image: np.ndarray, m: np.ndarray, label: str, sublabel: str = "", over: bool = True,
              pct: float = 99.5) -> GridItem:
    """A non-negative map, over the image (colour) or on its own (grey, white = its ``pct`` percentile)."""
    if over:
        hi = float(np.percentile(m, pct)) or float(m.max()) or None
        pic = overlay(image, m, alpha=0.5, cmap="jet", lo=0.0, hi=hi)
    else:
        pic = saliency_to_uint8(m, pct)
    return GridItem(ImageData(pic), label=label, sublabel=sublabel, alt=f"{label} {sublabel}".strip())


def cell_width(ctx) -> int:
    return min(224, ctx.pre.size * 2 if ctx.pre.size < 112 else ctx.pre.size)


def peak_area(m: np.ndarray) -> float:
    """Fraction of the map at or above half its maximum (0 for an all-zero map): how focused it is."""
    mx = float(m.max())
    return float((m >= 0.5 * mx).mean()) if mx > 0 else 0.0
