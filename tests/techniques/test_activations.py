"""The activations technique (reportgen/techniques/activations.py): its own tests."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from reportgen import registry
from reportgen.build import run_technique
from reportgen.report import Grid


class Detector(nn.Module):
    """Channel 0 sums brightness in a 5x5 window; channel 1 its negation (dead after the ReLU)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 5, padding=2, bias=False)
        self.act = nn.ReLU()
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight[0].fill_(1.0)
            self.conv.weight[1].fill_(-1.0)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


def test_activation_map_peaks_where_the_pattern_is(make_ctx, tmp_path, identity_pre, walk_blocks):
    img = np.zeros((32, 32, 3), np.uint8)
    img[4:10, 20:26] = 255
    Image.fromarray(img).save(tmp_path / "a.png")
    c = make_ctx(Detector().eval(), tmp_path, class_names=["x", "y"], pre=identity_pre,
                 overrides={"activations": {"max_images": 1}})
    sec = run_technique(c, registry.get("activations"), strict=True)
    assert sec.results["layer"] == "act" and sec.results["images"][0]["active_channels"] == 1
    grid = next(b for b in walk_blocks(sec.blocks) if isinstance(b, Grid))
    tile0 = grid.items[0].image.array
    y, x = np.unravel_index(int(np.argmax(tile0)), tile0.shape)
    assert 4 <= y <= 9 and 20 <= x <= 25
    assert grid.items[1].image.array.max() == tile0.min()  # channel 1 is dead: the layer's minimum everywhere
