"""Shared by the set-level sections (mistakes, shortcuts, concepts): the map layer, the class of each image, the
classes with the most images, and attribution maps streamed over many images in batches. The methods that can draw
those maps are the list's (:func:`reportgen.registry.set_level_methods`: Grad-CAM and gradient x input, declared by
the gradcam and saliency techniques); a section's ``method`` option names one by its key. Not a technique."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import numpy as np
import torch

from ..device import graph_batch_size
from ..registry import AttributionMethod, ClassMaps, Choices, set_level_methods
from ._explain import cam_layer, cam_unsupported

if TYPE_CHECKING:
    from ..context import Ctx


def _keys() -> tuple[str, ...]:
    return tuple(set_level_methods())


#: a set-level section's ``method`` option: the key of a listed method with a set-level variant
SetLevelMethod = Annotated[str, Choices(_keys)]


def set_level_method(section: str, key: str) -> AttributionMethod:
    """The listed method whose set-level key is ``key`` (ValueError naming ``section``.method otherwise)."""
    methods = set_level_methods()
    if key not in methods:
        raise ValueError(f"{section}.method must be one of {', '.join(methods)}, got {key!r}")
    return methods[key]


def class_maps_of(key: str) -> ClassMaps:
    """The set-level variant of the method ``key`` names."""
    cm = set_level_method("method", key).set_level
    assert cm is not None
    return cm


def method_text(key: str, layer: str) -> str:
    """The method's name, with its layer where it reads one: ``Grad-CAM at features``."""
    return set_level_method("method", key).name + (f" at {layer}" if class_maps_of(key).layered else "")


def map_layer(ctx: Ctx, name: str | None) -> str:
    """``name`` validated, or Grad-CAM's layer (:func:`reportgen.techniques._explain.cam_layer`: the last block
    with a spatial output whose cells the class score's gradient reaches)."""
    if name:
        ctx.layer(name)
        return name
    return cam_layer(ctx, None)


def map_unsupported(section: str) -> Callable[..., str | None]:
    """The ``unsupported_if`` of a set-level section: why no map layer fits (:func:`map_layer`), or None."""
    return lambda ctx: cam_unsupported(ctx, ctx.config.options(section).layer)


def image_classes(ctx: Ctx) -> tuple[np.ndarray, bool]:
    """(class per image: the label where known, else the prediction; True when every image has a label)."""
    labels = ctx.images.labels
    preds = ctx.features().preds
    return np.where(labels >= 0, labels, preds).astype(np.int64), bool((labels >= 0).all())


def largest_classes(classes: np.ndarray, n: int, min_images: int) -> list[int]:
    """Up to ``n`` classes with at least ``min_images`` images, the most images first (ties: lower id)."""
    counts = np.bincount(classes) if classes.size else np.zeros(0, dtype=int)
    order = np.lexsort((np.arange(counts.size), -counts))
    return [int(c) for c in order[:n] if counts[c] >= min_images]


def class_maps(ctx: Ctx, layer_name: str, method: str, idx: list[int], target: int,
               reduce: Callable[[torch.Tensor], np.ndarray], batch: int = 16) -> np.ndarray:
    """``reduce(maps)`` of each batch of ``idx`` concatenated: maps for class ``target`` by the set-level variant of
    ``method`` (Grad-CAM at the layer's resolution, gradient x input at the input's, positive part), never more than
    one batch of maps held."""
    pm, layer = ctx.pixel_model, ctx.layer(layer_name)
    fn = class_maps_of(method).fn
    out = []
    step = graph_batch_size(ctx, cap=min(ctx.batch_size, batch))
    for s in range(0, len(idx), step):
        x = ctx.to_device(ctx.images.batch(idx[s:s + step]))
        m = fn(pm, layer, x, target)
        out.append(reduce(m))
    return np.concatenate(out) if out else np.zeros((0,))
