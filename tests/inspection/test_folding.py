"""BatchNorm folding (reportgen.inspection.folding): same logits and input gradients, the user's model untouched."""

from __future__ import annotations

import torch
from torch import nn

from reportgen import attribution as A
from reportgen.inspection.folding import fold_batchnorm
from reportgen.inspection.hooks import count_hooks


class SameConv(nn.Conv2d):
    """A user Conv2d subclass (TensorFlow-style padding), as real checkpoints ship."""

    def forward(self, x):
        return super().forward(nn.functional.pad(x, (0, 1, 0, 1)))


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(SameConv(3, 8, 3, stride=2, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(8)
        self.shared = nn.Conv2d(8, 8, 1)  # its output feeds a BatchNorm AND the residual: must not fold
        self.bn_shared = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(self.bn_a(self.a(x)))
        s = self.shared(x)
        x = torch.relu(self.bn_shared(s)) + s
        return self.head(x.mean((2, 3)))


def _trained_stats(m: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.3)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
    return m.eval()


def test_folding_keeps_logits_and_input_gradients():
    torch.manual_seed(0)
    m = _trained_stats(BNNet()).double()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    f, n = fold_batchnorm(m)
    assert n == 2  # stem and a; bn_shared's conv output is also used by the residual
    x = torch.rand(3, 3, 17, 17, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(m(x), f(x), atol=1e-10)
    assert torch.allclose(A.gradient(m, x, [0, 3, 4]), A.gradient(f, x, [0, 3, 4]), atol=1e-10)
    # the user's model is untouched: same weights, same BatchNorms, no hooks, still usable by name
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert isinstance(m.stem[1], nn.BatchNorm2d) and count_hooks(m) == 0
    assert not any(p.requires_grad for p in f.parameters())
    # BatchNorm modules are gone from the folded graph (except the one that could not fold)
    folded_norms = [n for n, mod in f.named_modules() if isinstance(mod, nn.BatchNorm2d)]
    called = {node.target for node in f.graph.nodes if node.op == "call_module"}
    assert called & set(folded_norms) == {"bn_shared"}


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.bn, self.fc = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2)

    def forward(self, x):
        y = self.bn(self.c(x))
        if y.mean() > 0:  # fx cannot trace a branch on a value
            y = y * 2
        return self.fc(y.mean((2, 3)))


def test_untraceable_or_plain_models_come_back_unchanged():
    m = DataDependent().eval()
    assert fold_batchnorm(m) == (m, 0)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    assert fold_batchnorm(plain)[1] == 0


def test_context_output_model_is_folded_and_pixel_model_is_not(make_ctx, image_dir):
    m = _trained_stats(BNNet())
    ctx = make_ctx(m, image_dir)
    om = ctx.output_model
    assert om is not ctx.pixel_model and om is ctx.output_model  # built once per run
    x = ctx.to_device(ctx.images.batch([0, 1]))
    with torch.no_grad():
        assert torch.allclose(om(x), ctx.pixel_model(x), atol=1e-5)
    assert isinstance(ctx.model.stem[1], nn.BatchNorm2d)


def test_a_layer_is_read_from_the_folded_model_only_where_it_survives(make_ctx, image_dir):
    from reportgen import attribution as A

    ctx = make_ctx(_trained_stats(BNNet()), image_dir)
    m, layer = ctx.output_model_with("stem.2")  # the ReLU6 after a folded pair: still called
    assert m is ctx.output_model and layer is not ctx.layer("stem.2")
    m2, layer2 = ctx.output_model_with("stem.1")  # the folded BatchNorm: only the user's model has it
    assert m2 is ctx.pixel_model and layer2 is ctx.layer("stem.1")
    x = ctx.to_device(ctx.images.batch([0, 1]))
    sel = [A.unit_target([3, 5], [(2, 2), (4, 1)]), A.class_target([0, 1])]
    for rule in ("guided", "deconvnet"):
        got, _ = A.rule_gradients(m, x, sel, rule, layer=layer)
        ref, _ = A.rule_gradients(ctx.pixel_model, x, sel, rule, layer=ctx.layer("stem.2"))
        for g, r in zip(got, ref):
            assert torch.allclose(g, r, atol=1e-5 * float(r.abs().max()) + 1e-7)


class StdConv(nn.Conv2d):
    """Weight standardisation (as timm's StdConv2d): the forward rescales the weights, so folding a BatchNorm's
    scale into them would be undone."""

    def forward(self, x):
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return nn.functional.conv2d(x, w, self.bias, self.stride, self.padding)


def test_a_fold_that_changes_the_outputs_is_refused():
    m = _trained_stats(nn.Sequential(StdConv(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                                     nn.LazyLinear(2)))
    x = torch.rand(2, 3, 9, 9)
    m(x)  # materialise the lazy layer
    blind, n = fold_batchnorm(m)
    assert n == 1  # without an example the fold is taken on trust ...
    with torch.no_grad():
        assert not torch.allclose(blind(x), m(x), atol=1e-4)  # ... and would be wrong here
    assert fold_batchnorm(m, example=x) == (m, 0)  # with one, the wrong copy is refused
    good = _trained_stats(BNNet())
    assert fold_batchnorm(good, example=torch.rand(2, 3, 17, 17))[1] == 2  # a right one is kept
