"""Inversion, texture, Gram, style transfer and fast style: the shared machinery and the five sections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import CLASSES

from reportgen import optvis
from reportgen.inspection.activations import activations, block_layers, spread_layers
from reportgen.inspection.hooks import count_hooks, module_signature
from reportgen.synthesis.nearest_neighbour import synthesize_nn
from reportgen.optvis import objectives as O
from reportgen.synthesis.style import ASSETS


def test_gram_matrix_hand_computed_symmetric_psd():
    f = torch.tensor([[[[1.0, 2.0], [0.0, -1.0]], [[3.0, 0.0], [1.0, 1.0]]]])  # 1 x 2 x 2 x 2
    g = O.gram_matrix(f)[0]
    a, b = f[0, 0].flatten(), f[0, 1].flatten()
    expect = torch.tensor([[a @ a, a @ b], [b @ a, b @ b]]) / 4
    assert torch.allclose(g, expect)
    rnd = O.gram_matrix(torch.randn(3, 5, 4, 6, generator=torch.Generator().manual_seed(0)))
    assert torch.allclose(rnd, rnd.transpose(1, 2), atol=1e-6)
    assert torch.linalg.eigvalsh(rnd).min() > -1e-5


@pytest.mark.parametrize("beta", [2.0, 1.5])
def test_tv_constant_zero_and_gradient_matches_finite_differences(beta):
    const = torch.full((1, 3, 6, 6), 0.3)
    assert float(O.tv_beta(const, beta)) == pytest.approx(0.0, abs=1e-7)
    x = torch.rand(1, 2, 5, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64).requires_grad_(True)
    O.tv_beta(x, beta).sum().backward()
    num = torch.zeros_like(x)
    eps = 1e-6
    with torch.no_grad():
        for i in range(x.numel()):
            d = torch.zeros(x.numel(), dtype=torch.float64)
            d[i] = eps
            d = d.view_as(x)
            num.view(-1)[i] = (O.tv_beta(x + d, beta) - O.tv_beta(x - d, beta)).sum() / (2 * eps)
    assert torch.allclose(x.grad, num, atol=1e-5)


def test_activations_leave_no_hook_and_are_pre_inplace(tiny_model):
    x = torch.rand(2, 3, 32, 32) - 0.5
    before = module_signature(tiny_model)
    acts = activations(tiny_model, ["features.0", "features.3"], x)
    # features.0 (conv) is followed by ReLU(inplace=True): the captured map must keep its negative values
    assert (acts["features.0"] < 0).any()
    assert torch.allclose(acts["features.0"], tiny_model.features[0](x))
    assert count_hooks(tiny_model) == 0 and module_signature(tiny_model) == before
    assert not acts["features.0"].requires_grad


def test_block_layers_are_post_activation(tiny_model):
    assert block_layers(tiny_model) == ["features.1", "features.4", "features.7"]
    assert spread_layers(tiny_model)[-1] == "features.7"


def test_fourier_param_roundtrip_and_lbfgs_on_channels_last(tiny_model):
    x = torch.rand(2, 3, 16, 20, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    p = optvis.param.fourier_image(init=x)
    assert torch.allclose(p.image(), x, atol=1e-4)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).to(memory_format=torch.channels_last)
    target = activations(model, ["1"], torch.rand(1, 3, 16, 16))["1"]
    res = optvis.render(model, -O.feature_loss("1", target), optvis.pixel_image(1, 16, "uniform"),
                        optimizer="lbfgs", steps=15, lr=1.0)
    assert res.history[-1, 0] > res.history[0, 0]


def test_nn_synthesis_copies_source_colours_and_histogram():
    rng = np.random.default_rng(0)
    palette = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [240, 240, 240]], dtype=np.uint8)
    src = palette[(np.add.outer(np.arange(32), np.arange(32)) // 3 + rng.integers(0, 2, (32, 32))) % 4]
    out, info = synthesize_nn(src, 40, levels=2, seed=0)
    assert out.shape == (40, 40, 3)
    src_colours = {tuple(c) for c in src.reshape(-1, 3)}
    assert {tuple(c) for c in out.reshape(-1, 3)} <= src_colours
    hs = np.array([(src == c).all(-1).mean() for c in palette])
    ho = np.array([(out == c).all(-1).mean() for c in palette])
    assert 0.5 * np.abs(hs - ho).sum() < 0.15


def _ctx(make_ctx, tiny_model, image_dir, **over):
    return make_ctx(tiny_model, image_dir, class_names=CLASSES, overrides=over)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_style_loss_decreases_with_lbfgs_and_adam(make_ctx, tiny_model, image_dir, optimizer):
    from reportgen.synthesis.style import gram_targets, relative_gram_errors, style_objective, synthesize

    ctx = _ctx(make_ctx, tiny_model, image_dir)
    layers = ["features.1", "features.4"]
    style = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    tg = gram_targets(ctx, layers, style)
    start = ctx.images.batch([0])
    e0 = relative_gram_errors(ctx, layers, start, tg).sum()
    res = synthesize(ctx, style_objective(layers, tg, 1.0), start, optimizer=optimizer, steps=20)
    assert res.improved().all()
    assert relative_gram_errors(ctx, layers, res.images, tg).sum() < e0


def test_transform_net_size_and_training_lowers_held_out_style_loss(make_ctx, tiny_model, image_dir):
    from reportgen.synthesis.style import gram_targets, style_objective
    from reportgen.synthesis.transformnet import TransformNet, perceptual_loss, train

    net = TransformNet(width=8, res_blocks=1)
    assert net(torch.rand(2, 3, 30, 22)).shape == (2, 3, 30, 22)
    ctx = _ctx(make_ctx, tiny_model, image_dir)
    layers = ["features.1", "features.4"]
    tg = gram_targets(ctx, layers, torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5)))
    data, held = ctx.images.batch(list(range(2, 12))), ctx.images.batch([0, 1])

    def loss_fn(x, y):
        return perceptual_loss(ctx.pixel_model, ctx.model,
                               lambda ct: style_objective(layers, tg, 10.0, content=("features.4", ct)),
                               layers, "features.4", x, y)

    torch.manual_seed(0)
    with torch.no_grad():
        before = float(loss_fn(held, net(held)).mean())
    info = train(net, loss_fn, data, iterations=40, batch=2, lr=3e-3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        after = float(loss_fn(held, net(held)).mean())
    assert after < before
    assert info["losses"][-5:].mean() < info["losses"][:5].mean()
    assert count_hooks(tiny_model) == 0


def test_shipped_assets_have_sources_and_licences():
    for kind in ("styles", "textures"):
        files = sorted((ASSETS / kind).glob("*.jpg"))
        assert len(files) == 3
        text = (ASSETS / kind / "SOURCES.txt").read_text()
        for f in files:
            assert f.name in text and f.stat().st_size < 150_000
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    lic = (root / "THIRD_PARTY_LICENSES.md").read_text()
    assert "fashion-mnist" in lic.lower() and "CC0" in lic and "public domain" in lic
    assert "MIT License" in (root / "LICENSE").read_text()


def test_style_and_texture_folders_are_options(make_ctx, tiny_model, image_dir, tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from reportgen.cli import main
    from reportgen.synthesis.style import source_images

    help_text = CliRunner().invoke(main, ["build", "--help"]).output
    assert "--style-images" in help_text and "--texture-images" in help_text
    for k in range(3):
        Image.fromarray(np.full((20, 30, 3), 60 * k, np.uint8)).save(tmp_path / f"s{k}.png")
    ctx = make_ctx(tiny_model, image_dir, class_names=CLASSES, general={"style_images": str(tmp_path)})
    imgs, where = source_images(ctx, "styles", 2, 16)
    assert [s.name for s in imgs] == ["s0", "s2"] and imgs[0].image.shape == (3, 16, 24)
    assert "folder given" in where
    shipped, where = source_images(ctx, "textures", 3, 16, square=True)
    assert [s.name for s in shipped] == ["brick", "grass", "gravel"] and "shipped" in where


@pytest.mark.shared
def test_mobilenet_v2_layer_choice(shared_dir):
    import importlib.util

    spec = importlib.util.spec_from_file_location("mnv2_build", shared_dir / "models/mobilenet_v2_imagenet/build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.build()
    assert spread_layers(model) == ["features.4", "features.9", "features.13", "features.18"]
    acts = activations(model, ["features.4", "features.18"], torch.rand(1, 3, 96, 96))
    assert acts["features.18"].shape[1] == 1280 and count_hooks(model) == 0
