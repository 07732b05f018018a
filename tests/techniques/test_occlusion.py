"""The occlusion technique (reportgen/techniques/occlusion.py): its own tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import CLASSES
from torch import nn

from reportgen import registry
from reportgen.build import run_technique
from reportgen.report import Grid, Note


def test_occlusion_flags_flat_maps(make_ctx, image_dir, run_minimal):
    from conftest import make_tiny_cnn

    class Blind(nn.Module):
        """A classifier that looks only at the mean colour: no square changes its answer by much."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return self.conv(x).mean((2, 3)) * 0.01 + torch.tensor([3.0, 0.0, 0.0, 0.0])

    flat = run_minimal(make_ctx(Blind().eval(), image_dir, class_names=CLASSES), "occlusion")
    notes = " ".join(b.text for b in flat.blocks if isinstance(b, Note))
    assert "Flat maps:" in notes and all(im["max_change"] < 0.05 for im in flat.results["images"])
    sharp = run_minimal(make_ctx(make_tiny_cnn(), image_dir, class_names=CLASSES), "occlusion")
    flagged = [im["image"] for im in sharp.results["images"] if im["max_change"] < 0.05]
    text = " ".join(b.text for b in sharp.blocks if isinstance(b, Note))
    assert ("Flat maps:" in text) == bool(flagged) and all(name in text for name in flagged)


@pytest.mark.parametrize("window, stride", [(6, 3), (8, 5), (12, 4)])
def test_occlusion_peaks_in_the_region_and_is_aligned(region_ctx, window, stride, region, inside):
    from reportgen.techniques.occlusion import occlusion_maps

    res = occlusion_maps(region_ctx, [0, 1], window, stride, batch_size=7, fill=0.5)
    y0, x0, y1, x1 = region
    for r in res:
        assert r.target == 0
        drop = r.base - r.heat
        peak = np.unravel_index(np.argmax(drop), drop.shape)
        assert inside(peak, region), peak
        # pixels whose every covering window misses the region are exactly unchanged
        far = np.ones_like(drop, dtype=bool)
        far[max(0, y0 - window + 1):y1 + window - 1, max(0, x0 - window + 1):x1 + window - 1] = False
        np.testing.assert_allclose(drop[far], 0, atol=1e-6)
        assert drop[y0:y1, x0:x1].min() > 0


@pytest.mark.parametrize("window, stride", [(8, 8), (10, 7)])
def test_occlusion_batched_equals_naive_loop(ctx, window, stride):
    from reportgen.techniques.occlusion import naive_occlusion, occlusion_maps

    fill = ctx.features().mean_rgb
    res = occlusion_maps(ctx, [0, 4], window, stride, batch_size=13, fill=fill)  # batches mix both images
    for r in res:
        ref = naive_occlusion(ctx, r.index, r.target, window, stride, fill)
        np.testing.assert_allclose(r.grid, ref, rtol=1e-5, atol=1e-6)
        assert r.heat.shape == (32, 32)


def test_window_positions_cover_the_image():
    from reportgen.techniques.occlusion import window_positions

    assert window_positions(32, 8, 8) == [0, 8, 16, 24]
    assert window_positions(32, 10, 7) == [0, 7, 14, 21, 22]
    assert window_positions(8, 16, 4) == [0]


def test_occlusion_names_its_fill_and_uses_a_diverging_scale(ctx):
    # before: "a grey square" with a mean-colour fill; a rise in p was painted like "no effect"
    from reportgen.techniques.occlusion import change_overlay

    assert "grey square" not in registry.get("occlusion").summary
    sec = run_technique(ctx, registry.get("occlusion"), strict=True)
    cap = next(b for b in sec.blocks if isinstance(b, Grid)).caption
    assert "mean colour" in cap and sec.results["fill"] == "mean"
    assert np.allclose(sec.results["fill_rgb"], ctx.features().mean_rgb, atol=1e-3)
    img = np.full((4, 6, 3), 128, np.uint8)
    heat = np.array([[0.2] * 2 + [0.5] * 2 + [0.8] * 2] * 4, np.float32)  # base 0.5: drop | none | rise
    out = change_overlay(img, 0.5, heat).astype(int)
    drop, none, rise = out[0, 0], out[0, 2], out[0, 4]
    assert drop[0] > drop[2] + 25 and rise[2] > rise[0] + 25
    assert abs(none[0] - none[2]) < 10 and none.min() > 150  # near white blended: "no effect" is neutral
