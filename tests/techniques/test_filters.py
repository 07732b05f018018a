"""The filters technique (reportgen/techniques/filters.py): the higher-layer filter grid of a depthwise convolution
is tiled, not one tall column."""

from __future__ import annotations

import torch
from torch import nn

from conftest import CLASSES
from reportgen import registry
from reportgen.build import run_technique
from reportgen.report import Figure
import numpy as np
from reportgen.report import Grid


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


def test_filter_of_known_weights_renders_to_known_pixels(make_ctx, image_dir):
    from conftest import make_tiny_cnn

    m = make_tiny_cnn()
    with torch.no_grad():
        w = m.features[0].weight
        w[0].zero_()
        w[0, 0, 0, 0] = 1.0  # red, top-left
        w[0, 2, 2, 2] = -1.0  # blue, bottom-right
        w[1].fill_(0.01)  # a nearly dead filter
    tiles = {}
    for scale in ("filter", "global"):
        c = make_ctx(m, image_dir, class_names=CLASSES, overrides={"filters": {"scale": scale}})
        sec = run_technique(c, registry.get("filters"), strict=True)
        grid = next(b for b in sec.blocks if isinstance(b, Grid))
        tiles[scale] = [it.image.array.astype(int) for it in grid.items]
        assert sec.results["dead_filters"] == [1]
        assert "(dead)" in grid.items[1].label
    f0 = tiles["filter"][0]
    assert tuple(f0[0, 0]) == (255, 128, 128) or tuple(f0[0, 0]) == (255, 127, 127)
    assert f0[2, 2, 2] == 0 and abs(f0[1, 1] - 127.5).max() <= 1
    # per-filter min/max stretches the dead filter; the global scale shows it flat grey
    assert np.abs(tiles["global"][1] - 128).max() <= 2
    assert np.array_equal(tiles["global"][0], f0)  # its max |w| is the layer's: the same pixels
