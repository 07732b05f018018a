"""A page per unit of an inspected layer (OpenAI Microscope's linkable neurons), from the shared pass's
:class:`reportgen.features.records.LayerStats`: machinery for the patches section, not a technique."""

from __future__ import annotations

import numpy as np

from ..inspection.receptive import crop_field
from ..report import ImageData, Unit, UnitSet
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..context import Ctx

MAX_UNITS = 1024  # channels beyond this get no page (a wide layer would add thousands of small pictures)
PAD_GREY = (128, 128, 128)


def unit_set(ctx: Ctx, layer: str, stats, rf, k: int, preds: np.ndarray) -> UnitSet:
    """Every channel of ``layer`` (at most :data:`MAX_UNITS`): mean, std and peak response over the set, its top
    ``k`` images with their values and classes (true label, else the prediction), and each top patch."""
    labels = ctx.images.labels
    cls = np.where(labels >= 0, labels, preds)
    units = []
    for ch in range(min(stats.channels, MAX_UNITS)):
        ids, vals, names, patches = [], [], [], []
        for j in range(min(k, stats.top_image.shape[1])):
            i = int(stats.top_image[ch, j])
            if i < 0:
                break
            patch = crop_field(ctx.images.array(i), rf, int(stats.top_y[ch, j]), int(stats.top_x[ch, j]), PAD_GREY)
            ids.append(ctx.images.image_id(i))
            vals.append(float(stats.top_values[ch, j]))
            names.append(ctx.class_name(int(cls[i])))
            patches.append(ImageData(patch, pixelated=max(patch.shape[:2]) < 48, image_id=ids[-1]))
        units.append(Unit(channel=ch, mean=float(stats.mean[ch]), std=float(stats.std[ch]),
                          peak=float(stats.peak[ch]), top_ids=ids, top_values=vals, top_classes=names,
                          patches=patches))
    more = f" (the first {MAX_UNITS} of {stats.channels})" if stats.channels > MAX_UNITS else ""
    return UnitSet(layer=layer, units=units, caption=(
        f"A page for each of the {len(units)} channels of {layer}{more}: its top patches over the whole set, its "
        "activation statistics and the classes its top images come from."))
