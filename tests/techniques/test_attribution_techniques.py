"""The gradcam, smoothgrad and integrated_gradients sections on a tiny model."""

from __future__ import annotations

import json

from reportgen import registry
from reportgen.inspection.hooks import count_hooks
from reportgen.report import Grid, Note, Table


def _run(ctx, tid, **over):
    info = registry.get(tid)
    opts = info.default_options("minimal")
    for k, v in over.items():
        setattr(opts, k, v)
    return info.fn(ctx, opts)


def test_gradcam_section(ctx):
    sec = _run(ctx, "gradcam")
    assert sec.results["layer"] == "features" and sec.results["layer_cells"] == [8, 8]
    grid = next(b for b in sec.blocks if isinstance(b, Grid))
    assert len(grid.items) == 2 * 4  # input, Grad-CAM, Grad-CAM++, Guided Grad-CAM per image
    assert "features (8x8 cells" in grid.caption
    json.dumps(sec.results)
    assert count_hooks(ctx.model) == 0


def test_gradcam_layer_option(ctx):
    sec = _run(ctx, "gradcam", layer="features.3")
    assert sec.results["layer_cells"] == [16, 16]


def test_integrated_gradients_section_reports_completeness(ctx):
    sec = _run(ctx, "integrated_gradients", steps=2, max_steps=512)
    r = sec.results
    assert r["tried"][0][0] == 2 and r["steps"] >= 2
    table = next(b for b in sec.blocks if isinstance(b, Table))
    assert "Gauss-Legendre steps" in table.caption
    # per image: the reported steps are where it stopped; an image stops doubling as soon as it is within tolerance
    per = [im["steps"] for im in r["images"]]
    assert max(per) == r["steps"] and [row[6] for row in table.rows] == per
    for im in r["images"]:
        hist = [s for s, _ in r["tried"] if s <= im["steps"]]
        assert im["steps"] in hist
        if im["steps"] < r["steps"]:
            assert im["gap"] <= 0.01  # it stopped early because it was within tolerance
    notes = " ".join(b.text for b in sec.blocks if isinstance(b, Note))
    if r["converged"]:
        assert r["worst_gap"] <= 0.01 and "holds within 1%" in notes
    else:
        assert "NOT within" in notes
    for im in r["images"]:
        d = im["score_x"] - im["score_baseline"]
        assert abs(im["sum_ig"] - d) <= max(0.011 * abs(d), 2e-3) or not r["converged"]


def test_integrated_gradients_step_limit_is_reported(ctx):
    sec = _run(ctx, "integrated_gradients", steps=1, max_steps=1, tolerance=1e-9)
    assert not sec.results["converged"]
    assert any("NOT within" in b.text for b in sec.blocks if isinstance(b, Note))


def test_smoothgrad_section(ctx):
    sec = _run(ctx, "smoothgrad")
    assert sec.results["samples"] == 8
    notes = [b for b in sec.blocks if isinstance(b, Note)]
    ratio = sec.results["median_speckle_ratio"]
    assert ("removed speckle" in notes[0].text) == (ratio < 0.8)


def test_occlusion_flags_flat_maps(make_ctx, image_dir):
    import torch
    from torch import nn

    from conftest import CLASSES, make_tiny_cnn

    class Blind(nn.Module):
        """A classifier that looks only at the mean colour: no square changes its answer by much."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return self.conv(x).mean((2, 3)) * 0.01 + torch.tensor([3.0, 0.0, 0.0, 0.0])

    flat = _run(make_ctx(Blind().eval(), image_dir, class_names=CLASSES), "occlusion")
    notes = " ".join(b.text for b in flat.blocks if isinstance(b, Note))
    assert "Flat maps:" in notes and all(im["max_change"] < 0.05 for im in flat.results["images"])
    sharp = _run(make_ctx(make_tiny_cnn(), image_dir, class_names=CLASSES), "occlusion")
    flagged = [im["image"] for im in sharp.results["images"] if im["max_change"] < 0.05]
    text = " ".join(b.text for b in sharp.blocks if isinstance(b, Note))
    assert ("Flat maps:" in text) == bool(flagged) and all(name in text for name in flagged)
