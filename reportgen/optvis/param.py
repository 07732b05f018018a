"""Image parameterisations: what the optimiser actually changes.

An :class:`ImageParam` owns leaf tensors (``parameters()``) and maps them to an image batch
``B x 3 x H x W`` in [0, 1] (``image()``). Pixel-domain regularisers (blur, clipping) read the
image and write it back with ``set_image``; ``project()`` runs after every optimiser step to keep
the image valid. :class:`PixelImage` is the plain pixel parameterisation (clamped to [0, 1] after
each step, or squashed through a sigmoid); an FFT or colour-decorrelated parameterisation only needs
these four methods.
"""

from __future__ import annotations

from typing import Sequence

import torch


class ImageParam:
    """Interface of an image parameterisation."""

    def parameters(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def image(self) -> torch.Tensor:
        """The current image batch, B x 3 x H x W in [0, 1] (differentiable w.r.t. ``parameters()``)."""
        raise NotImplementedError

    @torch.no_grad()
    def set_image(self, img: torch.Tensor) -> None:
        """Replace the image (pixel-domain regularisers)."""
        raise NotImplementedError

    @torch.no_grad()
    def project(self) -> None:
        """Called after each optimiser step: keep the parameters valid."""

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.image().shape)


class PixelImage(ImageParam):
    """Pixels as parameters. ``mode="clamp"``: the image *is* the tensor, clamped to [0, 1] after each step;
    ``mode="sigmoid"``: ``image = sigmoid(raw)``, always in (0, 1)."""

    def __init__(self, init: torch.Tensor, mode: str = "clamp"):
        if init.dim() != 4:
            raise ValueError(f"PixelImage wants a B x C x H x W tensor, got shape {tuple(init.shape)}")
        if mode not in ("clamp", "sigmoid"):
            raise ValueError(f"unknown mode {mode!r} (clamp, sigmoid)")
        self.mode = mode
        x = init.detach().float().clamp(0, 1)
        if mode == "sigmoid":
            x = torch.logit(x.clamp(1e-4, 1 - 1e-4))
        self.raw = x.clone().requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.raw]

    def image(self) -> torch.Tensor:
        return torch.sigmoid(self.raw) if self.mode == "sigmoid" else self.raw

    @torch.no_grad()
    def set_image(self, img: torch.Tensor) -> None:
        img = img.detach().to(self.raw).clamp(0, 1)
        self.raw.copy_(torch.logit(img.clamp(1e-4, 1 - 1e-4)) if self.mode == "sigmoid" else img)

    @torch.no_grad()
    def project(self) -> None:
        if self.mode == "clamp":
            self.raw.clamp_(0, 1)


def pixel_image(
    batch: int = 1,
    size: int | tuple[int, int] = 224,
    init: str | torch.Tensor = "grey",
    *,
    center: float | Sequence[float] = 0.5,
    sd: float = 0.01,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    mode: str = "clamp",
) -> PixelImage:
    """A pixel parameterisation: ``init`` is a tensor, ``"grey"`` (``center``), ``"zeros"`` (black),
    ``"noise"`` (``center`` + Gaussian noise of std ``sd``) or ``"uniform"`` (U[0, 1])."""
    if isinstance(init, torch.Tensor):
        x = init if init.dim() == 4 else init[None]
        return PixelImage(x.to(device), mode)
    h, w = (size, size) if isinstance(size, int) else size
    shape = (batch, 3, h, w)
    cen = torch.as_tensor(center, dtype=torch.float32).reshape(1, -1, 1, 1)
    if init == "zeros":
        x = torch.zeros(shape)
    elif init == "grey":
        x = cen.expand(shape).clone()
    elif init == "noise":
        x = cen + sd * torch.randn(shape, generator=generator)
    elif init == "uniform":
        x = torch.rand(shape, generator=generator)
    else:
        raise ValueError(f"unknown init {init!r} (grey, zeros, noise, uniform or a tensor)")
    return PixelImage(x.to(device), mode)
