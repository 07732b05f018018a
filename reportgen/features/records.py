"""The records one pass over the image set produces (plain numpy, picklable, cached).

:mod:`reportgen.features.scan` fills them, :mod:`reportgen.features.compute` caches and serves them; kept apart from
both so neither imports the other's internals (no import cycle).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..context import Ctx

PIXEL_SIZE = 32  # side of the pixel-space vectors used for pixel nearest neighbours


@dataclass
class LayerStats:
    """Per-channel statistics of one layer over the whole image set (plain numpy, picklable).

    ``top_*`` are C x K: for each channel the K images with the highest spatial maximum of that
    channel, best first; ``top_y``/``top_x`` locate that maximum in the layer's output grid.
    Entries with ``top_image == -1`` are unused (fewer than K images).
    """

    name: str
    shape: tuple[int, ...]  # output shape without the batch dimension (C, H, W), (C,) or (C, L)
    top_values: np.ndarray  # C x K float32
    top_image: np.ndarray  # C x K int64
    top_y: np.ndarray  # C x K int32
    top_x: np.ndarray  # C x K int32
    mean: np.ndarray  # C float32: mean response over images and positions
    std: np.ndarray  # C float32: standard deviation over images and positions
    # the same top-k restricted to "interior" units, whose whole receptive field lies inside the
    # image (no zero padding): ``interior_region`` = (y0, x0, y1, x1) of those units in the grid
    interior: "LayerStats | None" = None
    interior_region: tuple[int, int, int, int] | None = None

    @property
    def channels(self) -> int:
        return int(self.shape[0])

    @property
    def peak(self) -> np.ndarray:
        """C: the highest response of each channel over the whole set."""
        return self.top_values[:, 0]

    @property
    def spatial(self) -> tuple[int, int]:
        if len(self.shape) >= 3:
            return int(self.shape[-2]), int(self.shape[-1])
        if len(self.shape) == 2:
            return 1, int(self.shape[1])
        return 1, 1


@dataclass
class FeatureStore:
    logits: np.ndarray  # N x C float32
    penultimate: np.ndarray  # N x D float16
    penultimate_source: str
    layers: tuple[str, ...] = ()
    layer_stats: dict = field(default_factory=dict)  # name -> LayerStats
    pixels: np.ndarray | None = None  # N x (3*PIXEL_SIZE*PIXEL_SIZE) float16 in [0, 1]
    pixel_size: int = PIXEL_SIZE
    mean_rgb: np.ndarray | None = None  # (3,) float32 mean colour of the set in [0, 1]
    passes: int = 0  # forward passes this store cost in this process (0: all from the cache)

    @property
    def probs(self) -> np.ndarray:
        z = self.logits - self.logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    @property
    def preds(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    def stats(self, layer: str) -> LayerStats:
        try:
            return self.layer_stats[layer]
        except KeyError:
            raise KeyError(f"layer {layer!r} was not recorded; ask ctx.features(layers=[{layer!r}])") from None


@dataclass
class BaseRecord:
    """The layer-independent part of a pass (cached under its own key)."""

    logits: np.ndarray
    penultimate: np.ndarray
    penultimate_source: str
    pixels: np.ndarray
    mean_rgb: np.ndarray


def field_or_none(ctx: Ctx, name: str):
    """The layer's receptive field (for the interior top-k), or None if it cannot be computed."""
    try:
        from ..inspection.receptive import field_for

        return field_for(ctx, name)
    except Exception:  # noqa: BLE001 - exotic models: fall back to all units
        return None
