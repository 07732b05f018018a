"""reportgen.attribution.incremental: exact incremental inference for occlusion, layer type by layer type, against
the independent reference, the full forward pass of every occluded copy (``model(x_occluded)``). The tiny models
end in a feature map, not in pooled logits, so every output position of every copy is compared; the patches are
random (not a constant fill), non-square and placed at the corners and edges, several per pass. ``stats`` pins
which layers run on the changed region only and which fall back to whole copies (the documented locality proof)."""

from __future__ import annotations

import operator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import occluded_copies

from reportgen.attribution.incremental import IncrementalOccluder, Unsupported, occlusion_logits

torch.set_num_threads(1)

H, W = 11, 13


def _positions(h, w, ph, pw):
    """Corners, edges and an inner position of an ``h`` x ``w`` map for a ``ph`` x ``pw`` patch."""
    ys = [0, 0, h - ph, h - ph, 0, h - ph, 3, 1]
    xs = [0, w - pw, 0, w - pw, 4, 2, 5, w - pw - 1]
    return torch.tensor(ys), torch.tensor(xs)


def _close(got, ref):
    if isinstance(ref, (tuple, list)):
        assert isinstance(got, (tuple, list)) and len(got) == len(ref)
        for g, r in zip(got, ref):
            _close(g, r)
        return
    assert isinstance(got, torch.Tensor) and got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def _check(model, c=3, size=(H, W), patch=(3, 4), tau=0.8, seed=0, twice=True):
    """Incremental outputs of occluded copies == ``model`` on the written-out copies; returns the occluder."""
    model = model.eval()
    if isinstance(model, torch.fx.GraphModule):  # a graph built by hand: as it is, not traced again
        occ = IncrementalOccluder(model, tau)
    else:
        occ, why = IncrementalOccluder.build(model, tau)
        assert occ is not None, why
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(1, c, *size, generator=g)
    ys, xs = _positions(*size, *patch)
    p = torch.randn(len(ys), c, *patch, generator=g)
    with torch.no_grad():
        ref = model(occluded_copies(img, ys, xs, p))
        base = occ.base(img)
        got = occ.logits(base, ys, xs, p)
        _close(got, ref)
        first = dict(occ.stats)
        if twice:  # the original's activations are left as they were: a second pass (other order) is exact too
            got2 = occ.logits(base, ys.flip(0), xs.flip(0), p.flip(0))
            _close(got2, ref.flip(0) if isinstance(ref, torch.Tensor) else [r.flip(0) for r in ref])
            assert occ.stats == {k: 2 * v for k, v in first.items()}
            occ.stats = first  # the counts of one pass
        unocc = model(img)
        same = ref if isinstance(ref, torch.Tensor) else ref[0]
        assert (same - (unocc if isinstance(unocc, torch.Tensor) else unocc[0])).abs().max() > 1e-4  # not vacuous
    return occ


def _all_local(occ, n_ops):
    """Every layer after the input ran on the changed region; only the output was materialised."""
    assert occ.stats == {"incremental_ops": n_ops, "full_ops": 1}, occ.stats


# ---- sliding windows: convolutions


@pytest.mark.parametrize("conv", [
    nn.Conv2d(3, 4, 3),
    nn.Conv2d(3, 4, 3, padding=1),
    nn.Conv2d(3, 4, (3, 5), stride=(1, 2), padding=(2, 0)),
    nn.Conv2d(3, 4, (2, 3), stride=(2, 1), padding=(0, 2), dilation=(2, 1), bias=False),
    nn.Conv2d(3, 6, 3, stride=2, padding=3, dilation=(1, 3), groups=3),
    nn.Conv2d(3, 4, 1, stride=3),
    nn.Conv2d(3, 4, 4, stride=3, padding=1),
])
def test_convolution_module_is_exact_and_local(conv):
    """A Conv2d (any kernel shape, stride, padding, dilation, groups, bias) on the changed region equals the full
    convolution of every copy, and runs incrementally (the region stays under ``tau`` with ``tau`` = 1)."""
    torch.manual_seed(0)
    occ = _check(nn.Sequential(conv), size=(14, 17), patch=(3, 2), tau=1.0)
    _all_local(occ, 1)


