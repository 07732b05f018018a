"""The gradcam technique (reportgen/techniques/gradcam.py): its own tests."""

from __future__ import annotations

import json

import pytest

from reportgen import registry
from reportgen.build import run_technique
from reportgen.inspection.hooks import count_hooks
from reportgen.report import Grid, Note


def test_gradcam_on_a_class_token_vit_reads_the_block_before_the_last(make_ctx):
    """The tiny ViT's classifier reads only the last block's class token, so Grad-CAM at that block is zero
    everywhere; the automatic layer is the block before it, the section says why, and its maps are not zero."""
    from reportgen import demo
    from reportgen.demo import vit
    from reportgen.preprocess import Preprocessing
    from reportgen.techniques._explain import cam_layer_choice

    if not vit.VIT_WEIGHTS_PATH.is_file():
        pytest.skip("demo ViT weights not built")
    pre = Preprocessing(resize=28, input_size=28, mean=demo.MEAN, std=demo.STD, source="demo")
    model = vit.build_model()
    ctx = make_ctx(model, demo.images_dir(), class_names=demo.labels(), pre=pre, general={"max_images": 8})
    last = ctx.probe().default_block()
    choice = cam_layer_choice(ctx, None)
    assert last.endswith("encoder_layer_3") and choice.name.endswith("encoder_layer_2"), (last, choice)
    assert last in choice.why and cam_layer_choice(ctx, last).why is None  # a named layer is taken as given
    sec = run_technique(ctx, registry.get("gradcam"), strict=True)
    assert sec.results["layer"] == choice.name and sec.results["layer_why"] == choice.why
    assert not sec.results["zero_maps"]
    assert any(isinstance(b, Note) and "class token" in b.text for b in sec.blocks)
    assert count_hooks(model) == 0


def test_gradcam_section(ctx, run_minimal):
    sec = run_minimal(ctx, "gradcam")
    assert sec.results["layer"] == "features" and sec.results["layer_cells"] == [8, 8]
    grid = next(b for b in sec.blocks if isinstance(b, Grid))
    assert len(grid.items) == 2 * 4  # input, Grad-CAM, Grad-CAM++, Guided Grad-CAM per image
    assert "features (8x8 cells" in grid.caption
    json.dumps(sec.results)
    assert count_hooks(ctx.model) == 0


def test_gradcam_layer_option(ctx, run_minimal):
    sec = run_minimal(ctx, "gradcam", layer="features.3")
    assert sec.results["layer_cells"] == [16, 16]
