"""Johnson, Alahi & Fei-Fei's (2016) image transformation network and its training against perceptual losses.

The network: a 9x9 convolution, two stride-2 convolutions (downsampling), residual blocks, two upsampling
stages done as nearest-neighbour resize followed by a 3x3 convolution (resize-convolution, which avoids the
checkerboard artefacts of transposed convolutions), and a 9x9 convolution to RGB through a sigmoid (by default
added to the input's logit: a residual over the content image, see :class:`TransformNet`). Every
convolution but the last is followed by instance normalisation (Ulyanov et al. 2016) and a ReLU. The output
always has the input's size.

Training (:func:`train`) minimises the same loss as optimisation-based style transfer, ``L_content + w_s
L_style + w_tv TV``, averaged over content images, with the loss network (the user's model) frozen: afterwards
one forward pass stylises any image.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..inspection.activations import activations


class _ConvIN(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, relu: bool = True):
        super().__init__()
        self.pad = nn.ReflectionPad2d(k // 2)
        self.conv = nn.Conv2d(cin, cout, k, stride)
        self.norm = nn.InstanceNorm2d(cout, affine=True)
        self.relu = relu

    def forward(self, x):
        y = self.norm(self.conv(self.pad(x)))
        return F.relu(y) if self.relu else y


class _Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.a = _ConvIN(c, c, 3)
        self.b = _ConvIN(c, c, 3, relu=False)

    def forward(self, x):
        return x + self.b(self.a(x))


class TransformNet(nn.Module):
    """Image in [0, 1] (B x 3 x H x W) -> stylised image in [0, 1] of the same size.

    ``residual``: the last convolution adds to the input's logit (``sigmoid(out + logit(x))``), so the untrained
    network starts near the identity and a short CPU training keeps the content's colours; Johnson et al.'s
    network (``residual=False``) has to learn to reproduce the content from scratch."""

    def __init__(self, width: int = 16, res_blocks: int = 3, residual: bool = True):
        super().__init__()
        w = width
        self.residual = residual
        self.down = nn.Sequential(_ConvIN(3, w, 9), _ConvIN(w, 2 * w, 3, 2), _ConvIN(2 * w, 4 * w, 3, 2))
        self.res = nn.Sequential(*[_Residual(4 * w) for _ in range(res_blocks)])
        self.up1 = _ConvIN(4 * w, 2 * w, 3)
        self.up2 = _ConvIN(2 * w, w, 3)
        self.pad = nn.ReflectionPad2d(4)
        self.out = nn.Conv2d(w, 3, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        y = self.res(self.down(x))
        y = self.up1(F.interpolate(y, size=((h + 1) // 2, (w + 1) // 2), mode="nearest"))
        y = self.up2(F.interpolate(y, size=(h, w), mode="nearest"))
        if not self.residual:
            return torch.sigmoid(self.out(self.pad(y)))
        return torch.sigmoid(self.out(self.pad(y)) + torch.logit(x.clamp(1e-3, 1 - 1e-3)))


def perceptual_loss(pixel_model, root, objective_for: Callable, layers: Sequence[str], content_layer: str,
                    x: torch.Tensor, y: torch.Tensor, fit: Callable | None = None) -> torch.Tensor:
    """Per-image loss of the stylised ``y`` for the content ``x``: ``-objective_for(content_target)(acts, y)``
    (``fit``: resize to a size the model accepts first)."""
    target = activations(pixel_model, [content_layer], x, root=root, fit=fit)[content_layer]
    acts = activations(pixel_model, list(dict.fromkeys([*layers, content_layer])), y, root=root, grad=True, fit=fit)
    return -objective_for(target)(acts, y)


def train(net: TransformNet, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], data: torch.Tensor, *,
          iterations: int, batch: int, lr: float, generator: torch.Generator, progress=None) -> dict:
    """Adam on ``loss_fn(x, net(x)).mean()`` over random batches (random horizontal flips) of ``data``.

    Returns {"losses": per-iteration loss, "seconds": wall time}."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    t0 = time.perf_counter()
    it = range(iterations) if progress is None else progress(range(iterations), "Training the transformation net",
                                                             total=iterations)
    net.train()
    for _ in it:
        idx = torch.randint(0, data.shape[0], (min(batch, data.shape[0]),), generator=generator)
        x = data[idx.to(data.device)]
        if bool(torch.rand((), generator=generator) < 0.5):
            x = x.flip(3)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(x, net(x)).mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    net.eval()
    return {"losses": np.asarray(losses, dtype=np.float32), "seconds": time.perf_counter() - t0}


def state_to_numpy(net: nn.Module) -> dict[str, np.ndarray]:
    """A cache-safe copy of the weights (plain numpy arrays)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}


def load_numpy_state(net: nn.Module, state: dict[str, np.ndarray]) -> nn.Module:
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    return net


__all__ = ["TransformNet", "perceptual_loss", "train", "state_to_numpy", "load_numpy_state"]