@pytest.mark.parametrize("patch", [(1, 1), (5, 2), (2, 6)])
def test_stacked_strided_convolutions_with_growing_cones(patch):
    """Three strided convolutions: the changed region grows and is clipped at the borders, exactly."""
    torch.manual_seed(1)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Conv2d(4, 4, (3, 2), stride=(1, 2), padding=(2, 1),
                                                                         dilation=2),
                      nn.Conv2d(4, 2, 2, stride=1, padding=1))
    occ = _check(m, size=(15, 18), patch=patch, tau=1.0)
    _all_local(occ, 3)


def test_reflect_padded_convolution_falls_back_exactly():
    """A convolution that does not pad with zeros is not a local zero-padded window: whole copies, exact."""
    torch.manual_seed(2)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), nn.ReLU())
    occ = _check(m, tau=1.0)
    assert occ.stats == {"incremental_ops": 0, "full_ops": 3}  # the input materialised, the conv, the ReLU after it
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"))
    _check(m, tau=1.0)


# ---- pooling


@pytest.mark.parametrize("pool", [
    nn.MaxPool2d(2),
    nn.MaxPool2d(3, 2, 1),
    nn.MaxPool2d((3, 2), (1, 2), (1, 0), dilation=(2, 1)),
    nn.MaxPool2d(3, 1, 1, dilation=2),
    nn.AvgPool2d(2),
    nn.AvgPool2d(3, 2, 1),
    nn.AvgPool2d((2, 3), (2, 1), (1, 0), divisor_override=5),
    nn.AvgPool2d(3, 1, 0, count_include_pad=False),
])
def test_pooling_is_exact_and_local(pool):
    """Max pooling pads with -inf (an edge window's maximum ignores the padding), average pooling counts zero
    padding; stride defaults to the kernel; dilation and divisor_override are honoured."""
    occ = _check(nn.Sequential(nn.Conv2d(3, 3, 1), pool), size=(13, 14), patch=(3, 2), tau=1.0)
    _all_local(occ, 2)


def test_max_pool_padding_is_minus_infinity():
    """All-negative activations: zero padding would win the maximum at the edges; -inf padding never does."""
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        conv.bias.fill_(-50.0)
    occ = _check(nn.Sequential(conv, nn.MaxPool2d(3, 2, 1)), size=(10, 9), patch=(2, 3), tau=1.0)
    _all_local(occ, 2)


@pytest.mark.parametrize("pool", [nn.AvgPool2d(3, 2, 1, ceil_mode=True), nn.AvgPool2d(3, 1, 1, count_include_pad=False),
                                  nn.MaxPool2d(3, 2, 1, ceil_mode=True)])
def test_pooling_not_proven_local_falls_back_exactly(pool):
    """Average pooling with ceil_mode or excluded padding (a divisor that depends on the position) and max pooling
    with ceil_mode are not windows of the padded map: they run on whole copies, and the results stay exact."""
    occ = _check(nn.Sequential(nn.Conv2d(3, 3, 1), pool), size=(12, 11), patch=(3, 2), tau=1.0)
    assert occ.stats["full_ops"] >= 1


class _PoolWithIndices(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.pool = nn.MaxPool2d(2, return_indices=True)

    def forward(self, x):
        out, idx = self.pool(self.conv(x))
        return out + idx.float() / 100


def test_max_pool_returning_indices_falls_back_exactly():
    """A max pool that also returns indices is not a 4-D activation: whole copies, exact values and indices."""
    torch.manual_seed(4)
    occ = _check(_PoolWithIndices(), tau=1.0)
    assert occ.stats["incremental_ops"] == 1


# ---- point-wise layers


def test_pointwise_modules_and_batchnorm_in_eval_run_on_the_region():
    """ReLU-family, BatchNorm (eval, running statistics), Dropout (eval), Identity: the region alone."""
    torch.manual_seed(5)
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), bn, nn.LeakyReLU(0.3, inplace=True), nn.Dropout(0.5),
                      nn.Dropout2d(0.3), nn.Identity(), nn.Tanh(), nn.ELU(), nn.Hardswish(), nn.SiLU(inplace=True))
    occ = _check(m)
    _all_local(occ, 10)


