"""The attention section: runs on a tiny ViT (torchvision, random init) and the shipped demo ViT, says unsupported on a
CNN, writes only declared numbers, leaves no hook behind."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import CLASSES
from torchvision.models import VisionTransformer

from reportgen import registry
from reportgen.build import UNSUPPORTED, run_technique
from reportgen.inspection.hooks import count_hooks, module_signature
from reportgen.report import Figure, Grid, Note, Row, iter_images
from reportgen.results_schema import undeclared


def tiny_vit32():
    torch.manual_seed(0)
    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                             num_classes=len(CLASSES)).eval()


def test_section_on_tiny_vit(make_ctx, image_dir):
    model = tiny_vit32()
    ctx = make_ctx(model, image_dir, class_names=CLASSES, overrides={"attention": {"max_images": 3}})
    hooks, sig = count_hooks(model), module_signature(model)
    sec = run_technique(ctx, registry.get("attention"), strict=True)
    assert sec.error is None and UNSUPPORTED not in sec.results
    assert count_hooks(model) == hooks == 0 and module_signature(model) == sig
    r = sec.results
    assert r["grid"] == [4, 4] and r["prefix_tokens"] == 1 and r["heads"] == 2 and r["patch_px"] == 8
    assert r["attention_modules"] == ["encoder.layers.encoder_layer_0.self_attention",
                                      "encoder.layers.encoder_layer_1.self_attention"]
    assert len(r["images"]) == 3 and all(0.2 - 1e-6 <= im["rollout_top20_mass"] <= 1 for im in r["images"])
    assert len(r["mean_attention_distance_px"]) == 2 and len(r["mean_attention_distance_px"][0]) == 2
    # one forward+backward pass for the explained images, then one forward pass per batch for the distances
    n_dist = -(-r["distance_images"] // ctx.batch_size)
    assert r["passes"] == {"forward": 1 + n_dist, "backward": 1}
    assert "position_similarity" in r
    assert not undeclared("attention", r)
    figs = [b for x in sec.blocks for b in (x.blocks if isinstance(x, Row) else [x]) if isinstance(b, Figure)]
    assert len(figs) == 2 and all(f.image.data[:4] == b"\x89PNG" for f in figs)
    grids = [b for b in sec.blocks if isinstance(b, Grid)]
    assert len(grids) == 2 and len(grids[0].items) == 9
    assert len(grids[1].items) == 1 * (1 + 2)  # minimal: one image with its 2 heads
    assert all(im.array is not None or im.data for im in iter_images(sec.blocks))


def test_section_on_cnn_is_unsupported(ctx):
    sec = run_technique(ctx, registry.get("attention"), strict=True)
    assert "self-attention" in sec.results[UNSUPPORTED]
    assert any(isinstance(b, Note) and b.kind == "warning" for b in sec.blocks)
    assert count_hooks(ctx.model) == 0


def test_section_on_demo_vit(make_ctx):
    from reportgen import demo
    from reportgen.demo import vit
    from reportgen.preprocess import Preprocessing

    if not vit.VIT_WEIGHTS_PATH.is_file():
        pytest.skip("demo ViT weights not built")
    pre = Preprocessing(resize=28, input_size=28, mean=demo.MEAN, std=demo.STD, source="demo")
    model = vit.build_model()
    ctx = make_ctx(model, demo.images_dir(), class_names=demo.labels(), pre=pre, general={"max_images": 40})
    sec = run_technique(ctx, registry.get("attention"), strict=True)
    r = sec.results
    assert r["grid"] == [7, 7] and r["patch_px"] == 4
    # the rollout's top fifth of patches holds more than a fifth of its mass (0.27-0.35 on 30 demo images)
    assert min(im["rollout_top20_mass"] for im in r["images"]) > 0.22
    assert not r["zero_gradient_maps"]
    assert count_hooks(model) == 0


def test_demo_arch_vit_loads_as_shipped_and_classifies():
    from click.testing import CliRunner

    from reportgen import demo
    from reportgen.cli import main
    from reportgen.demo import vit
    from reportgen.loading import load_model

    assert "--arch" in CliRunner().invoke(main, ["demo", "--help"]).output
    if not vit.VIT_WEIGHTS_PATH.is_file():
        pytest.skip("demo ViT weights not built")
    loaded = load_model(demo.DEMO_ARCHS["vit"][0])
    assert loaded.preprocessing.size == 28 and loaded.class_names == demo.labels()
    state = torch.load(vit.VIT_WEIGHTS_PATH, weights_only=True)
    assert all(v.dtype == torch.float32 for v in state.values())
    from PIL import Image

    files = sorted(demo.images_dir().glob("*/*.png"))
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB"), dtype=np.float32)).permute(2, 0, 1)
                     for f in files]) / 255
    x = (x - torch.tensor(demo.MEAN).view(1, 3, 1, 1)) / torch.tensor(demo.STD).view(1, 3, 1, 1)
    y = torch.tensor([int(f.parent.name.split("_")[0]) for f in files])
    with torch.inference_mode():
        acc = (loaded.model(x).argmax(1) == y).float().mean().item()
    assert acc >= 0.8  # the 300 shipped test-set images (TRAINING.md has the full test-set accuracy)
