"""The embedded demo transformer: a tiny Vision Transformer trained on Fashion-MNIST.

``reportgen demo --arch vit`` builds the report on this model (the default demo stays the CNN,
:class:`~reportgen.demo.model.FashionNet`). It is torchvision's own
:class:`torchvision.models.VisionTransformer` (Dosovitskiy et al., ICLR 2021) at tiny sizes, so
every section sees the same module names as ``vit_b_16``:

* ``conv_proj`` - the 4x4 patch embedding (stride 4): a 28x28 image becomes a 7x7 grid of
  49 patch tokens, plus the class token; its three input channels share one kernel (trained on
  greyscale, tied after training: :func:`tie_patch_channels`);
* ``encoder.layers.encoder_layer_0`` .. ``encoder_layer_3`` - 4 pre-norm encoder blocks, hidden
  size 64, 4 heads (16 dimensions each), MLP 128; the attention modules are
  ``encoder.layers.encoder_layer_N.self_attention`` (``nn.MultiheadAttention``);
* ``heads.head`` - the linear classifier on the class token.

Unlike FashionNet it runs at its training size only (28x28: the position embedding has 50
entries). Input is RGB in [0, 1] (greyscale replicated), normalised with the demo's
:data:`~reportgen.demo.model.MEAN` / :data:`~reportgen.demo.model.STD`. Weights (``vit_weights.pt``,
float32 state dict) are made by ``python -m reportgen.demo.train_vit``; see ``TRAINING.md``.

This module doubles as a ``module:factory`` model spec: ``reportgen.demo.vit:build_model``
(``labels`` and ``preprocessing`` below are read by the factory loader).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import VisionTransformer

from reportgen.demo.model import CLASS_NAMES, INPUT_SIZE, MEAN, NUM_CLASSES, STD

__all__ = ["tiny_vit", "tie_patch_channels", "build_model", "labels", "preprocessing", "VIT_WEIGHTS_PATH", "PATCH_SIZE"]

VIT_WEIGHTS_PATH: Path = Path(__file__).parent / "vit_weights.pt"
PATCH_SIZE: int = 4
HIDDEN_DIM: int = 64
NUM_LAYERS: int = 4
NUM_HEADS: int = 4
MLP_DIM: int = 128


def tiny_vit(num_classes: int = NUM_CLASSES) -> VisionTransformer:
    """A freshly initialised tiny torchvision ViT (28 px, patch 4, hidden 64, 4 layers, 4 heads)."""
    return VisionTransformer(image_size=INPUT_SIZE, patch_size=PATCH_SIZE, num_layers=NUM_LAYERS,
                             num_heads=NUM_HEADS, hidden_dim=HIDDEN_DIM, mlp_dim=MLP_DIM,
                             dropout=0.0, attention_dropout=0.0, num_classes=num_classes)


@torch.no_grad()
def tie_patch_channels(model: VisionTransformer) -> None:
    """Give the three input channels of the patch embedding one kernel (their mean), as FashionNet does: for
    greyscale input (three identical channels) the output is unchanged, and the filters display as greyscale."""
    w = model.conv_proj.weight
    w.copy_(w.mean(dim=1, keepdim=True).expand_as(w))


def build_model() -> nn.Module:
    """The tiny ViT with the shipped weights, on CPU, in eval mode."""
    model = tiny_vit()
    state = torch.load(VIT_WEIGHTS_PATH, weights_only=True, map_location="cpu")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def labels() -> list[str]:
    """Class names in label order (the demo's ``labels.txt`` classes)."""
    return list(CLASS_NAMES)


#: Read by the factory loader: the demo's 28 px input and normalisation (no resize beyond 28).
preprocessing: dict = {"resize": INPUT_SIZE, "input_size": INPUT_SIZE, "mean": MEAN, "std": STD}
