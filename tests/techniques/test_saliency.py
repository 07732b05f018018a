"""The saliency technique (reportgen/techniques/saliency.py): its own tests."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CLASSES, write_image_folder
from torch import nn

from reportgen.preprocess import Preprocessing


class SmoothNet(nn.Module):
    """A smooth (tanh) conv net, so finite differences are meaningful."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, stride=2, padding=1)
        self.fc = nn.Linear(6 * 8 * 8, 4)

    def forward(self, x):
        x = torch.tanh(self.conv2(torch.tanh(self.conv(x))))
        return self.fc(x.flatten(1))


@pytest.fixture()
def small_dir(tmp_path) -> Path:
    return write_image_folder(tmp_path / "img", per_class=2, size=16)


@pytest.fixture()
def pre16():
    return Preprocessing(resize=None, input_size=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), source="test")


def test_saliency_is_the_input_gradient_and_matches_finite_differences(make_ctx, small_dir, pre16):
    from reportgen.techniques._explain import saliency_maps

    model = SmoothNet().eval()
    ctx = make_ctx(model, small_dir, class_names=CLASSES, pre=pre16)
    idx = [0, 3, 5]
    res = saliency_maps(ctx, idx, batch_size=2)
    pm64 = copy.deepcopy(ctx.pixel_model).double()
    for r in res:
        assert r.target == ctx.images.labels[r.index]  # the true label is explained when known
        x = ctx.images.tensor(r.index)[None].double().requires_grad_(True)
        s = pm64(x)[0, r.target]
        (g,) = torch.autograd.grad(s, x)
        np.testing.assert_allclose(r.map, g.abs().amax(1)[0].numpy(), rtol=1e-4, atol=1e-7)
        # central differences at the most salient pixel and two others, every channel
        rng = np.random.default_rng(r.index)
        py, px = np.unravel_index(np.argmax(r.map), r.map.shape)
        for (yy, xx) in [(py, px), tuple(rng.integers(0, 16, 2)), tuple(rng.integers(0, 16, 2))]:
            fd = []
            for c in range(3):
                e = torch.zeros_like(x)
                e[0, c, yy, xx] = 1e-5
                with torch.no_grad():
                    fd.append(float((pm64(x + e)[0, r.target] - pm64(x - e)[0, r.target]) / 2e-5))
            assert r.map[yy, xx] == pytest.approx(max(abs(v) for v in fd), rel=1e-3, abs=1e-6)


def test_saliency_batched_equals_one_at_a_time(ctx):
    from reportgen.techniques._explain import saliency_maps

    idx = list(range(6))
    a = saliency_maps(ctx, idx, batch_size=4)
    b = saliency_maps(ctx, idx, batch_size=1)
    for ra, rb in zip(a, b):
        np.testing.assert_allclose(ra.map, rb.map, rtol=1e-4, atol=1e-6)


def test_saliency_peaks_in_the_region(region_ctx, region, inside):
    from reportgen.techniques._explain import saliency_maps

    for r in saliency_maps(region_ctx, [0, 1, 2]):
        y0, x0, y1, x1 = region
        assert inside(np.unravel_index(np.argmax(r.map), r.map.shape), region)
        outside = r.map.copy()
        outside[y0:y1, x0:x1] = 0
        assert outside.max() == 0  # exactly no gradient outside the region
        assert r.map[y0:y1, x0:x1].min() > 0
