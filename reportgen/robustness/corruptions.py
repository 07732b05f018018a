"""Common corruptions (Hendrycks & Dietterich, ICLR 2019) as batched tensor functions, with the paper's parameters.

Every function takes ``x``: float ``N x C x H x W`` in [0, 1] (RGB at the model's input size, before normalisation)
and returns the corrupted batch in [0, 1] with the same shape, dtype and device. The identity parameter (noise std 0,
sigma 0, JPEG quality None, brightness 0, contrast 1, pixelation 1) returns ``x`` itself.

* Gaussian noise ``clip(x + std * n)``, ``n ~ N(0, 1)`` per pixel and channel (drawn by the caller or from a
  seeded generator).
* Gaussian blur: separable kernel ``exp(-t^2 / 2 sigma^2)`` truncated at ``4 sigma``, edges replicated.
* JPEG: encode at ``quality`` and decode (torchvision's batched codec or PIL).
* Brightness: HSV value ``V' = clip(V + delta)`` with hue and saturation kept, i.e. ``x * V' / V`` (grey ``V'``
  where ``V = 0``), exactly the paper's rgb -> hsv -> rgb round trip.
* Contrast: ``clip((x - m) * c + m)`` with ``m`` each channel's mean over the image.
* Pixelation: box average down to ``floor(side * c)`` pixels, nearest back up (PIL's BOX resize up to bin edges).

Parameters: the paper's five severity levels, ImageNet-C's (made at 224 px) for inputs of at least
:data:`SMALL_SIDE` px and CIFAR-10-C's (made at 32 px, the paper's small-image set) below; the only parameter that
depends on the image scale, the blur's sigma in pixels, is scaled from the table's side to the input side.
"""

from __future__ import annotations

import io
import math
import sys
import warnings
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

Corruption = Literal["gaussian_noise", "gaussian_blur", "jpeg", "brightness", "contrast", "pixelate"]
CORRUPTIONS: tuple[str, ...] = get_args(Corruption)
LABELS = {"gaussian_noise": "Gaussian noise", "gaussian_blur": "Gaussian blur", "jpeg": "JPEG compression",
          "brightness": "brightness", "contrast": "contrast", "pixelate": "pixelation"}

