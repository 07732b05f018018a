"""The one batched pass over the image set (reportgen.features.compute): values, streaming top-k, caching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reportgen.features import compute as feat_mod
from reportgen.cache import Cache
from reportgen.features.compute import FeatureStore, LayerStats, compute_features
from reportgen.sampling import spread_indices
from reportgen.inspection.hooks import capture_input, capture_outputs, count_hooks

from conftest import CLASSES


def _all_activations(ctx, layer: str) -> np.ndarray:
    """Reference: the layer's output for every image, in one go (what the pass must never hold)."""
    x = ctx.images.batch(list(range(len(ctx.images))))
    with torch.inference_mode(), capture_outputs({layer: ctx.layer(layer)}) as out:
        ctx.pixel_model(x)
    return out[layer].float().numpy()


def test_pass_records_logits_features_pixels(ctx):
    st = ctx.features()
    x = ctx.images.batch(list(range(len(ctx.images))))
    with torch.inference_mode(), capture_input(ctx.layer("classifier")) as pen:
        logits = ctx.pixel_model(x)
    np.testing.assert_allclose(st.logits, logits.numpy(), rtol=1e-5, atol=1e-5)
    assert st.penultimate.dtype == np.float16 and st.penultimate.shape == (len(ctx.images), 16)
    np.testing.assert_allclose(st.penultimate.astype(np.float32), pen["input"].numpy(), rtol=2e-3, atol=2e-3)
    assert np.array_equal(st.preds, logits.argmax(1).numpy())
    np.testing.assert_allclose(st.probs.sum(1), 1, rtol=1e-6)
    assert st.pixels.dtype == np.float16 and st.pixels.shape == (len(ctx.images), 3 * 32 * 32)
    np.testing.assert_allclose(st.pixels.astype(np.float32), x.flatten(1).numpy(), atol=1e-3)
    np.testing.assert_allclose(st.mean_rgb, x.mean(dim=(0, 2, 3)).numpy(), atol=1e-5)
    assert count_hooks(ctx.model) == 0


def test_one_pass_gathers_planned_layers(ctx):
    st = ctx.features()  # no layer asked: still gathers the chosen layer and the patches layer
    assert ctx.chosen_layer() in st.layers
    assert st.passes == 1
    again = ctx.features(layers=[ctx.chosen_layer()])
    assert again is st  # no second pass


