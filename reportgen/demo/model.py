"""The embedded demo classifier: a small fully convolutional Fashion-MNIST CNN.

``FashionNet`` is the model behind ``reportgen demo``. It is deliberately small
(about 96k parameters, a ~0.4 MB state dict) and readable, so every technique in
the report has something sensible to show:

* ``features.0`` .. ``features.2`` - a 5x5 first convolution with 32 filters
  (large enough kernels for a readable filter-grid picture), BatchNorm, ReLU,
  then ``features.3`` max-pool;
* ``features.4`` .. ``features.7`` - 3x3 conv 32->64, BN, ReLU, max-pool;
* ``features.8`` .. ``features.10`` - 3x3 conv 64->128, BN, ReLU (the last
  spatial feature map, a natural target for CAM / Grad-CAM);
* ``pool`` (global average pooling), ``flatten`` and ``classifier``
  (``nn.Linear(128, 10)``).

Because the head is global average pooling the network runs at any input size
(native 28x28; 32x32 and 64x64 work too). Input is 3-channel RGB in [0, 1],
normalised with :data:`MEAN` / :data:`STD`; greyscale images are replicated to
three channels. The three input channels of the first layer share identical
weights (the model was trained on greyscale data only), so the first-layer
filters display as clean greyscale patches.

All activations are separate, non-inplace ``nn.ReLU`` modules (no functional
calls in ``forward``) so hooks-based techniques (guided backprop, deconvnet,
activation capture) see every non-linearity.

Weights are produced by ``python -m reportgen.demo.train``; see
``reportgen/demo/TRAINING.md`` for how the shipped ``weights.pt`` was made.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

__all__ = ["FashionNet", "MEAN", "STD", "INPUT_SIZE", "NUM_CLASSES", "CLASS_NAMES"]

#: Per-channel normalisation (Fashion-MNIST train-set pixel mean / std,
#: replicated for the three identical channels).
MEAN: tuple[float, float, float] = (0.2860, 0.2860, 0.2860)
STD: tuple[float, float, float] = (0.3530, 0.3530, 0.3530)

#: Native input resolution (square).
INPUT_SIZE: int = 28

NUM_CLASSES: int = 10

#: Fashion-MNIST class names, in label order.
CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


class FashionNet(nn.Module):
    """Small fully convolutional CNN with a global-average-pooling head.

    Args:
        num_classes: number of output logits (10 for Fashion-MNIST).

    Input: ``(N, 3, H, W)`` float tensor, normalised with :data:`MEAN` /
    :data:`STD`; any ``H, W >= 4`` works (native 28). Output: ``(N, num_classes)``
    logits.
    """

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            # block 1: 28x28 -> 14x14
            nn.Conv2d(3, 32, kernel_size=5, padding=2, bias=False),  # features.0
            nn.BatchNorm2d(32),  # features.1
            nn.ReLU(),  # features.2
            nn.MaxPool2d(2),  # features.3
            # block 2: 14x14 -> 7x7
            nn.Conv2d(32, 64, kernel_size=3, padding=1, bias=False),  # features.4
            nn.BatchNorm2d(64),  # features.5
            nn.ReLU(),  # features.6
            nn.MaxPool2d(2),  # features.7
            # block 3: 7x7 -> 7x7
            nn.Conv2d(64, 128, kernel_size=3, padding=1, bias=False),  # features.8
            nn.BatchNorm2d(128),  # features.9
            nn.ReLU(),  # features.10
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(128, num_classes)
        self.tie_first_layer_channels()

    @torch.no_grad()
    def tie_first_layer_channels(self) -> None:
        """Make the three input channels of the first conv share one kernel.

        Replaces each channel's kernel by the channel mean. For greyscale input
        (three identical channels) the network's output is unchanged, and since
        those channels then receive identical gradients they stay tied during
        training on greyscale data.
        """
        w = cast(torch.Tensor, self.features[0].weight)
        w.copy_(w.mean(dim=1, keepdim=True).expand_as(w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.pool(x)
        x = self.flatten(x)
        return self.classifier(x)
