"""Preprocessing: how a PIL image becomes the model's input tensor.

reportgen works in *pixel space*: tensors are RGB in [0, 1] after resize + centre crop, and
normalisation ``(x - mean) / std`` is the first layer of :class:`PixelModel`. Gradients,
perturbation sizes and optimised images are therefore all in pixel units, whatever the model's
normalisation. Nothing here is chosen at import time: each run carries its own Preprocessing.

Greyscale models (``channels=1``): images are converted to grey (kept as three equal RGB channels
in pixel space, so every technique draws them as usual) and :class:`Normalize` averages the three
channels into the one the model takes. Model outputs are unpacked here, in one place
(:func:`unpack_logits`): a ``(logits, aux)`` tuple or a ``{"logits": ...}`` dict gives its logits.

Validation (:func:`validated`) names the field, never a command-line flag: callers add their own.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal, Mapping

import numpy as np
import torch
import torch.fx
from PIL import Image
from torch import nn

from .errors import ConfigError, ModelError


Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"]
_RESAMPLE = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
             "bicubic": Image.Resampling.BICUBIC,
             "lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX, "hamming": Image.Resampling.HAMMING}


@dataclass(frozen=True)
class Preprocessing:
    resize: int | None = 256  # short side before the crop (None: no resize)
    input_size: int | None = 224  # centre crop (None: no crop; the resized image is used whole)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    source: str = "defaults (ImageNet)"
    channels: int = 3  # what the model takes: 3 (RGB) or 1 (grey; images converted)
    interpolation: Interpolation = "bilinear"  # resampling filter of the resize (timm / HF configs: often bicubic)

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.channels == 3:  # RGB: keep cache keys and report.json as they were before greyscale support
            d.pop("channels")
        if self.interpolation == "bilinear":  # likewise before the interpolation field
            d.pop("interpolation")
        return d

    def describe(self) -> str:
        parts = []
        if self.resize:
            parts.append(f"resize short side to {self.resize}"
                         + (f" ({self.interpolation})" if self.interpolation != "bilinear" else ""))
        if self.input_size:
            parts.append(f"centre-crop {self.input_size}x{self.input_size}")
        parts.append("RGB in [0, 1]" if self.channels == 3 else "greyscale in [0, 1] (1 channel)")
        mean, std = (self.mean, self.std) if self.channels == 3 else ((sum(self.mean) / 3,), (sum(self.std) / 3,))
        parts.append("normalise mean=({}) std=({})".format(
            ", ".join(f"{m:.4g}" for m in mean), ", ".join(f"{s:.4g}" for s in std)))
        return ", ".join(parts)

    @property
    def size(self) -> int:
        """Side of the square model input."""
        return int(self.input_size or self.resize or 224)

    def pil_to_array(self, img: Image.Image) -> np.ndarray:
        """Resize + centre-crop an RGB PIL image; returns uint8 HxWx3 (what the model sees)."""
        img = img.convert("L").convert("RGB") if self.channels == 1 else img.convert("RGB")
        if self.resize:
            w, h = img.size
            s = self.resize / min(w, h)
            nw, nh = max(1, round(w * s)), max(1, round(h * s))
            if (nw, nh) != (w, h):
                resample = _RESAMPLE.get(self.interpolation, Image.Resampling.BILINEAR)
                img = img.resize((nw, nh), resample, reducing_gap=3.0)
        if self.input_size:
            c = self.input_size
            w, h = img.size
            if w < c or h < c:  # too small to crop: scale up so the crop fits
                s = c / min(w, h)
                img = img.resize((max(c, round(w * s)), max(c, round(h * s))), Image.Resampling.BILINEAR)
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
        return Normalize(self.mean, self.std, channels=self.channels)


class Normalize(nn.Module):
    """``(x - mean) / std`` as a module (so it can sit in front of the user's model).

    With ``channels=1`` the RGB input is first averaged to grey, ``mean(x_r, x_g, x_b)``, and the
    mean / std triples to their average.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean, std, channels: int = 3):
        super().__init__()
        self.grey = channels == 1
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        if self.grey:
            mean_t, std_t = mean_t.mean(1, keepdim=True), std_t.mean(1, keepdim=True)
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grey and x.shape[1] != 1:
            x = x.mean(dim=1, keepdim=True)
        return (x - self.mean) / self.std


def _tensor(v: Any) -> bool:
    """A tensor, or a torch.fx Proxy standing for one while the model is traced (so a PixelModel traces through:
    exact incremental occlusion and BatchNorm folding work on the graph)."""
    return isinstance(v, (torch.Tensor, torch.fx.Proxy))