def test_batchnorm_with_batch_statistics_is_not_pointwise():
    """A BatchNorm without running statistics (or in training mode) normalises with the batch of copies: the copies
    are materialised, and the output equals the full forward pass of the same batch."""
    torch.manual_seed(6)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, track_running_stats=False))
    occ = _check(m)
    assert occ.stats["incremental_ops"] == 1
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
    occ, _ = IncrementalOccluder.build(m)
    m.train()
    g = torch.Generator().manual_seed(0)
    img, p = torch.randn(1, 3, H, W, generator=g), torch.randn(8, 3, 3, 4, generator=g)
    ys, xs = _positions(H, W, 3, 4)
    with torch.no_grad():
        ref = m(occluded_copies(img, ys, xs, p))
        got = occ.logits(occ.base(img), ys, xs, p)
    _close(got, ref)
    assert occ.stats["incremental_ops"] == 1


def test_dropout_in_training_mode_is_not_pointwise():
    """Dropout in training mode is random per element: the copies are materialised (a full op), never the region."""
    torch.manual_seed(7)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Dropout(0.5))
    occ, _ = IncrementalOccluder.build(m)
    m.train()
    with torch.no_grad():
        out = occ.logits(occ.base(torch.randn(1, 3, H, W)), torch.tensor([0, 2]), torch.tensor([1, 3]),
                         torch.randn(2, 3, 3, 4))
    assert out.shape == (2, 4, H, W)
    assert occ.stats == {"incremental_ops": 1, "full_ops": 2}  # the conv's region materialised, the dropout


class _Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        y = F.relu(y - 0.2)
        y = torch.clamp(y, min=0.1, max=0.9)
        y = F.leaky_relu(y - 0.5, 0.2)
        y = y.sigmoid()
        y = y.clamp(0.3, 0.7)
        y = torch.tanh(y * 2 - 1).contiguous()
        y = F.hardtanh(y, -0.3, 0.2).float()
        return F.gelu(y)


def test_pointwise_functions_and_methods_run_on_the_region():
    """Functional and method point-wise ops with constant (positional or keyword) arguments run on the region."""
    torch.manual_seed(8)
    occ = _check(_Functional())
    _all_local(occ, 15)


class _SpatialClamp(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.lo = nn.Parameter(torch.randn(1, 1, H, W) * 0.3)

    def forward(self, x):
        return torch.clamp(self.conv(x), min=self.lo)


def test_pointwise_function_with_a_spatial_operand_falls_back():
    """A clamp whose bound varies over the map is not local to the patch: whole copies, exact."""
    torch.manual_seed(9)
    occ = _check(_SpatialClamp())
    assert occ.stats["incremental_ops"] == 1


# ---- residual adds and binary ops


class _Residual(nn.Module):
    def __init__(self, op=operator.add):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, (5, 1), padding=(1, 0), stride=1)
        self.c = nn.Conv2d(3, 4, (1, 5), padding=(0, 2))
        self.op = op

    def forward(self, x):
        a, b = self.a(x), self.b(x)  # b: 2 rows shorter, regions of different size and offset
        return self.op(a, torch.sigmoid(F.pad(b, (0, 0, 1, 1))) + 0.5) + self.c(x)


@pytest.mark.parametrize("op", [operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub,
                                torch.mul, torch.div])
def test_residual_binary_ops_work_on_the_union_of_both_regions(op):
    """``a op b`` of two changed activations with regions of different sizes and offsets: the union, exact."""
    torch.manual_seed(10)
    occ = _check(_Residual(op), tau=1.0)
    _all_local(occ, 8)


def test_residual_region_over_tau_falls_back():
    """Where the union covers more than ``tau`` of the map, the add runs on whole copies: still exact."""
    torch.manual_seed(10)
    occ = _check(_Residual(), tau=0.05)
    assert occ.stats["full_ops"] > 1


