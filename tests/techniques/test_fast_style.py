"""The fast_style technique (reportgen/techniques/fast_style.py): its own tests."""

from __future__ import annotations


def test_training_lowers_the_held_out_loss_and_the_cached_network_gives_the_same(make_ctx, tiny_model, image_dir,
                                                                                 run_minimal, tmp_path):
    """Johnson et al. 2016: the transformation network, trained on some images, lowers the perceptual loss on
    images it never saw; a second run takes the network from the cache and reports the same held-out losses."""
    from reportgen.cache import Cache

    ctx = make_ctx(tiny_model, image_dir, overrides={"style_transfer": {"image_size": 16, "steps": 2}})
    ctx.cache = Cache(tmp_path / "cache")
    first = run_minimal(ctx, "fast_style", iterations=4, width=4).results
    assert first["cached"] == [False]
    assert first["held_out_loss_after"][0] < first["held_out_loss_before"][0]
    again = run_minimal(ctx, "fast_style", iterations=4, width=4).results
    assert again["cached"] == [True]
    assert again["held_out_loss_before"] == first["held_out_loss_before"]
    assert again["held_out_loss_after"] == first["held_out_loss_after"]
