"""Exact incremental occlusion (reportgen.attribution.incremental): same logits/maps as full forward passes."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.resnet import BasicBlock, Bottleneck

from reportgen import attribution as A
from reportgen.attribution.incremental import IncrementalOccluder, occlusion_logits
from reportgen.techniques.occlusion import naive_occlusion, occlusion_maps, window_positions


def _vgg():
    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

    return nn.Sequential(*block(3, 8), *block(8, 8), nn.MaxPool2d(2), *block(8, 16), nn.AvgPool2d(3, 2, 1),
                         nn.Conv2d(16, 16, 5, stride=2, padding=3, dilation=2), nn.ReLU(),
                         nn.MaxPool2d(3, 2, padding=1, ceil_mode=True),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))


def _resnet():
    down = nn.Sequential(nn.Conv2d(8, 32, 1, stride=2), nn.BatchNorm2d(32))
    return nn.Sequential(nn.Conv2d(3, 8, 7, stride=2, padding=3), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                         nn.MaxPool2d(3, 2, 1), BasicBlock(8, 8), Bottleneck(8, 8, stride=2, downsample=down),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 5))


def _mobilenet():
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU6(inplace=True),
                         InvertedResidual(8, 8, 1, 6), InvertedResidual(8, 16, 2, 6), InvertedResidual(16, 16, 1, 6),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))


class PositionalBias(nn.Module):
    """Adds a learned H x W map: not local to the patch in the sense the occluder proves, so it must fall back."""

    def __init__(self):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, 1, 24, 24))

    def forward(self, x):
        return x + self.pos + torch.flip(x, dims=[-1])


def _exotic():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), PositionalBias(),
                         nn.Conv2d(4, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 24 * 24, 3))


class DataDependent(nn.Module):
    """Python control flow on tensor values: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        y = self.conv(x)
        if y.mean() > 0:
            y = y * 2
        return self.fc(y.mean((2, 3)))


def _randomise_bn(model, scale=300.0):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    last.weight.data.mul_(scale)  # a sensitive classifier: occluding changes the logits visibly
    return model.eval()


def _reference(model, img, ys, xs, fill, w):
    outs = []
    with torch.inference_mode():
        for y, x in zip(ys.tolist(), xs.tolist()):
            c = img.clone()
            c[:, :, y:y + w, x:x + w] = fill.view(1, -1, 1, 1)
            outs.append(model(c))
    return torch.cat(outs)


@pytest.mark.parametrize("make, size, window, stride", [
    (_vgg, 48, 8, 5), (_vgg, 48, 13, 13), (_resnet, 64, 10, 7), (_resnet, 64, 3, 20), (_mobilenet, 40, 6, 4),
    (_exotic, 48, 8, 6)])
def test_incremental_logits_equal_full_forward(make, size, window, stride):
    torch.manual_seed(0)
    model = _randomise_bn(make())
    occ, why = IncrementalOccluder.build(model)
    assert occ is not None, why
    img = torch.rand(1, 3, size, size)
    pos = window_positions(size, window, stride)
    ys = torch.tensor([y for y in pos for _ in pos])
    xs = torch.tensor([x for _ in pos for x in pos])
    fill = torch.tensor([0.2, 0.5, 0.7])
    with torch.inference_mode():
        got = occlusion_logits(occ, img, ys, xs, fill, window, window, batch_size=7)
    ref = _reference(model, img, ys, xs, fill, window)
    assert got.shape == ref.shape
    assert float((got - ref).abs().max()) <= 1e-5 * max(1.0, float(ref.abs().max()))
    torch.testing.assert_close(got.softmax(1), ref.softmax(1), rtol=0, atol=1e-5)
    # the copies really differ (the test is not vacuous) and the incremental path was used
    assert (ref - ref[:1]).abs().max() > 1e-3
    assert occ.stats["incremental_ops"] > 0
    if make is _exotic:  # the positional map / flip cannot be proven local: full from there on
        assert occ.stats["full_ops"] > 0


def test_untraceable_model_is_refused_and_occlusion_still_works(make_ctx, image_dir):
    torch.manual_seed(0)
    model = DataDependent().eval()
    occ, why = IncrementalOccluder.build(model)
    assert occ is None and "fx" in why
    ctx = make_ctx(model, image_dir)
    res = occlusion_maps(ctx, [0], 8, 8, batch_size=5, fill=0.5)
    ref = naive_occlusion(ctx, 0, res[0].target, 8, 8, 0.5)
    np.testing.assert_allclose(res[0].grid, ref, atol=1e-6)
    assert res[0].method.startswith("full forward passes (not traceable")


@pytest.mark.parametrize("make", [_vgg, _resnet, _mobilenet])
def test_occlusion_maps_incremental_equal_naive(make_ctx, image_dir, make):
    torch.manual_seed(0)
    ctx = make_ctx(_randomise_bn(make(), scale=10.0), image_dir)
    inc = occlusion_maps(ctx, [0, 3], 8, 6, batch_size=9, fill=0.4)
    full = occlusion_maps(ctx, [0, 3], 8, 6, batch_size=9, fill=0.4, incremental=False)
    for a, b in zip(inc, full):
        # through ctx.pixel_model (normalisation + output unpacking), as the section runs it
        assert a.method == "incremental" and b.method.startswith("full forward passes")
        np.testing.assert_allclose(a.grid, b.grid, atol=1e-5)
        np.testing.assert_allclose(a.grid, naive_occlusion(ctx, a.index, a.target, 8, 6, 0.4), atol=1e-5)
        assert a.grid.max() - a.grid.min() > 1e-4


