"""The style_transfer technique (reportgen/techniques/style_transfer.py): its own tests."""

from __future__ import annotations


def test_the_strip_trades_content_for_style_as_the_style_weight_grows(make_ctx, tiny_model, image_dir, run_minimal):
    """Gatys et al. 2016, Fig. 3: along the strip of growing style weights w_s the result moves from the content
    image towards the style: its Gram error falls and its content error rises (first vs last step)."""
    ctx = make_ctx(tiny_model, image_dir, overrides={"style_transfer": {"image_size": 16}})
    sec = run_minimal(ctx, "style_transfer", ratios=[0.5, 5000.0], steps=4, max_styles=1, max_contents=1)
    r = sec.results
    assert r["ratios"] == [0.5, 5000.0] and len(r["strip_gram_error"]) == len(r["strip_content_error"]) == 2
    assert r["strip_gram_error"][-1] < r["strip_gram_error"][0]
    assert r["strip_content_error"][-1] > r["strip_content_error"][0]
    assert r["loss_fell"] is True
