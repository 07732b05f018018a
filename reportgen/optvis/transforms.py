"""Random, differentiable transforms applied to the image before the model sees it (robustness priors).

A transform is ``t(x, generator) -> x`` on a B x C x H x W batch; randomness comes only from the
CPU ``torch.Generator`` passed in, so a run is reproducible under a seed. Because the transform
sits between the parameters and the model, the gradient flows back through it: jittering the model
input is the same as the roll / step / unroll of Yosinski et al. and DeepDream.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _randint(lo: int, hi: int, g: torch.Generator) -> int:
    """Uniform integer in [lo, hi] (inclusive)."""
    return int(torch.randint(lo, hi + 1, (1,), generator=g).item())


def _choice(values: Sequence, g: torch.Generator):
    return values[_randint(0, len(values) - 1, g)]


def jitter(d: int) -> Transform:
    """Roll the image by a random (dy, dx) in [-d, d]^2 pixels (wraps around, like DeepDream's roll)."""

    def t(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if d <= 0:
            return x
        dy, dx = _randint(-d, d, g), _randint(-d, d, g)
        return torch.roll(x, shifts=(dy, dx), dims=(2, 3))

    t.__name__ = f"jitter({d})"
    return t


def pad(p: int, mode: str = "reflect", value: float = 0.5) -> Transform:
    """Pad every side by ``p`` pixels (``reflect``, ``replicate`` or ``constant`` at ``value``)."""

    def t(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if p <= 0:
            return x
        if mode == "constant":
            return F.pad(x, (p, p, p, p), mode="constant", value=value)
        return F.pad(x, (p, p, p, p), mode=mode)

    t.__name__ = f"pad({p})"
    return t


def random_scale(scales: Sequence[float]) -> Transform:
    """Resize by a factor drawn from ``scales`` (bilinear)."""

    def t(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        s = float(_choice(list(scales), g))
        if abs(s - 1) < 1e-6:
            return x
        h, w = x.shape[2:]
        return F.interpolate(x, size=(max(1, round(h * s)), max(1, round(w * s))), mode="bilinear",
                             align_corners=False)

    t.__name__ = "random_scale"
    return t


def random_rotate(degrees: Sequence[float]) -> Transform:
    """Rotate about the centre by an angle (degrees) drawn from ``degrees`` (bilinear, border padding)."""

    def t(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        a = math.radians(float(_choice(list(degrees), g)))
        if abs(a) < 1e-9:
            return x
        c, s = math.cos(a), math.sin(a)
        theta = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=x.dtype, device=x.device)
        grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    t.__name__ = "random_rotate"
    return t


def compose(transforms: Sequence[Transform]) -> Transform:
    """Apply ``transforms`` in order."""
    ts = list(transforms)

    def t(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        for f in ts:
            x = f(x, g)
        return x

    t.__name__ = "compose(" + ", ".join(getattr(f, "__name__", "?") for f in ts) + ")"
    return t


def standard_transforms(size: int) -> list[Transform]:
    """lucent's default robustness set, scaled to the image size: pad, jitter, scale, rotate, jitter."""
    j = max(1, size // 28)
    return [pad(max(1, size // 18)), jitter(j), random_scale([1 + (i - 5) / 50.0 for i in range(11)]),
            random_rotate(list(range(-10, 11)) + 5 * [0]), jitter(max(1, j // 2))]


# ----- pixel-domain filters used by regularisers -------------------------------------------------
def gaussian_kernel1d(sigma: float, dtype=torch.float32, device="cpu") -> torch.Tensor:
    r = max(1, int(math.ceil(3 * sigma)))
    xs = torch.arange(-r, r + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (xs / max(sigma, 1e-6)) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a B x C x H x W batch (reflect padding)."""
    if sigma <= 0:
        return x
    k = gaussian_kernel1d(sigma, x.dtype, x.device)
    r = k.numel() // 2
    c = x.shape[1]
    r_eff = min(r, x.shape[2] - 1, x.shape[3] - 1)
    if r_eff < r:  # tiny images: shrink the kernel so reflect padding is valid
        k = k[r - r_eff: r + r_eff + 1]
        k = k / k.sum()
        r = r_eff
    if r == 0:
        return x
    y = F.pad(x, (r, r, 0, 0), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.pad(y, (0, 0, r, r), mode="reflect")
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
