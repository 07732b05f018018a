"""The guided_backprop technique (reportgen/techniques/guided_backprop.py): its own tests."""

from __future__ import annotations

import numpy as np
from conftest import CLASSES

from reportgen import registry
from reportgen.build import run_technique
from reportgen.report import Grid, Group, Note, Row, iter_images


def test_guided_backprop_layout_and_rule_note(ctx):
    sec = run_technique(ctx, registry.get("guided_backprop"), strict=True)
    grid = next(b for g in sec.blocks if isinstance(g, Group) for r in g.blocks if isinstance(r, Row)
                for b in r.blocks if isinstance(b, Grid))
    opts = ctx.config.options("guided_backprop")
    assert grid.columns == 3 and len(grid.items) == 3 * (opts.units + 1)
    assert [it.label for it in grid.items[:3]] == ["backprop", "deconvnet", "guided backprop"]
    note = " ".join(b.text for b in sec.blocks if isinstance(b, Note))
    assert "ReLU" in note and "guided relu(g)" in note


def test_guided_backprop_is_the_same_in_batches_of_one(make_ctx, tiny_model, image_dir):
    over = {"guided_backprop": {"max_images": 3}}
    whole = make_ctx(tiny_model, image_dir, class_names=CLASSES, overrides=over)
    ones = make_ctx(tiny_model, image_dir, class_names=CLASSES, overrides=over, general={"batch_size": 1})
    a = [im.array for im in iter_images(run_technique(whole, registry.get("guided_backprop"), strict=True).blocks)]
    b = [im.array for im in iter_images(run_technique(ones, registry.get("guided_backprop"), strict=True).blocks)]
    assert len(a) == len(b) > 3
    assert max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(a, b)) <= 1  # rounding only