def unpack_logits(out: Any) -> tuple[torch.Tensor, str]:
    """The logits in a model's output, and how they were found ('' for a plain tensor).

    A tensor is the logits; a tuple / list gives its first element (``(logits, aux)``, Inception's
    ``InceptionOutputs``); a dict (or an object with ``.logits``, e.g. a ``ModelOutput``) gives its
    ``logits`` entry, or its only tensor. Raises :class:`ModelError` when no logits can be found.
    """
    if _tensor(out):
        return out, ""
    if isinstance(out, (tuple, list)):
        if out and _tensor(out[0]):
            return out[0], (f"the model returns a {type(out).__name__} of {len(out)}; its first element is used as "
                            "the logits")
        raise ModelError(f"the model returns a {type(out).__name__} whose first element is not a tensor of logits")
    if not isinstance(out, Mapping) and _tensor(getattr(out, "logits", None)):
        return out.logits, f"the model returns a {type(out).__name__}; its .logits are used"
    if isinstance(out, Mapping):
        if _tensor(out.get("logits")):
            return out["logits"], "the model returns a dict; its 'logits' entry is used"
        tensors = [k for k, v in out.items() if _tensor(v)]
        if len(tensors) == 1:
            return out[tensors[0]], f"the model returns a dict; its only tensor {tensors[0]!r} is used as the logits"
        raise ModelError(
            f"the model returns a dict (keys {sorted(map(str, out))[:5]}) without a 'logits' entry: reportgen needs "
            "an image classifier whose forward returns (batch, num_classes) logits"
        )
    raise ModelError(f"the model returns a {type(out).__name__}, not a tensor of class scores")


class PixelModel(nn.Module):
    """The user's model behind its normalisation: takes RGB in [0, 1], returns logits.

    The user's model object is kept as ``self.model``, so hooks on its submodules (found by
    their dotted names in the user's model) still fire through this wrapper.
    """

    def __init__(self, model: nn.Module, pre: Preprocessing):
        super().__init__()
        self.normalize = pre.normalizer()
        self.model = model

    def raw(self, x: torch.Tensor) -> Any:
        """The user's model output as it returns it (tensor, tuple or dict)."""
        return self.model(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unpack_logits(self.raw(x))[0]


# ----------------------------------------------------------------------------------------------
# validation (names the field; callers name their own flags)


def positive_int(v: Any, what: str) -> int:
    if isinstance(v, bool):
        raise ConfigError(f"{what} must be a positive integer, not {v!r}")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a positive integer, not {v!r}") from None
    if not f.is_integer() or f <= 0:
        raise ConfigError(f"{what} must be a positive integer, not {v!r}")
    return int(f)


def triple(v: Any, what: str, positive: bool = False) -> tuple[float, float, float]:
    """Three finite numbers (one per RGB channel) from a sequence or a "a,b,c" string."""
    if isinstance(v, str):
        v = [x for x in re.split(r"[,\s]+", v.strip()) if x]
    try:
        vals = tuple(float(x) for x in v)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be 3 numbers (one per RGB channel), not {v!r}") from None
    if len(vals) != 3:
        raise ConfigError(f"{what} must be 3 numbers (one per RGB channel), got {len(vals)}: {v!r}")
    if not all(math.isfinite(x) for x in vals):
        raise ConfigError(f"{what} values must be finite numbers, got {v!r}")
    if positive and any(x <= 0 for x in vals):
        raise ConfigError(f"{what} values must be > 0, got {v!r}")
    return vals  # type: ignore[return-value]


def validated(pre: Preprocessing) -> Preprocessing:
    """``pre`` with every field checked (positive sizes, 3 finite means, 3 positive stds, 1 or 3 channels)."""
    resize = None if pre.resize is None else positive_int(pre.resize, "resize")
    size = None if pre.input_size is None else positive_int(pre.input_size, "input size")
    if pre.channels not in (1, 3):
        raise ConfigError(f"channels must be 1 (greyscale) or 3 (RGB), not {pre.channels!r}")
    interp = pre.interpolation if pre.interpolation in _RESAMPLE else "bilinear"
    return Preprocessing(resize=resize, input_size=size, mean=triple(pre.mean, "mean"),
                         std=triple(pre.std, "std", positive=True), source=pre.source, channels=int(pre.channels),
                         interpolation=interp)
