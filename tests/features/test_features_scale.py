"""Bounded-memory feature pass: memory-mapped matrices in the cache, decode workers, shard merges."""

from __future__ import annotations

import numpy as np
import torch

from conftest import CLASSES
from reportgen.cache import Cache
from reportgen.features.scan import TopK


def test_matrices_are_memory_mapped_in_the_cache(make_ctx, tiny_model, image_dir, tmp_path):
    cache = Cache(tmp_path / "c")
    a = make_ctx(tiny_model, image_dir, class_names=CLASSES)
    a.cache = cache
    fa = a.features(["features.3"])
    assert isinstance(fa.penultimate, np.memmap) and isinstance(fa.pixels, np.memmap)
    npys = sorted((tmp_path / "c").rglob("*.npy"))
    assert len(npys) == 2 and not list((tmp_path / "c").rglob("*.part"))
    # the pickled record refers to the files instead of carrying the matrices
    pkl_bytes = max(p.stat().st_size for p in (tmp_path / "c").rglob("*.pkl"))
    assert pkl_bytes < fa.pixels.nbytes
    b = make_ctx(tiny_model, image_dir, class_names=CLASSES)
    b.cache = cache
    fb = b.features(["features.3"])
    assert fb.passes == 0 and isinstance(fb.pixels, np.memmap)
    np.testing.assert_array_equal(fa.penultimate, fb.penultimate)
    np.testing.assert_array_equal(fa.pixels, fb.pixels)
    # a matrix evicted from the cache is a miss: the pass runs again, same numbers
    for p in npys:
        p.unlink()
    c = make_ctx(tiny_model, image_dir, class_names=CLASSES)
    c.cache = cache
    fc = c.features(["features.3"])
    assert fc.passes == 1
    np.testing.assert_array_equal(fa.pixels, fc.pixels)
    assert cache.clear()[0] >= 4  # `reportgen cache clear` removes the matrices too
    assert not list((tmp_path / "c").rglob("*.npy"))


def test_decode_workers_give_the_same_record(make_ctx, tiny_model, image_dir):
    a = make_ctx(tiny_model, image_dir, general={"batch_size": 4}, class_names=CLASSES).features(["features.3"])
    b = make_ctx(tiny_model, image_dir, general={"batch_size": 4, "num_workers": 2},
                 class_names=CLASSES).features(["features.3"])
    np.testing.assert_array_equal(a.logits, b.logits)
    np.testing.assert_array_equal(a.pixels, b.pixels)
    np.testing.assert_array_equal(a.stats("features.3").top_image, b.stats("features.3").top_image)


def test_topk_merge_of_shards_equals_one_pass():
    g = torch.Generator().manual_seed(0)
    acts = torch.randint(0, 4, (20, 3, 5, 5), generator=g).float()  # many ties: the tie-break matters
    whole = TopK(6)
    for s in range(0, 20, 4):
        whole.update(acts[s:s + 4], list(range(s, s + 4)))
    shards = [TopK(6), TopK(6)]
    for r in range(2):
        idx = list(range(r, 20, 2))
        for s in range(0, len(idx), 3):
            part = idx[s:s + 3]
            shards[r].update(acts[part], part)
    shards[0].merge(shards[1])
    a, b = whole.finish("x"), shards[0].finish("x")
    np.testing.assert_array_equal(a.top_values, b.top_values)
    np.testing.assert_array_equal(a.top_image, b.top_image)
    np.testing.assert_array_equal(a.top_y, b.top_y)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-6)
    np.testing.assert_allclose(a.std, b.std, rtol=1e-5)
