"""Attribution maps kept small, so that a later run can compare its explanations with this one's.

A :class:`MapSet` holds, for each attribution method and each explained image (keyed by the SHA-256 of the image
file's bytes), the map shrunk to ``SIDE x SIDE`` by area averaging and min-max normalised to [0, 1] (a constant
map becomes 0), as float16, with the explained (target) class and the prediction. The faithfulness section makes
one from the maps it scores (``Section.arrays``; publish/arrays.py writes them beside report.json).

Size: 32 x 32 float16 = 2 KiB per map raw; maps barely compress (measured on the demo: 4 methods x 2 images give a
13.7 kB arrays.npz, 4 methods x 24 images 142 kB: 1.5 to 1.7 kB a map). So ``methods x images x ~1.6 kB``: the demo's
standard report (8 methods x 4 images) about 50 kB; 1,000 images with 8 methods about 13 MB
(``faithfulness.max_images`` decides how many images are explained: 4 by default, 8 in ``full``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PIL import Image

SIDE = 32
SOURCE = "faithfulness"  # the section whose arrays hold the run's maps
KEYS = ("maps", "methods", "sha256", "names", "targets", "preds")


@dataclass
class MapSet:
    """``maps[m, i]``: method ``methods[m]``'s map of image ``sha256[i]`` (``names[i]`` as that run saw it)."""

    methods: list[str]
    sha256: list[str]
    names: list[str]
    targets: np.ndarray  # N int: the class explained
    preds: np.ndarray  # N int: the model's prediction
    maps: np.ndarray  # M x N x SIDE x SIDE float16 in [0, 1]

    def __post_init__(self) -> None:
        self.targets = np.asarray(self.targets, dtype=np.int64).reshape(-1)
        self.preds = np.asarray(self.preds, dtype=np.int64).reshape(-1)
        n = len(self.sha256)
        shape = np.shape(self.maps)
        if len(shape) != 4 or shape[:2] != (len(self.methods), n) or len(self.names) != n \
                or len(self.targets) != n or len(self.preds) != n:
            raise ValueError(f"inconsistent map set: {len(self.methods)} methods, {n} images, maps {shape}")

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The ``Section.arrays`` form (numbers and fixed-width strings only)."""
        return {"maps": np.asarray(self.maps, dtype=np.float16), "methods": np.asarray(self.methods, dtype=str),
                "sha256": np.asarray(self.sha256, dtype=str), "names": np.asarray(self.names, dtype=str),
                "targets": self.targets.astype(np.int32), "preds": self.preds.astype(np.int32)}

    @classmethod
    def from_arrays(cls, d: Mapping[str, np.ndarray]) -> "MapSet":
        missing = [k for k in KEYS if k not in d]
        if missing:
            raise ValueError(f"the maps lack {', '.join(missing)}")
        return cls(methods=[str(m) for m in d["methods"]], sha256=[str(s) for s in d["sha256"]],
                   names=[str(s) for s in d["names"]], targets=d["targets"], preds=d["preds"],
                   maps=np.asarray(d["maps"], dtype=np.float16))


def shrink(m: np.ndarray, side: int = SIDE) -> np.ndarray:
    """One H x W map averaged over areas to ``side x side`` and min-max scaled to [0, 1] (constant: zeros)."""
    m = np.nan_to_num(np.asarray(m, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if m.shape != (side, side):
        m = np.asarray(Image.fromarray(m, mode="F").resize((side, side), Image.Resampling.BOX), dtype=np.float32)
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def pack_maps(maps: Mapping[str, np.ndarray], sha256: Sequence[str], names: Sequence[str], targets, preds,
              side: int = SIDE) -> MapSet:
    """A :class:`MapSet` from ``{method: N x H x W maps}`` (any leading singleton channel is dropped)."""
    methods = list(maps)
    n = len(sha256)
    out = np.zeros((len(methods), n, side, side), dtype=np.float16)
    for k, m in enumerate(methods):
        a = np.asarray(maps[m], dtype=np.float32)
        a = a.reshape(n, *a.shape[-2:])
        for i in range(n):
            out[k, i] = shrink(a[i], side)
    return MapSet(methods, list(sha256), list(names), np.asarray(targets), np.asarray(preds), out)


def from_section_arrays(arrays: Mapping[str, np.ndarray] | None) -> MapSet | None:
    """The map set a section kept (None when it kept none)."""
    if not arrays or "maps" not in arrays:
        return None
    return MapSet.from_arrays(arrays)


def load_maps(report: str | Path) -> MapSet | None:
    """The map set kept by the report at ``report`` (folder, report.json or single .html file); None if none."""
    from ..publish.arrays import read_arrays

    return from_section_arrays(read_arrays(report).get(SOURCE))


__all__ = ["SIDE", "SOURCE", "MapSet", "shrink", "pack_maps", "from_section_arrays", "load_maps"]
