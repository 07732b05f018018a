"""The filters technique (reportgen/techniques/filters.py): the higher-layer filter grid of a depthwise convolution
is tiled, not one tall column."""

from __future__ import annotations

import torch
from torch import nn

from conftest import CLASSES
from reportgen import registry
from reportgen.build import run_technique
from reportgen.report import Figure


class DepthwiseNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)  # depthwise: one input channel per filter
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(torch.relu(self.dw(torch.relu(self.stem(x)))).mean((2, 3)))


def test_depthwise_higher_layer_is_tiled(make_ctx, image_dir):
    torch.manual_seed(0)
    ctx = make_ctx(DepthwiseNet().eval(), image_dir, class_names=CLASSES, overrides={"filters": {"layer": "dw"}})
    sec = run_technique(ctx, registry.get("filters"), strict=True)
    figs = [b for b in sec.blocks if isinstance(b, Figure) and "dw" in (b.title or "")]
    assert figs, [type(b).__name__ for b in sec.blocks]
    h, w = figs[0].image.array.shape[:2]
    assert 0.5 <= w / h <= 2, f"16 depthwise filters drawn as a {h}x{w} mosaic"
