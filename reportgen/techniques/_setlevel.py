"""Shared by the set-level sections (mistakes, shortcuts, concepts): the map layer, the class of each image, the
classes with the most images, and attribution maps streamed over many images in batches. Not a technique."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from .. import attribution as A
from ..attribution import contrast as C
from ..device import graph_batch_size
from ._explain import cam_layer, cam_unsupported

MapMethod = Literal["gradcam", "gradient_x_input"]
METHOD_NAMES = {"gradcam": "Grad-CAM", "gradient_x_input": "gradient x input (positive part)"}


def map_layer(ctx, name: str | None) -> str:
    """``name`` validated, or Grad-CAM's layer (:func:`reportgen.techniques._explain.cam_layer`: the last block
    with a spatial output whose cells the class score's gradient reaches)."""
    if name:
        ctx.layer(name)
        return name
    return cam_layer(ctx, None)


def map_unsupported(section: str) -> Callable[..., str | None]:
    """The ``unsupported_if`` of a set-level section: why no map layer fits (:func:`map_layer`), or None."""
    return lambda ctx: cam_unsupported(ctx, ctx.config.options(section).layer)


def check_method(section: str, method: str) -> None:
    if method not in METHOD_NAMES:
        raise ValueError(f"{section}.method must be one of {', '.join(METHOD_NAMES)}, got {method!r}")


def image_classes(ctx) -> tuple[np.ndarray, bool]:
    """(class per image: the label where known, else the prediction; True when every image has a label)."""
    labels = ctx.images.labels
    preds = ctx.features().preds
    return np.where(labels >= 0, labels, preds).astype(np.int64), bool((labels >= 0).all())


def largest_classes(classes: np.ndarray, n: int, min_images: int) -> list[int]:
    """Up to ``n`` classes with at least ``min_images`` images, the most images first (ties: lower id)."""
    counts = np.bincount(classes) if classes.size else np.zeros(0, dtype=int)
    order = np.lexsort((np.arange(counts.size), -counts))
    return [int(c) for c in order[:n] if counts[c] >= min_images]


def class_maps(ctx, layer_name: str, method: str, idx: list[int], target: int,
               reduce: Callable[[torch.Tensor], np.ndarray], batch: int = 16) -> np.ndarray:
    """``reduce(maps)`` of each batch of ``idx`` concatenated: maps for class ``target`` (Grad-CAM at the layer's
    resolution, or gradient x input at the input's, positive part), never more than one batch of maps held."""
    pm, layer = ctx.pixel_model, ctx.layer(layer_name)
    out = []
    step = graph_batch_size(ctx, cap=min(ctx.batch_size, batch))
    for s in range(0, len(idx), step):
        x = ctx.to_device(ctx.images.batch(idx[s:s + step]))
        m = A.gradcam(pm, layer, x, target) if method == "gradcam" else C.gradient_x_input(pm, x, target).clamp_min(0)
        out.append(reduce(m))
    return np.concatenate(out) if out else np.zeros((0,))
