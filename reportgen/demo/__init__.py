"""Embedded demo model and images for ``reportgen demo`` (works offline).

Ships, as plain package data next to this file:

* ``weights.pt`` - float32 state dict of :class:`FashionNet`, a ~96k-parameter
  fully convolutional CNN trained on Fashion-MNIST (test accuracy in
  ``TRAINING.md``);
* ``labels.txt`` - the 10 class names, one per line, in label order;
* ``images/`` - 300 Fashion-MNIST test-set images (30 per class) as 28x28
  greyscale PNGs, one folder per class (``0_t-shirt_top`` ... ``9_ankle_boot``);
  Fashion-MNIST is Copyright (c) 2017 Zalando SE, MIT licence
  (``LICENSE.fashion-mnist``).

Beside it, ``vit_weights.pt`` holds a tiny torchvision Vision Transformer trained on the same data
(:mod:`reportgen.demo.vit`, ``reportgen demo --arch vit``; ``python -m reportgen.demo.train_vit``).

Everything is reproduced by ``python -m reportgen.demo.train`` (see
``TRAINING.md``). Model inputs are RGB (greyscale replicated to 3 channels),
scaled to [0, 1] and normalised with :data:`MEAN` / :data:`STD`; native size
:data:`INPUT_SIZE` (28), but any size works thanks to global average pooling.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from reportgen.demo.model import CLASS_NAMES, INPUT_SIZE, MEAN, STD, FashionNet

__all__ = [
    "FashionNet",
    "build_model",
    "labels",
    "images_dir",
    "DEMO_DIR",
    "WEIGHTS_PATH",
    "LABELS_PATH",
    "IMAGES_DIR",
    "MEAN",
    "STD",
    "INPUT_SIZE",
    "CLASS_NAMES",
    "DEMO_ARCHS",
]

DEMO_DIR: Path = Path(__file__).parent
WEIGHTS_PATH: Path = DEMO_DIR / "weights.pt"
LABELS_PATH: Path = DEMO_DIR / "labels.txt"
IMAGES_DIR: Path = DEMO_DIR / "images"

#: ``reportgen demo --arch``: model SPEC and report title per embedded architecture
DEMO_ARCHS: dict[str, tuple[str, str]] = {
    "cnn": ("demo", "Demo: FashionNet on Fashion-MNIST — model card"),
    "vit": ("reportgen.demo.vit:build_model", "Demo: a tiny ViT on Fashion-MNIST — model card"),
}


def build_model() -> nn.Module:
    """Return :class:`FashionNet` with the shipped weights, on CPU, in eval mode."""
    model = FashionNet()
    state = torch.load(WEIGHTS_PATH, weights_only=True, map_location="cpu")
    model.load_state_dict(state)
    return model.eval()


def labels() -> list[str]:
    """Class names in label order (read from ``labels.txt``)."""
    lines = LABELS_PATH.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def images_dir() -> Path:
    """Folder of demo images: one sub-folder per class, named ``<index>_<slug>``."""
    return IMAGES_DIR
