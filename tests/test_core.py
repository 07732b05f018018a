"""Hooks, layers, preprocessing, cache: the small pieces everything else stands on."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_tiny_cnn
from reportgen.cache import Cache, digest
from reportgen.errors import LayerError
from reportgen.inspection.hooks import (
    capture_input, capture_outputs, count_hooks, eval_mode, frozen_params, module_signature,
)
from reportgen.inspection.layers import (
    classifier_layer, describe_layers, first_conv, last_conv, resolve_layer,
)
from reportgen.preprocess import PixelModel, Preprocessing


def test_resolve_layer_by_dotted_name_with_suggestions():
    m = make_tiny_cnn()
    assert resolve_layer(m, "features.3") is m.features[3]
    with pytest.raises(LayerError) as e:
        resolve_layer(m, "feature.3")
    assert "features.3" in str(e.value) and "reportgen layers" in str(e.value)
    assert first_conv(m) == "features.0" and last_conv(m) == "features.6" and classifier_layer(m) == "classifier"


def test_describe_layers_shapes_and_params():
    m = make_tiny_cnn()
    info = {i.name: i for i in describe_layers(m, torch.zeros(1, 3, 32, 32))}
    assert info["features.0"].output_shape == (8, 32, 32)
    assert info["features.3"].params == 8 * 16 * 9 + 16
    assert info["classifier"].output_shape == (4,)
    assert count_hooks(m) == 0


def test_hook_managers_clean_up_even_on_error():
    m = make_tiny_cnn()
    m.train()
    sig = module_signature(m)
    with pytest.raises(RuntimeError):
        with eval_mode(m), frozen_params(m), capture_outputs({"f3": m.features[3]}) as out, \
                capture_input(m.classifier) as inp:
            assert not m.training and not any(p.requires_grad for p in m.parameters())
            m(torch.rand(2, 3, 16, 16))
            assert out["f3"].shape == (2, 16, 8, 8) and inp["input"].shape == (2, 16)
            raise RuntimeError("boom")
    assert count_hooks(m) == 0 and module_signature(m) == sig and m.training
    assert all(p.requires_grad for p in m.parameters())


def test_pixel_model_normalises_like_torchvision():
    from torchvision.transforms.functional import normalize

    pre = Preprocessing(resize=None, input_size=16, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4))
    m = make_tiny_cnn()
    x = torch.rand(2, 3, 16, 16)
    ref = m(normalize(x, pre.mean, pre.std))
    assert torch.allclose(PixelModel(m, pre)(x), ref, atol=1e-6)


def test_preprocessing_resize_and_centre_crop():
    pre = Preprocessing(resize=32, input_size=24)
    a = np.zeros((40, 80, 3), np.uint8)
    a[:, 38:42] = 255  # a vertical line in the centre survives the centre crop
    out = pre.pil_to_array(Image.fromarray(a))
    assert out.shape == (24, 24, 3)
    assert out[:, 11:13].mean() > 100 and out[:, :4].mean() < 5
    small = pre.pil_to_array(Image.new("RGB", (5, 7)))
    assert small.shape == (24, 24, 3)


def test_cache_roundtrip_and_refuses_code(tmp_path):
    c = Cache(tmp_path / "new", [tmp_path / "old"])
    key = digest("x", {"b": 1, "a": 2})
    assert key == digest("x", {"a": 2, "b": 1})
    c.put(key, {"arr": np.arange(3)})
    assert c.get(key)["arr"].tolist() == [0, 1, 2]

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = digest("evil")
    p = tmp_path / "new" / bad[:2] / f"{bad}.pkl"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(pickle.dumps(Evil()))
    assert c.get(bad) is None  # refused, treated as a miss


def test_cache_lives_in_the_user_cache_dir_and_is_capped(tmp_path, monkeypatch):
    from reportgen.cache import default_cache_dir, parse_size

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "reportgen"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "reportgen"
    assert parse_size("2G") == 2 * 1024**3 and parse_size("500M") == 500 * 1024**2 and parse_size("0") == 0
    with pytest.raises(ValueError):
        parse_size("lots")

    c = Cache(tmp_path / "c", max_bytes=10_000)
    keys = [digest("k", i) for i in range(5)]
    for i, k in enumerate(keys):
        c.put(k, np.full(1000, i, np.uint8))  # ~1.2 kB each
        p = c._path(c.dir, k)
        os.utime(p, (1000 + i, 1000 + i))
    assert (tmp_path / "c" / "CACHEDIR.TAG").is_file()
    assert c.get(keys[0]) is not None  # used now: becomes the most recent
    c.max_bytes = 3 * c._path(c.dir, keys[0]).stat().st_size
    assert c.trim() == 2
    left = {k for k in keys if c._path(c.dir, k).is_file()}
    assert left == {keys[0], keys[3], keys[4]}  # the least recently used went first
    (tmp_path / "c" / "notes.txt").write_text("mine")  # a foreign file is never touched
    n, b = c.clear()
    assert n == 3 and b > 0 and c.entries() == []
    assert (tmp_path / "c" / "notes.txt").read_text() == "mine"