def test_inplace_aliasing_is_refused():
    class Alias(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            y = self.conv(x)
            z = self.relu(y)  # changes y, which is read again below
            return (z + y).mean((2, 3))

    occ, why = IncrementalOccluder.build(Alias().eval())
    assert occ is None and "in place" in why


@pytest.mark.shared
@pytest.mark.slow
def test_real_mobilenet_occlusion_incremental_equals_full(shared_dir, make_ctx):
    """The ImageNet MobileNetV2 of ../shared on one real photo: incremental maps equal full forwards."""
    import importlib.util

    from reportgen.preprocess import Preprocessing

    spec = importlib.util.spec_from_file_location(
        "mnv2_build", shared_dir / "models" / "mobilenet_v2_imagenet" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    pre = Preprocessing(resize=256, input_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), source="test")
    ctx = make_ctx(mod.build().eval(), shared_dir / "images" / "imagenet_dev",
                   general={"max_images": 1}, pre=pre)
    assert IncrementalOccluder.build(ctx.pixel_model)[0] is not None
    inc = occlusion_maps(ctx, [0], 56, 56, batch_size=8, fill=0.5)[0]
    full = occlusion_maps(ctx, [0], 56, 56, batch_size=8, fill=0.5, incremental=False)[0]
    np.testing.assert_allclose(inc.grid, full.grid, atol=1e-5)
    assert inc.base - inc.grid.min() > 0.01  # some window really changes the prediction


class _DictOut(nn.Module):
    """A classifier whose forward returns a dict, as many hub models do."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return {"logits": self.head(self.body(x).mean(dim=(2, 3))), "aux": x.mean()}


def test_the_occlusion_section_runs_incrementally_through_the_pixel_model(make_ctx, image_dir):
    """The section's model is ctx.pixel_model (normalisation, then the logits unpacked from a dict): it must trace,
    or every report silently falls back to full forward passes."""
    from reportgen import registry
    from reportgen.build import run_technique

    torch.manual_seed(0)
    ctx = make_ctx(_DictOut().eval(), image_dir, overrides={"occlusion": {"max_images": 2, "window": 8,
                                                                        "stride": 8}})
    assert IncrementalOccluder.build(ctx.pixel_model)[0] is not None
    sec = run_technique(ctx, registry.get("occlusion"), strict=True)
    assert sec.results["method"] == "incremental"
    res = occlusion_maps(ctx, [1], 8, 8, batch_size=5, fill=0.5)
    np.testing.assert_allclose(res[0].grid, naive_occlusion(ctx, 1, res[0].target, 8, 8, 0.5), atol=1e-5)


class _SamePad(nn.Conv2d):
    """TensorFlow 'SAME' for a stride-2 convolution: pad right and bottom, then convolve (traced into F.pad and a
    functional conv2d, not a Conv2d module)."""

    def forward(self, x):
        return super().forward(F.pad(x, (0, 1, 0, 1)))


def _same_pad_net():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
                        _SamePad(8, 16, 3, stride=2), nn.BatchNorm2d(16), nn.ReLU6(),
                        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(16, 4))
    return _randomise_bn(net, scale=10.0).eval()


def test_padding_and_functional_convolutions_stay_incremental(make_ctx, image_dir):
    """F.pad shifts the changed region, a functional conv2d slides like the module: exact maps, incremental ops."""
    torch.manual_seed(0)
    ctx = make_ctx(_same_pad_net(), image_dir)
    occ, why = IncrementalOccluder.build(ctx.pixel_model)
    assert occ is not None, why
    inc = occlusion_maps(ctx, [0, 2], 8, 6, batch_size=9, fill=0.4)
    for r in inc:
        np.testing.assert_allclose(r.grid, naive_occlusion(ctx, r.index, r.target, 8, 6, 0.4), atol=1e-5)
        assert r.grid.max() - r.grid.min() > 1e-4
    # one call: normalisation, conv, BN, ReLU6, then the pad, the functional convolution and the layers after them
    # all run on the changed region only (before, everything from the pad on ran on whole copies)
    occ = IncrementalOccluder.build(ctx.pixel_model)[0]
    with torch.inference_mode():
        base = occ.base(ctx.images.batch([0]))
        occ.logits(base, torch.tensor([4, 10]), torch.tensor([6, 0]), torch.zeros(2, 3, 8, 8))
    assert occ.stats["incremental_ops"] >= 11, occ.stats


@pytest.mark.parametrize("incremental", [False, True])
def test_several_classes_come_from_the_same_occluded_passes(incremental):
    """A B x K target gives each class's grid from one set of occluded copies, equal to one call per class."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(6, 4)).eval()
    x = torch.rand(2, 3, 24, 24)
    calls = []
    h = model.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    try:
        both = A.occlusion_grid(model, x, [[1, 3], [2, 0]], 8, 4, 0.5, 8, incremental)
        n_both = sum(calls)
    finally:
        h.remove()
    a = A.occlusion_grid(model, x, [1, 2], 8, 4, 0.5, 8, incremental)
    b = A.occlusion_grid(model, x, [3, 0], 8, 4, 0.5, 8, incremental)
    assert both.shape == (2, 2, *a.shape[1:])
    torch.testing.assert_close(both[:, 0], a, atol=1e-6, rtol=0)
    torch.testing.assert_close(both[:, 1], b, atol=1e-6, rtol=0)
    if not incremental:
        assert n_both == 2 * a[0].numel()  # one pass per (image, position), not per class