class _Consts(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.scale = nn.Parameter(torch.randn(4, 1, 1))
        self.shift = nn.Parameter(torch.randn(1, 4, 1, 1))
        self.sub = nn.Module()
        self.sub.gain = nn.Parameter(torch.tensor(1.7))

    def forward(self, x):
        y = self.conv(x)
        y = 2.0 - y  # the constant on the left: the order matters
        y = self.scale * y
        y = y / self.shift
        y = self.shift - y
        y = y * self.sub.gain
        y = 3 / (y * y + 1)
        return torch.div(self.scale, y)


def test_binary_ops_with_channel_constants_keep_operand_order():
    """Scalars, 0-d, C x 1 x 1 and 1 x C x 1 x 1 tensors (parameters, also of a submodule) on either side."""
    torch.manual_seed(11)
    _all_local(_check(_Consts()), 10)


class _SpatialOperand(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.pos = nn.Parameter(torch.randn(*shape))

    def forward(self, x):
        return self.conv(x) + self.pos


@pytest.mark.parametrize("shape", [(W,), (H, W), (1, H, 1), (2, 1, W), (1, 1, H, W), (1, 2, H, 1), (1, 1, 1, W),
                                   (2, H, W)])
def test_operands_that_vary_over_the_map_fall_back(shape):
    """A constant that broadcasts over rows or columns is not local to the patch: whole copies, exact."""
    torch.manual_seed(12)
    occ = _check(_SpatialOperand(shape))
    assert occ.stats["incremental_ops"] == 1


class _Broadcast(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y + y.mean((0, 2, 3), keepdim=True).expand(1, 2, H, W)


def test_binary_op_of_shapes_that_differ_falls_back():
    """``y + (1 x C x H x W from a global statistic)``: the statistic is not local, the sum is computed fully."""
    torch.manual_seed(13)
    _check(_Broadcast())


# ---- padding and functional convolutions


class _Pads(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.kind = kind

    def forward(self, x):
        y = self.conv(x)
        if self.kind == "f4":
            y = F.pad(y, (1, 2, 3, 0))
        elif self.kind == "f2":
            y = F.pad(y, (2, 1))
        elif self.kind == "kw":
            y = F.pad(y, pad=(0, 3, 1, 2), mode="constant", value=0.7)
        elif self.kind == "nd":
            y = torch.constant_pad_nd(y, (2, 0, 0, 1))
        elif self.kind == "nd2":
            y = torch.constant_pad_nd(y, [1, 3], 0.25)
        elif self.kind == "reflect":
            y = F.pad(y, (1, 2, 2, 1), "reflect")
        elif self.kind == "replicate":
            y = F.pad(y, (1, 2, 2, 1), mode="replicate")
        elif self.kind == "crop":
            y = F.pad(y, (-1, 0, 0, -2))
        elif self.kind == "six":
            y = F.pad(y, (1, 1, 1, 1, 1, 0))
        return y * 2.0


@pytest.mark.parametrize("kind", ["f4", "f2", "kw", "nd", "nd2"])
def test_constant_padding_shifts_the_region(kind):
    """Constant padding of the last two dims (2 or 4 amounts, positional or keyword, ``F.pad`` or
    ``constant_pad_nd``, any fill value) moves the changed region by (top, left): exact, incremental."""
    torch.manual_seed(14)
    occ = _check(_Pads(kind))
    _all_local(occ, 3)


@pytest.mark.parametrize("kind", ["reflect", "replicate", "crop", "six"])
def test_padding_that_is_not_a_shift_falls_back(kind):
    """Reflect / replicate padding (values copied from inside the map), negative amounts (cropping), padding of the
    channel dimension: whole copies, exact."""
    torch.manual_seed(15)
    occ = _check(_Pads(kind))
    assert occ.stats["full_ops"] > 1


class _FConv(nn.Module):
    def __init__(self, kind):
        super().__init__()
        g = 2 if kind in ("kw", "groups") else 1
        self.w = nn.Parameter(torch.randn(4, 4 // g, 3, 2) * 0.3)
        self.b = nn.Parameter(torch.randn(4))
        self.pre = nn.Conv2d(3, 4, 1)
        self.kind = kind

    def forward(self, x):
        y = self.pre(x)
        if self.kind == "pos":
            y = F.conv2d(y, self.w, self.b, (2, 1), (1, 2), (1, 2), 1)
        elif self.kind == "kw":
            y = F.conv2d(y, self.w, self.b, stride=(1, 2), padding=(2, 1), dilation=(2, 1), groups=2)
        elif self.kind == "bias_kw":
            y = F.conv2d(y, self.w, bias=self.b, stride=2)
        elif self.kind == "all_kw":
            y = F.conv2d(input=y, weight=self.w, bias=None, stride=2, padding=1, dilation=1, groups=1)
        elif self.kind == "defaults":
            y = F.conv2d(y, self.w)
        elif self.kind == "torch":
            y = torch.conv2d(y, self.w, self.b, 1, (0, 1))
        elif self.kind == "groups":
            y = F.conv2d(y, self.w, None, 1, 1, 1, 2)
        elif self.kind == "same":
            y = F.conv2d(y, self.w, self.b, padding="same")
        elif self.kind == "weight_from_x":
            y = F.conv2d(y, y[:1, :, :3, :2].permute(1, 0, 2, 3).expand(4, 1, 3, 2).contiguous(), groups=4)
        return F.relu(y)


@pytest.mark.parametrize("kind", ["pos", "kw", "defaults", "torch", "groups"])
def test_functional_convolution_slides_like_the_module(kind):
    """``F.conv2d`` / ``torch.conv2d`` with positional, keyword and default stride, padding, dilation, groups."""
    torch.manual_seed(16)
    occ = _check(_FConv(kind), size=(12, 15), patch=(2, 3), tau=1.0)
    _all_local(occ, 3)


@pytest.mark.parametrize("kind", ["same", "weight_from_x", "all_kw", "bias_kw"])
def test_functional_convolution_not_proven_local_falls_back(kind):
    """``padding='same'`` (a string), a weight computed from the (first) copy, the input or a parameter given by
    keyword: whole copies, exact."""
    torch.manual_seed(17)
    occ = _check(_FConv(kind), size=(12, 15), patch=(2, 3), tau=1.0, twice=kind != "weight_from_x")
    assert occ.stats["full_ops"] > 1


# ---- tau: the region share above which copies are materialised


def test_tau_decides_where_copies_are_materialised():
    """The same model with tau 1 (all incremental), a tau below one output's region share (that layer and every
    layer after it run on whole copies) and tau 0 (nothing incremental): the outputs are equal and exact."""
    torch.manual_seed(18)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    _all_local(_check(m, size=(10, 10), patch=(2, 2), tau=1.0), 3)
    # conv1's region is 4 x 4 = 16 % of 10 x 10, conv2's 6 x 6 = 36 %: tau 0.36 keeps both (not above), 0.35 not
    _check(m, size=(10, 10), patch=(2, 2), tau=0.36)
    ys, xs = torch.tensor([4]), torch.tensor([4])
    occ = IncrementalOccluder.build(m, 0.36)[0]
    with torch.no_grad():
        occ.logits(occ.base(torch.randn(1, 3, 10, 10)), ys, xs, torch.randn(1, 3, 2, 2))
    assert occ.stats == {"incremental_ops": 3, "full_ops": 1}
    occ = IncrementalOccluder.build(m, 0.35)[0]
    with torch.no_grad():
        occ.logits(occ.base(torch.randn(1, 3, 10, 10)), ys, xs, torch.randn(1, 3, 2, 2))
    assert occ.stats == {"incremental_ops": 2, "full_ops": 2}
    occ = _check(m, size=(10, 10), patch=(2, 2), tau=0.0)
    assert occ.stats["incremental_ops"] == 0


def test_default_tau_is_four_fifths():
    """``build`` without tau materialises a region over 80 % of the map (a 9 x 9 region of 10 x 10), not one of
    72 %."""
    torch.manual_seed(19)
    m = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1))
    occ = IncrementalOccluder.build(m)[0]
    with torch.no_grad():
        occ.logits(occ.base(torch.randn(1, 3, 10, 10)), torch.tensor([1]), torch.tensor([1]), torch.randn(1, 3, 7, 7))
    assert occ.stats == {"incremental_ops": 0, "full_ops": 2}  # 9 x 9 = 81 % > 80 %: input and conv in full
    occ = IncrementalOccluder.build(m)[0]
    with torch.no_grad():
        occ.logits(occ.base(torch.randn(1, 3, 10, 10)), torch.tensor([1]), torch.tensor([1]), torch.randn(1, 3, 6, 7))
    assert occ.stats == {"incremental_ops": 1, "full_ops": 1}  # 8 x 9 = 72 %
    occ = IncrementalOccluder(torch.fx.symbolic_trace(m))
    assert occ.tau == 0.8


# ---- graph handling: outputs, constants, in-place ops, refusals


class _TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        self.register_buffer("offset", torch.randn(1, 4, 1, 1))

    def forward(self, x):
        y = self.conv(x) + self.offset * 2  # a constant computed from a buffer: not image-dependent
        return self.fc(y.mean((2, 3))), {"map": y, "img": x}


def test_several_outputs_and_constants_computed_from_buffers():
    """Logits and a feature map in a nested output; a buffer-derived constant is taken from the original pass."""
    torch.manual_seed(20)
    m = _TwoOutputs().eval()
    occ, why = IncrementalOccluder.build(m)
    assert occ is not None, why
    g = torch.Generator().manual_seed(0)
    img, p = torch.randn(1, 3, H, W, generator=g), torch.randn(8, 3, 3, 4, generator=g)
    ys, xs = _positions(H, W, 3, 4)
    copies = occluded_copies(img, ys, xs, p)
    with torch.no_grad():
        ref = m(copies)
        got = occ.logits(occ.base(img), ys, xs, p)
    _close(got[0], ref[0])
    _close(got[1]["map"], ref[1]["map"])
    _close(got[1]["img"], copies)


class _InplaceAdd(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x).add_(1.5))


def test_inplace_op_on_a_singly_read_activation_is_exact():
    """An in-place add on an activation read only by it: the original pass must not change its stored input
    (else every copy would be shifted twice outside the patch)."""
    torch.manual_seed(21)
    _check(_InplaceAdd())


def _hand_graph(target, op="call_function", read_again=True):
    """A GraphModule built by hand (as graph passes produce them): conv, then ``target(conv, 1.5)``, then
    ``+ conv`` when ``read_again``, then a tanh."""
    torch.manual_seed(22)
    root = nn.Module()
    root.conv = nn.Conv2d(3, 2, 3, padding=1)
    g = torch.fx.Graph()
    x = g.placeholder("x")
    y = g.call_module("conv", (x,))
    z = g.call_function(target, (y, 1.5)) if op == "call_function" else g.call_method(target, (y, 1.5))
    if read_again:
        z = g.call_function(operator.add, (z, y))
    g.output(g.call_function(torch.tanh, (z,)))
    return torch.fx.GraphModule(root, g).eval()


@pytest.mark.parametrize("target", [operator.iadd, operator.imul, operator.isub, operator.itruediv])
def test_inplace_operators_in_a_graph(target):
    """``operator.iadd`` & co. (torch.fx's own tracer records ``y += 1`` as an ordinary add, graph passes need not):
    refused where the activation is read again; where it is not, the original's stored activation stays as it was
    and the copies are exact."""
    with pytest.raises(Unsupported, match=f"^{target.__name__} changes conv in place and conv is read elsewhere$"):
        IncrementalOccluder(_hand_graph(target))
    _check(_hand_graph(target, read_again=False))


def test_dunder_methods_are_not_inplace():
    """A ``y.__mul__(..)`` method call ends in an underscore but is not in place: accepted and exact."""
    gm = _hand_graph("__mul__", op="call_method")
    occ = _check(gm)
    assert occ.stats["full_ops"] > 1  # not a point-wise method it knows: whole copies


class _Alias(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.kind = kind

    def forward(self, x):
        y = self.conv(x)
        z = y.mul_(2) if self.kind == "method" else F.relu(y, inplace=True)
        return z + y


@pytest.mark.parametrize("kind, name", [("method", "mul_"), ("function", "relu")])
def test_inplace_change_of_an_activation_read_again_is_refused(kind, name):
    """``y.mul_()`` and ``F.relu(y, inplace=True)`` where ``y`` is read again: refused with the reason."""
    assert IncrementalOccluder.build(_Alias(kind).eval()) == (
        None, f"{name} changes conv in place and conv is read elsewhere")


class _TwoInputs(nn.Module):
    def forward(self, x, y):
        return x + y


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_refusals_give_the_reason():
    """Two inputs, TorchScript and untraceable models: None and the reason shown in the report."""
    assert IncrementalOccluder.build(_TwoInputs()) == (None, "the model must take exactly one input")
    scripted = torch.jit.script(nn.Sequential(nn.Conv2d(3, 2, 3)))
    assert IncrementalOccluder.build(scripted) == (None, "TorchScript model")

    class Untraceable(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x

    assert IncrementalOccluder.build(Untraceable()) == (None, "not traceable by torch.fx (TraceError)")


def test_non_4d_and_flattened_tails_are_full_forward_passes():
    """Flatten, Linear and a 3-D activation after the convolutions: materialised, then exact."""
    torch.manual_seed(23)

    class Tail(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 9 * 10, 5)

        def forward(self, x):
            y = torch.relu(self.conv(x)).flatten(2)  # B x C x HW
            return self.fc(torch.sigmoid(y).flatten(1))

    occ = _check(Tail(), size=(9, 10), patch=(2, 3))
    assert occ.stats["incremental_ops"] == 2


# ---- occlusion_logits


def test_occlusion_logits_fill_colour_window_and_batches():
    """``occlusion_logits``: a wy x wx square of the per-channel ``fill`` at each position, in passes of
    ``batch_size`` copies, float32 logits of a float64 model, in position order."""
    torch.manual_seed(24)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                      nn.Linear(4, 5)).double().eval()
    with torch.no_grad():
        m[-1].weight.mul_(30)
    occ = IncrementalOccluder.build(m)[0]
    img = torch.rand(1, 3, 12, 11, dtype=torch.float64)
    ys, xs = torch.tensor([0, 3, 9, 7, 5]), torch.tensor([6, 0, 2, 6, 4])
    fill = torch.tensor([0.9, -0.4, 0.1])
    copies = img.repeat(5, 1, 1, 1)
    for i, (y, x) in enumerate(zip(ys.tolist(), xs.tolist())):
        copies[i, :, y:y + 3, x:x + 5] = fill.view(3, 1, 1).double()
    with torch.no_grad():
        ref = m(copies)
        for bs in (1, 2, 5, 8):
            got = occlusion_logits(occ, img, ys, xs, fill, 3, 5, batch_size=bs)
            assert got.dtype == torch.float32 and got.shape == (5, 5)
            torch.testing.assert_close(got, ref.float(), atol=1e-5, rtol=1e-5)
    assert (ref - ref[:1]).abs().max() > 1e-3


# ---- the changed region: exactly the output rows / columns whose window meets the patch, clipped to the map


def _changed(a, length, k, s, p, d, n_in):
    """How many output positions of a sliding window (kernel k, stride s, padding p, dilation d) over ``n_in`` inputs
    lie from the first to the last whose window reads one of the inputs ``[a, a + length)`` (at least one), written
    out position by position, and the output size."""
    n_out = (n_in + 2 * p - d * (k - 1) - 1) // s + 1
    hit = [o for o in range(n_out) if any(a <= o * s - p + d * j < a + length for j in range(k))]
    return (hit[-1] - hit[0] + 1 if hit else 1), n_out


@pytest.mark.parametrize("k, s, p, d", [(3, 1, 1, 1), (3, 2, 1, 1), (1, 1, 0, 1), (1, 3, 0, 1), (5, 2, 3, 2),
                                        (2, 2, 0, 1), (4, 3, 1, 1), (3, 1, 0, 3)])
@pytest.mark.parametrize("where", ["top_left", "bottom_right", "inner"])
def test_changed_region_is_exactly_the_windows_that_read_the_patch(k, s, p, d, where):
    """One copy at a time: a layer runs incrementally with ``tau`` half a cell above the share of the exactly changed
    region (from the first to the last output position whose window reads the patch, clipped to the map; at least
    one) and on whole copies with ``tau`` half a cell below it, so the region is neither larger nor smaller."""
    torch.manual_seed(25)
    size, ph, pw = (13, 14), 1 if k == 1 else 2, 3
    y = {"top_left": 0, "bottom_right": size[0] - ph, "inner": 5}[where]
    x = {"top_left": 0, "bottom_right": size[1] - pw, "inner": 6}[where]
    rows, ho = _changed(y, ph, k, s, p, d, size[0])
    cols, wo = _changed(x, pw, (k + 1) // 2, 1, p // 2, d, size[1])
    cells = rows * cols
    for pool in (False, True):
        layer = (nn.MaxPool2d((k, (k + 1) // 2), (s, 1), (p, p // 2), (d, d)) if pool and 2 * p <= k and
                 2 * (p // 2) <= (k + 1) // 2 else nn.Conv2d(3, 2, (k, (k + 1) // 2), (s, 1), (p, p // 2), (d, d)))
        for tau, incremental in (((cells + 0.5) / (ho * wo), 1), ((cells - 0.5) / (ho * wo), 0)):
            occ, _ = IncrementalOccluder.build(nn.Sequential(layer).eval(), tau)
            img, patch = torch.randn(1, 3, *size), torch.randn(1, 3, ph, pw)
            with torch.no_grad():
                got = occ.logits(occ.base(img), torch.tensor([y]), torch.tensor([x]), patch)
                ref = layer(occluded_copies(img, torch.tensor([y]), torch.tensor([x]), patch))
            assert got.shape == (1, 2 if not isinstance(layer, nn.MaxPool2d) else 3, ho, wo)
            _close(got, ref)
            assert occ.stats["incremental_ops"] == incremental, (cells, occ.stats)
