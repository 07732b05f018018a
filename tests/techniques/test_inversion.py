"""The inversion technique (reportgen/techniques/inversion.py): its own tests."""

from __future__ import annotations

from conftest import CLASSES

from reportgen.inspection.hooks import count_hooks


def test_inversion_early_layer_reconstructs_better_than_deep(make_ctx, tiny_model, image_dir):
    from reportgen.techniques.inversion import InversionOptions, inversion

    ctx = make_ctx(tiny_model, image_dir, class_names=CLASSES)  # _ctx(...) with no overrides
    opts = InversionOptions(layers=["features.1", "features.7"], max_images=2, image_size=None, steps=80,
                            parameterization="pixel", tv_weight=1.0)
    sec = inversion(ctx, opts)
    pix = sec.results["pixel_rms"]
    assert pix["features.1"] < pix["features.7"]
    assert all(sec.results["loss_fell"].values())
    assert count_hooks(tiny_model) == 0