#: the paper's released parameters per severity level 1..5 (hendrycks/robustness, make_imagenet_c.py and
#: make_cifar_c.py): noise std, blur sigma (px at the table's side), JPEG quality, brightness delta, contrast
#: factor, pixelation factor
TABLES: dict[str, dict[str, tuple[float, ...]]] = {
    "imagenet_c": {"gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38), "gaussian_blur": (1, 2, 3, 4, 6),
                   "jpeg": (25, 18, 15, 10, 7), "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
                   "contrast": (0.4, 0.3, 0.2, 0.1, 0.05), "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25)},
    "cifar_10_c": {"gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10), "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
                   "jpeg": (80, 65, 58, 50, 40), "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
                   "contrast": (0.75, 0.5, 0.4, 0.3, 0.15), "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65)},
}
TABLE_SIDE = {"imagenet_c": 224, "cifar_10_c": 32}
TABLE_NAMES = {"imagenet_c": "ImageNet-C (224 px)", "cifar_10_c": "CIFAR-10-C (32 px)"}
#: inputs smaller than this (px) use the CIFAR-10-C table
SMALL_SIDE = 64
IDENTITY: dict[str, float | None] = {"gaussian_noise": 0.0, "gaussian_blur": 0.0, "jpeg": None, "brightness": 0.0,
                                     "contrast": 1.0, "pixelate": 1.0}


def choose_table(side: int, table: str = "auto") -> str:
    """``imagenet_c`` or ``cifar_10_c``: the one named, else by the input side (under :data:`SMALL_SIDE`: CIFAR)."""
    if table in TABLES:
        return table
    return "cifar_10_c" if side < SMALL_SIDE else "imagenet_c"


@dataclass(frozen=True)
class Level:
    """One corruption at one severity: its parameter at the input side, and that parameter in words."""

    corruption: str
    severity: int
    parameter: float | None
    text: str


def level(corruption: str, severity: int, side: int, table: str) -> Level:
    """The parameter of ``corruption`` at paper severity ``severity`` (0: the identity) for ``side`` px inputs."""
    if corruption not in TABLES[table]:
        raise ValueError(f"unknown corruption {corruption!r} (known: {', '.join(CORRUPTIONS)})")
    if not 0 <= severity <= 5:
        raise ValueError(f"severity must be 0..5, got {severity}")
    value = IDENTITY[corruption] if severity == 0 else float(TABLES[table][corruption][severity - 1])
    if corruption == "gaussian_blur" and value:
        value = value * side / TABLE_SIDE[table]
    return Level(corruption, severity, value, describe(corruption, value, side))


def describe(corruption: str, value: float | None, side: int) -> str:
    """The parameter in words (``value`` None only for JPEG's identity)."""
    if corruption == "jpeg":
        return "no compression" if value is None else f"quality {int(value)}"
    value = float(value or 0.0)
    if corruption == "gaussian_noise":
        return f"std {value:g}"
    if corruption == "gaussian_blur":
        return f"sigma {value:.3g} px"
    if corruption == "brightness":
        return f"V {value:+g}"
    if corruption == "contrast":
        return f"x{value:g} about the mean"
    n = pixelated_side(side, value)
    return f"x{value:g} ({n} px)"


def gaussian_noise(x: torch.Tensor, std: float, noise: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """``clip(x + std * noise)``; ``noise`` (standard normal, x's shape) or drawn on the CPU from ``generator``."""
    if not std:
        return x
    if noise is None:
        noise = torch.randn(x.shape, generator=generator)
    return (x + std * noise.to(device=x.device, dtype=x.dtype)).clamp(0, 1)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """The normalised 1-D Gaussian of ``sigma`` px, truncated at ``ceil(4 sigma)`` px each side (scipy's default)."""
    r = max(1, int(math.ceil(4.0 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).float()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every channel, edges replicated (skimage's ``gaussian`` ``mode="nearest"``)."""
    if not sigma or sigma <= 0:
        return x
    k = gaussian_kernel(float(sigma)).to(device=x.device, dtype=x.dtype)
    r, c = (len(k) - 1) // 2, x.shape[1]
    y = F.pad(x, (r, r, 0, 0), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.pad(y, (0, 0, r, r), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return y.clamp(0, 1)


#: pixels (N x H x W) from which a JPEG batch is worth importing torchvision for its codec (the import costs seconds)
TORCHVISION_FROM = 2_000_000


def jpeg(x: torch.Tensor, quality: float | None) -> torch.Tensor:
    """Each image encoded as a JPEG of ``quality`` (1..100) and decoded; ``None``: unchanged.

    torchvision's batched codec (5x faster than PIL per image at 224 px, same bytes: both are libjpeg with 4:2:0
    chroma) when torchvision is already loaded or the batch is large enough to pay for loading it; else PIL."""
    if quality is None:
        return x
    q = int(min(100, max(1, round(float(quality)))))
    u8 = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    out = None
    if "torchvision" in sys.modules or u8.shape[0] * u8.shape[2] * u8.shape[3] >= TORCHVISION_FROM:
        out = _torchvision_jpeg(u8, q)
    if out is None:
        out = torch.from_numpy(np.stack([_pil_jpeg(a, q) for a in u8.permute(0, 2, 3, 1).numpy()]))
        out = out.permute(0, 3, 1, 2)
    return (out.to(device=x.device, dtype=x.dtype) / 255.0).contiguous()


def _torchvision_jpeg(u8: torch.Tensor, quality: int) -> torch.Tensor | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 points to torchcodec
            from torchvision.io import decode_jpeg, encode_jpeg

            return torch.stack(list(decode_jpeg(encode_jpeg(list(u8), quality=quality))))
    except Exception:  # noqa: BLE001 - no torchvision or no codec in it: PIL
        return None


def _pil_jpeg(a: np.ndarray, quality: int) -> np.ndarray:
    """One uint8 H x W x 3 image through a JPEG of ``quality`` in memory."""
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def brightness(x: torch.Tensor, delta: float) -> torch.Tensor:
    """HSV value plus ``delta`` (clipped to [0, 1]), hue and saturation kept."""
    if not delta:
        return x
    v = x.amax(dim=1, keepdim=True)
    v2 = (v + delta).clamp(0, 1)
    scaled = x * (v2 / v.clamp_min(1e-12))
    return torch.where(v > 0, scaled, v2.expand_as(x)).clamp(0, 1)


def contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Each channel's deviation from its image mean times ``factor`` (1: unchanged, 0: flat)."""
    if factor == 1:
        return x
    m = x.mean(dim=(2, 3), keepdim=True)
    return ((x - m) * factor + m).clamp(0, 1)


def pixelated_side(side: int, factor: float) -> int:
    return max(1, int(side * factor))


def pixelate(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Box average down to ``floor(side * factor)`` px, nearest neighbour back up (1: unchanged)."""
    if factor >= 1:
        return x
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(pixelated_side(h, factor), pixelated_side(w, factor)), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest-exact")


def corrupt(x: torch.Tensor, lv: Level, noise: torch.Tensor | None = None,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` under ``lv`` (a :class:`Level`); ``noise``/``generator`` feed the Gaussian noise."""
    c, p = lv.corruption, lv.parameter
    if c == "gaussian_noise":
        return gaussian_noise(x, float(p or 0.0), noise, generator)
    if c == "gaussian_blur":
        return gaussian_blur(x, float(p or 0.0))
    if c == "jpeg":
        return jpeg(x, p)
    if c == "brightness":
        return brightness(x, float(p or 0.0))
    if c == "contrast":
        return contrast(x, 1.0 if p is None else float(p))
    if c == "pixelate":
        return pixelate(x, 1.0 if p is None else float(p))
    raise ValueError(f"unknown corruption {c!r} (known: {', '.join(CORRUPTIONS)})")
