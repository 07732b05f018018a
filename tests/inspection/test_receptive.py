"""Receptive fields (reportgen.inspection.receptive): known values, exactness on odd wiring, cropping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from reportgen.inspection.hooks import count_hooks, module_signature
from reportgen.inspection.receptive import (
    ReceptiveField, analytic_receptive_field, crop_field, gradient_receptive_field, interior_units,
)

from conftest import make_tiny_cnn


@pytest.mark.parametrize(
    "ctor, layer, size, jump",
    [
        (torchvision.models.vgg16, "features.28", 196, 16),  # conv5_3
        (torchvision.models.alexnet, "features.10", 163, 16),  # conv5
    ],
)
def test_known_receptive_fields(ctor, layer, size, jump):
    torch.manual_seed(0)
    model = ctor(weights=None).eval()
    g = gradient_receptive_field(model, layer, 224)
    a = analytic_receptive_field(model, layer)
    assert g.size == (size, size) and g.jump == (jump, jump) and not g.clipped
    assert a.size == (size, size) and a.jump == (jump, jump)
    assert g.origin == a.origin  # both place unit (0, 0) at the same pixels


def test_resnet18_gradient_field_sees_branches():
    # ResNet-18's last block sees 435 px; composing its layers as a chain would get this wrong
    model = torchvision.models.resnet18(weights=None).eval()
    rf = gradient_receptive_field(model, "layer4.1", 224)
    assert rf.size == (435, 435) and rf.jump == (32, 32)
    assert rf.input_size >= 448 and not rf.clipped  # grew the input until the field fitted


def test_tiny_cnn_field_and_boxes():
    model = make_tiny_cnn()
    rf = gradient_receptive_field(model, "features.6", 32)
    # conv3 -> pool2 -> conv3 -> pool2 -> conv3: 3, 4, 8, 10, 18; step 4
    assert rf.size == (18, 18) and rf.jump == (4, 4)
    a = analytic_receptive_field(model, "features.6")
    assert (a.size, a.jump, a.origin) == (rf.size, rf.jump, rf.origin)
    assert rf.box(0, 0) == (rf.origin[0], rf.origin[1], rf.origin[0] + 18, rf.origin[1] + 18)
    assert rf.box(2, 3)[0] == rf.origin[0] + 8 and rf.box(2, 3)[1] == rf.origin[1] + 12
    assert rf.clipped_box(0, 0, 32, 32) == (0, 0, rf.origin[0] + 18, rf.origin[1] + 18)


def test_field_is_exact_on_the_real_model():
    """The real (random-weight) model's gradient never leaves the box, and reaches every edge of it."""
    torch.manual_seed(1)
    model = make_tiny_cnn(seed=3)
    rf = gradient_receptive_field(model, "features.6", 32)
    y, x = 4, 3
    union = np.zeros((40, 40), dtype=bool)
    for _ in range(12):
        inp = torch.rand(1, 3, 40, 40, requires_grad=True)
        out = model.features(inp)
        (g,) = torch.autograd.grad(out[0, :, y, x].sum(), inp)
        union |= (g[0].abs().sum(0) > 0).numpy()
    rows, cols = np.flatnonzero(union.any(1)), np.flatnonzero(union.any(0))
    y0, x0, y1, x1 = rf.clipped_box(y, x, 40, 40)
    assert rows.min() == y0 and rows.max() + 1 == y1
    assert cols.min() == x0 and cols.max() + 1 == x1


class LeftPadNet(nn.Module):
    """Pads only the left/top in forward (invisible to kernel/stride/padding composition)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (1, 0, 1, 0)))


def test_gradient_method_sees_padding_in_forward():
    rf = gradient_receptive_field(LeftPadNet(), "conv", 32)
    assert rf.size == (3, 3) and rf.jump == (2, 2)
    assert rf.origin == (-1, -1)  # unit 0 sees the padded row/column -1, 0, 1
    assert analytic_receptive_field(LeftPadNet(), "conv").origin == (0, 0)  # the chain view misses it


def test_dilation_and_maxpool():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, dilation=2, padding=2), nn.ReLU(),
                          nn.MaxPool2d(3, stride=1, padding=2, dilation=2), nn.Conv2d(4, 4, 1))
    g = gradient_receptive_field(model, "3", 32)
    a = analytic_receptive_field(model, "3")
    assert g.size == a.size == (9, 9)
    assert g.origin == a.origin


class ChunkNet(nn.Module):
    """Splits channels in forward: the one-channel fast path cannot run it, the full-width one can."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 5, padding=2)
        self.head = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        p, q = self.stem(x).chunk(2, dim=1)
        return self.head(torch.cat([self.a(p), self.b(q)], 1))


def test_falls_back_to_full_width_copy():
    rf = gradient_receptive_field(ChunkNet(), "head", 32)
    assert rf.method == "gradient (full width)"
    assert rf.size == (7, 7)  # the wider branch: 3 + 5 - 1


def test_user_model_is_untouched():
    model = make_tiny_cnn()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sig = module_signature(model)
    gradient_receptive_field(model, "features.3", 32)
    assert count_hooks(model) == 0 and module_signature(model) == sig
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(p.requires_grad for p in model.parameters())


