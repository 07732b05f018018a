"""Preprocessing: how a PIL image becomes the model's input tensor.

reportgen works in *pixel space*: tensors are RGB in [0, 1] after resize + centre crop, and
normalisation ``(x - mean) / std`` is the first layer of :class:`PixelModel`. Gradients,
perturbation sizes and optimised images are therefore all in pixel units, whatever the model's
normalisation. Nothing here is chosen at import time: each run carries its own Preprocessing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn


@dataclass(frozen=True)
class Preprocessing:
    resize: int | None = 256  # short side before the crop (None: no resize)
    input_size: int | None = 224  # centre crop (None: no crop; the resized image is used whole)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    source: str = "defaults (ImageNet)"

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        parts = []
        if self.resize:
            parts.append(f"resize short side to {self.resize}")
        if self.input_size:
            parts.append(f"centre-crop {self.input_size}x{self.input_size}")
        parts.append("RGB in [0, 1]")
        parts.append("normalise mean=({}) std=({})".format(
            ", ".join(f"{m:.4g}" for m in self.mean), ", ".join(f"{s:.4g}" for s in self.std)))
        return ", ".join(parts)

    @property
    def size(self) -> int:
        """Side of the square model input."""
        return int(self.input_size or self.resize or 224)

    def pil_to_array(self, img: Image.Image) -> np.ndarray:
        """Resize + centre-crop an RGB PIL image; returns uint8 HxWx3 (what the model sees)."""
        img = img.convert("RGB")
        if self.resize:
            w, h = img.size
            s = self.resize / min(w, h)
            nw, nh = max(1, round(w * s)), max(1, round(h * s))
            if (nw, nh) != (w, h):
                img = img.resize((nw, nh), Image.BILINEAR, reducing_gap=3.0)
        if self.input_size:
            c = self.input_size
            w, h = img.size
            if w < c or h < c:  # too small to crop: scale up so the crop fits
                s = c / min(w, h)
                img = img.resize((max(c, round(w * s)), max(c, round(h * s))), Image.BILINEAR)
                w, h = img.size
            left, top = (w - c) // 2, (h - c) // 2
            img = img.crop((left, top, left + c, top + c))
        elif not self.resize:
            pass
        arr = np.asarray(img, dtype=np.uint8)
        if self.input_size is None:
            # a square input keeps batching simple: pad nothing, centre-crop to the short side
            h, w = arr.shape[:2]
            s = min(h, w)
            arr = arr[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        return arr

    @staticmethod
    def array_to_tensor(arr: np.ndarray) -> torch.Tensor:
        """uint8 HxWx3 -> float CxHxW in [0, 1]."""
        return torch.from_numpy(np.array(arr, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255.0)

    def normalizer(self) -> "Normalize":
        return Normalize(self.mean, self.std)


class Normalize(nn.Module):
    """``(x - mean) / std`` as a module (so it can sit in front of the user's model)."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class PixelModel(nn.Module):
    """The user's model behind its normalisation: takes RGB in [0, 1], returns logits.

    The user's model object is kept as ``self.model``, so hooks on its submodules (found by
    their dotted names in the user's model) still fire through this wrapper.
    """

    def __init__(self, model: nn.Module, pre: Preprocessing):
        super().__init__()
        self.normalize = pre.normalizer()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(x))
