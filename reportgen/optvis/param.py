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


# ----- Fourier-space, colour-decorrelated parameterisation (Olah et al. 2017; lucid/lucent) --------------
# Square root of the colour covariance of ImageNet pixels (lucid's ``color_correlation_svd_sqrt``), columns
# normalised so the largest has norm 1: the optimiser works in decorrelated colour channels.
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()
_FFT_MAGIC = 4.0  # lucid's constant: keeps the initial image's contrast small


def _fft_scale(h: int, w: int, decay_power: float) -> torch.Tensor:
    """``1 / max(f, 1/max(h, w))^decay``: every frequency gets about the same energy per unit of parameter."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    freqs = torch.sqrt(fx * fx + fy * fy)
    return 1.0 / torch.clamp(freqs, min=1.0 / max(h, w)) ** decay_power


class FourierImage(ImageParam):
    """The image as a scaled spectrum in decorrelated colour space (Olah et al. 2017, "Feature Visualization"):
    ``image = sigmoid(C · irfft2(scale ⊙ spectrum) / 4)``, ``scale = 1 / f^decay`` (``C``: the square root of
    ImageNet's colour covariance). Gradient steps on the spectrum are steps on a whitened image: low
    frequencies move as easily as high ones, so the optimum is not high-frequency noise."""

    def __init__(self, batch: int, size: int | tuple[int, int], *, sd: float = 0.01, decay_power: float = 1.0,
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                 init: torch.Tensor | None = None):
        self.h, self.w = (size, size) if isinstance(size, int) else size
        if init is not None:
            init = init if init.dim() == 4 else init[None]
            batch, _, self.h, self.w = init.shape
        self.scale = _fft_scale(self.h, self.w, decay_power).to(device)[None, None, :, :, None]
        shape = (batch, 3, self.h, self.w // 2 + 1, 2)
        spec = sd * torch.randn(shape, generator=generator)
        self.spectrum = spec.to(device).requires_grad_(True)
        self.color = _COLOR.to(device)
        if init is not None:
            self.set_image(init.to(device))

    def parameters(self) -> list[torch.Tensor]:
        return [self.spectrum]

    def _decorrelated(self) -> torch.Tensor:
        spec = torch.view_as_complex((self.scale * self.spectrum).contiguous())
        return torch.fft.irfftn(spec, s=(self.h, self.w), dim=(2, 3), norm="ortho") / _FFT_MAGIC

    def image(self) -> torch.Tensor:
        x = torch.einsum("ij,bjhw->bihw", self.color, self._decorrelated())
        return torch.sigmoid(x).contiguous()

    @torch.no_grad()
    def set_image(self, img: torch.Tensor) -> None:
        img = img.detach().to(self.spectrum).clamp(1e-4, 1 - 1e-4)
        dec = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(self.color), torch.logit(img)) * _FFT_MAGIC
        spec = torch.view_as_real(torch.fft.rfftn(dec, dim=(2, 3), norm="ortho"))
        self.spectrum.copy_(spec / self.scale)


def fourier_image(batch: int = 1, size: int | tuple[int, int] = 224, init: str | torch.Tensor = "noise", *,
                  sd: float = 0.01, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu", decay_power: float = 1.0) -> FourierImage:
    """A Fourier parameterisation (lucid's ``param.image(fft=True, decorrelate=True)``): ``init`` is
    ``"noise"`` (a small random spectrum: a grey image with faint colour noise) or a tensor to start from."""
    if isinstance(init, torch.Tensor):
        return FourierImage(batch, size, sd=sd, decay_power=decay_power, device=device, init=init)
    if init != "noise":
        raise ValueError(f"unknown init {init!r} for a Fourier image (noise or a tensor)")
    return FourierImage(batch, size, sd=sd, decay_power=decay_power, generator=generator, device=device)


def make_image(parameterization: str, batch: int, size, init="noise", **kw) -> ImageParam:
    """``"fft"`` (:func:`fourier_image`) or ``"pixel"`` (:func:`pixel_image`, clamped pixels)."""
    if parameterization == "fft":
        kw.pop("center", None)
        kw.pop("mode", None)
        return fourier_image(batch, size, init if isinstance(init, torch.Tensor) else "noise", **kw)
    if parameterization == "pixel":
        return pixel_image(batch, size, init, **kw)
    raise ValueError(f"unknown parameterization {parameterization!r} (fft, pixel)")