def test_crop_field_pads_at_borders():
    img = np.arange(20 * 20 * 3, dtype=np.int64).reshape(20, 20, 3).astype(np.uint8)
    rf = ReceptiveField("l", (8, 8), (4, 4), (-3, -3))
    p = crop_field(img, rf, 0, 0, fill=(1, 2, 3))
    assert p.shape == (8, 8, 3)
    assert (p[:3, :, :] == (1, 2, 3)).all() and (p[:, :3, :] == (1, 2, 3)).all()
    assert np.array_equal(p[3:, 3:], img[0:5, 0:5])
    inner = crop_field(img, rf, 2, 2)
    assert np.array_equal(inner, img[5:13, 5:13])


def test_interior_units_match_brute_force():
    rf = ReceptiveField("l", (107, 107), (16, 16), (-38, -38))
    y0, x0, y1, x1 = interior_units(rf, (14, 14), 224)
    inside = [u for u in range(14) if rf.box(u, u)[0] >= 0 and rf.box(u, u)[2] <= 224]
    assert (y0, y1) == (inside[0], inside[-1] + 1) and (x0, x1) == (y0, y1)
    assert interior_units(ReceptiveField("l", (300, 300), (32, 32), (-100, -100)), (7, 7), 224) is None


def test_growing_the_input_stops_at_the_memory_budget(monkeypatch):
    """The doubled input's pass must fit GROW_BUDGET: with a budget below ResNet-18's 224 px constant pass, the
    field is measured at 224 px only and marked clipped instead of growing to 448."""
    from reportgen.inspection import receptive

    model = torchvision.models.resnet18(weights=None).eval()
    monkeypatch.setattr(receptive, "GROW_BUDGET", 1)
    rf = gradient_receptive_field(model, "layer4.1", 224)
    assert rf.input_size == 224 and rf.clipped and rf.jump == (32, 32)


def test_a_grid_after_attention_falls_back_to_its_own_cell(make_ctx, image_dir, monkeypatch):
    """field_for: where the constant copy cannot be followed (MaxViT's attention logits overflow float64), a grid
    layer of a model with attention gets the unit's own cell (TOKEN_PATCH, stated by the patches section); a model
    without attention still reports the failure."""
    from conftest import CLASSES

    from reportgen.inspection import receptive

    class GridAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 4, stride=4)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.mix = nn.Conv2d(8, 8, 1)
            self.head = nn.Linear(8, len(CLASSES))

        def forward(self, x):
            z = self.stem(x)
            b, c, h, w = z.shape
            t = z.flatten(2).transpose(1, 2)
            t = self.attn(t, t, t, need_weights=False)[0]
            z = self.mix(t.transpose(1, 2).reshape(b, c, h, w))
            return self.head(z.mean((2, 3)))

    def fail(*a, **k):
        raise RuntimeError("non-finite gradient on the constant copy")

    monkeypatch.setattr(receptive, "gradient_receptive_field", fail)
    ctx = make_ctx(GridAttention().eval(), image_dir, class_names=CLASSES)
    rf = receptive.field_for(ctx, "mix")
    assert rf.method == receptive.TOKEN_PATCH and rf.size == (4, 4) and rf.jump == (4, 4)
    with pytest.raises(RuntimeError, match="non-finite"):
        receptive.field_for(make_ctx(make_tiny_cnn(), image_dir, class_names=CLASSES), "features.3")


def test_a_token_cell_is_shown_in_its_context_and_outlined():
    """patches.cell_in_context: 3 x 3 cells around the token's own (outlined); outside the image is pad grey."""
    from reportgen.inspection.receptive import token_patch_field
    from reportgen.techniques.patches import OUTLINE, PAD_GREY, cell_in_context

    img = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    rf = token_patch_field("blocks.3", (7, 7), 28)
    out = cell_in_context(img, rf, 0, 2)  # top row: the context above is outside the image
    assert out.shape == (12, 12, 3)
    assert tuple(out[0, 6]) == PAD_GREY and tuple(out[3, 6]) == OUTLINE and tuple(out[7, 3]) == OUTLINE
    assert (out[5:7, 5:7, 0] == img[1:3, 9:11]).all()  # the cell's inside is the image's own pixels


def test_squeeze_excitation_gates_do_not_make_the_field_global():
    """An SE gate scales channels by their global average: the field is the convolutional path's (the same as
    without the gate), not the whole image, and a stack of gates does not overflow the constant copy."""
    from torchvision.ops import SqueezeExcitation

    def net(se: bool):
        layers = []
        for _ in range(12):
            layers += [nn.Conv2d(8, 8, 3, padding=1), nn.SiLU()] + ([SqueezeExcitation(8, 2)] if se else [])
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), *layers).eval()

    a, b = net(True), net(False)
    with_se = gradient_receptive_field(a, str(len(a) - 2), 64)  # the last activation, after 13 convolutions
    plain = gradient_receptive_field(b, str(len(b) - 1), 64)
    assert with_se.size == plain.size and with_se.size[0] < 64 and not with_se.clipped
    gate = gradient_receptive_field(a, "3.fc1", 64)  # a layer inside a gate is kept: it sees the whole image
    assert gate.clipped
