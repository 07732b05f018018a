"""Layer layouts (NCHW, NHWC, tokens with extra tokens, model outputs), accepted input sizes, default blocks."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision import models as tvm

from reportgen.inspection.hooks import capture_outputs, count_hooks
from reportgen.inspection.layout import detect, first_tensor, split
from reportgen.inspection.probe import probe_sizes, trace_layouts
from reportgen.preprocess import PixelModel, Preprocessing


def test_token_sequence_with_class_and_register_tokens_becomes_the_patch_grid():
    b, h, w, c = 2, 4, 6, 5
    grid = torch.randn(b, c, h, w)
    extra = torch.randn(b, 3, c)  # class + distillation + one register token
    tokens = torch.cat([extra, grid.flatten(2).transpose(1, 2)], 1)  # B x (3 + h*w) x C, row-major patches
    lay = detect(tokens, (32, 48))
    assert (lay.kind, lay.grid, lay.extra, lay.channels) == ("tokens", (4, 6), 3, 5)
    g, e = split(tokens, lay)
    assert torch.equal(g, grid) and torch.equal(e, extra)


def test_channels_last_and_channels_first_maps():
    x = torch.randn(2, 7, 7, 96)  # Swin stage output, 224 input
    lay = detect(x, (224, 224))
    assert (lay.kind, lay.grid, lay.channels) == ("nhwc", (7, 7), 96)
    assert torch.equal(split(x, lay)[0], x.permute(0, 3, 1, 2))
    y = torch.randn(2, 96, 7, 7)
    assert detect(y, (224, 224)).kind == "nchw"
    # ambiguous (C equals the side): a LayerNorm / Linear acts on the last dimension -> channels-last
    z = torch.randn(1, 7, 7, 7)
    assert detect(z, (224, 224), nn.LayerNorm(7)).kind == "nhwc"
    assert detect(z, (224, 224), nn.Conv2d(7, 7, 1)).kind == "nchw"
    # attention scores (B, heads, N, d) are not a spatial grid
    assert not detect(torch.randn(1, 3, 197, 64), (224, 224)).spatial


def test_model_output_objects_and_tuples_give_their_tensor():
    t = torch.randn(1, 5, 8)

    class Out(dict):
        pass

    assert first_tensor((t, None)) is t
    assert first_tensor(Out(last_hidden_state=t, pooler_output=torch.zeros(1))) is t


class _ReturnsOutput(nn.Module):
    """A block returning a model-output-like mapping (Hugging Face style)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)

    def forward(self, x):
        class Out(dict):
            pass

        return Out(last_hidden_state=self.proj(x))


def test_capture_outputs_handles_model_output_objects_with_gradients():
    m = _ReturnsOutput()
    x = torch.randn(2, 5, 8, requires_grad=True)
    with capture_outputs({"m": m}, detach=False, clone=False) as store:
        out = m(x)["last_hidden_state"].sum()
    (g,) = torch.autograd.grad(out, store["m"])
    assert g.shape == (2, 5, 8)
    assert count_hooks(m) == 0


def _tiny_vit(size=32):
    torch.manual_seed(0)
    return tvm.VisionTransformer(image_size=size, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                                 mlp_dim=32, num_classes=3).eval()


def _pm(model, size):
    return PixelModel(model, Preprocessing(resize=None, input_size=size))


def test_probe_finds_fixed_minimum_and_free_input_sizes():
    vit = _tiny_vit()
    s = probe_sizes(_pm(vit, 32), 32)
    assert s.kind == "fixed" and s.fit_side(20) == 32 and s.fit(torch.rand(1, 3, 20, 20)).shape[-1] == 32

    class NeedsMin(nn.Module):  # an explicit minimum of 20 px, like Inception v3's 75
        def forward(self, x):
            if x.shape[-1] < 20:
                raise RuntimeError("too small")
            return x.mean((2, 3))

    s = probe_sizes(NeedsMin(), 64)
    assert (s.kind, s.minimum) == ("minimum", 20)
    assert s.accepts(40) and not s.accepts(19)
    free = probe_sizes(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten()), 32)
    assert free.kind == "any" and free.fit(torch.rand(1, 3, 17, 17)).shape[-1] == 17


def test_default_block_is_the_last_encoder_block_not_the_patch_embedding():
    vit = _tiny_vit()
    p = trace_layouts(vit, torch.rand(1, 3, 32, 32))
    assert p.default_block() == "encoder.layers.encoder_layer_1"
    assert "conv_proj" in p.stem()
    assert p.default_layer("conv_proj") == "encoder.layers.encoder_layer_1"
    assert p.layout("encoder.layers.encoder_layer_1").describe().startswith("token sequence")


def test_default_layer_of_a_cnn_stays_its_last_convolution_and_aux_heads_are_not_called():
    torch.manual_seed(0)
    r = tvm.resnet18(num_classes=3).eval()
    p = trace_layouts(r, torch.rand(1, 3, 64, 64))
    assert p.default_block() == "layer4"
    assert p.default_layer("layer4.1.conv2") == "layer4.1.conv2"

    class WithAux(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU())
            self.aux = nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU())
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            a = self.body(x)
            if self.training:
                a = self.aux(a)
            return self.fc(a.mean((2, 3)))

    m = WithAux().train()
    q = trace_layouts(m, torch.rand(1, 3, 16, 16))
    assert "aux" not in q.called and "aux.0" not in q.called and q.default_block() == "body"
    assert m.training  # flags restored


@pytest.mark.parametrize("kind", ["swin", "convnext"])
def test_default_block_of_small_swin_and_convnext_is_the_last_stage(kind):
    torch.manual_seed(0)
    if kind == "swin":
        m = tvm.SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[1, 2], num_heads=[1, 1],
                                window_size=[2, 2], num_classes=3).eval()
    else:
        m = tvm.ConvNeXt([tvm.convnext.CNBlockConfig(8, 16, 1), tvm.convnext.CNBlockConfig(16, None, 1)],
                         num_classes=3).eval()
    p = trace_layouts(m, torch.rand(1, 3, 32, 32))
    block = p.default_block()
    assert block.startswith("features.3") or block == "features"
    assert not block.startswith("features.0")
    if kind == "swin":
        assert p.layout("features.3").kind == "nhwc"


def test_describe_layers_states_each_layout():
    from reportgen.inspection.layers import describe_layers

    infos = {i.name: i for i in describe_layers(_tiny_vit(), torch.rand(1, 3, 32, 32))}
    assert infos["conv_proj"].layout == "NCHW 4x4"
    assert infos["encoder.layers.encoder_layer_0"].layout == "tokens 1+4x4"
    assert infos["heads"].layout == "vector"