def test_top_patch_is_argmax_over_the_set(ctx):
    layer = "features.3"
    st = ctx.features(layers=[layer]).stats(layer)
    acts = _all_activations(ctx, layer)  # N x C x H x W
    n, c, h, w = acts.shape
    assert st.shape == (c, h, w)
    for ch in range(c):
        a = acts[:, ch]
        per_image = a.reshape(n, -1).max(1)
        order = np.argsort(-per_image, kind="stable")
        k = min(feat_mod.TOPK, n)
        np.testing.assert_allclose(st.top_values[ch, :k], per_image[order[:k]], rtol=1e-5, atol=1e-6)
        i, y, x = st.top_image[ch, 0], st.top_y[ch, 0], st.top_x[ch, 0]
        assert a[i, y, x] == pytest.approx(a.max(), rel=1e-5, abs=1e-6)  # the argmax of the channel over the set
        assert st.peak[ch] == pytest.approx(a.max(), rel=1e-5, abs=1e-6)
        np.testing.assert_allclose(st.mean[ch], a.mean(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(st.std[ch], a.std(), rtol=1e-3, atol=1e-4)
    if n < feat_mod.TOPK:
        assert (st.top_image[:, n:] == -1).all()


def test_interior_top_k_stays_inside(ctx):
    layer = "features.3"
    st = ctx.features(layers=[layer]).stats(layer)
    assert st.interior is not None
    y0, x0, y1, x1 = st.interior_region
    acts = _all_activations(ctx, layer)[:, :, y0:y1, x0:x1]
    for ch in range(acts.shape[1]):
        i, y, x = st.interior.top_image[ch, 0], st.interior.top_y[ch, 0], st.interior.top_x[ch, 0]
        assert y0 <= y < y1 and x0 <= x < x1
        assert acts[i, ch, y - y0, x - x0] == pytest.approx(acts[:, ch].max(), rel=1e-5, abs=1e-6)


def test_streaming_does_not_depend_on_batch_size(make_ctx, tiny_model, image_dir):
    a = make_ctx(tiny_model, image_dir, general={"batch_size": 1}, class_names=CLASSES)
    b = make_ctx(tiny_model, image_dir, general={"batch_size": 5}, class_names=CLASSES)
    sa, sb = a.features(["features.6"]), b.features(["features.6"])
    np.testing.assert_allclose(sa.logits, sb.logits, rtol=1e-5, atol=1e-5)
    la, lb = sa.stats("features.6"), sb.stats("features.6")
    np.testing.assert_allclose(la.top_values, lb.top_values, rtol=1e-5, atol=1e-6)
    assert np.array_equal(la.top_image, lb.top_image)


def test_cache_reuse_by_piece(make_ctx, tiny_model, image_dir, tmp_path):
    cache = Cache(tmp_path / "c")
    first = make_ctx(tiny_model, image_dir, class_names=CLASSES)
    first.cache = cache
    s1 = first.features(["features.3"])
    assert s1.passes == 1
    second = make_ctx(tiny_model, image_dir, class_names=CLASSES)
    second.cache = Cache(tmp_path / "c2", [tmp_path / "c"])  # the next build reads the old report's cache
    s2 = second.features(["features.3"])
    assert s2.passes == 0  # everything from the cache, through the safe unpickler
    assert isinstance(s2.stats("features.3"), LayerStats)
    np.testing.assert_array_equal(s1.penultimate, s2.penultimate)
    np.testing.assert_array_equal(s1.stats("features.3").top_image, s2.stats("features.3").top_image)
    # a layer nobody recorded yet costs one more pass
    s3 = second.features(["features.0"])
    assert s3.passes == 1 and {"features.0", "features.3"} <= set(s3.layers)


def test_changed_weights_miss_the_cache(make_ctx, image_dir, tmp_path):
    from conftest import make_tiny_cnn

    cache = Cache(tmp_path / "c")
    a = make_ctx(make_tiny_cnn(seed=0), image_dir, class_names=CLASSES)
    a.cache = cache
    a.features()
    b = make_ctx(make_tiny_cnn(seed=1), image_dir, class_names=CLASSES)
    b.cache = cache
    assert b.features().passes == 1


def test_spread_indices_deterministic_and_spread(ctx):
    a = spread_indices(ctx, 6)
    assert a == spread_indices(ctx, 6)
    assert a[:3] == spread_indices(ctx, 3)  # shorter lists are prefixes
    labels = ctx.images.labels[a]
    assert len(set(labels[:4].tolist())) == 4  # one per class first
    assert len(set(a)) == len(a)
    assert len(spread_indices(ctx, 1000)) == len(ctx.images)


def test_unknown_layer_is_a_helpful_error(ctx):
    from reportgen.errors import LayerError

    with pytest.raises(LayerError, match="features"):
        compute_features(ctx, ["features.99"])


def test_store_is_plain_numpy(ctx):
    st = ctx.features()
    assert isinstance(st, FeatureStore)
    for v in (st.logits, st.penultimate, st.pixels, st.mean_rgb):
        assert isinstance(v, np.ndarray)
    pooled = F.adaptive_avg_pool2d(ctx.images.batch([0]), 32)
    assert pooled.shape[-1] == st.pixel_size


def test_device_batch_size_fits_the_cache_budget(ctx):
    from reportgen.device import device_batch_size

    assert device_batch_size(ctx) == 64  # tiny activations: the cap
    # TinyCNN's largest activation is its first conv output: 8 x 32 x 32 float32 = 32 KiB
    assert device_batch_size(ctx, budget=100_000) == 3
    assert device_batch_size(ctx, budget=10) == 1
    assert count_hooks(ctx.model) == 0
