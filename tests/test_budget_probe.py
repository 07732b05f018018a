"""The budget's probe measures how much batching saves on this model, and the batched sections' estimates use it."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from conftest import make_tiny_cnn
from reportgen import registry
from reportgen.config import make_config
from reportgen.planning import cost
from reportgen.planning.cost import EFFICIENCY_BATCH, EFFICIENCY_RANGE, SECTION_OVERHEAD_S, Measure, estimate


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class Costed(nn.Module):
    """The tiny CNN, each call advancing a fake clock by ``per_call + per_image * batch`` seconds."""

    def __init__(self, clock: FakeClock, per_call: float, per_image: float) -> None:
        super().__init__()
        self.net, self.clock, self.per_call, self.per_image = make_tiny_cnn(), clock, per_call, per_image

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.clock.now += self.per_call + self.per_image * len(x)
        return self.net(x)


@pytest.mark.parametrize("per_call, per_image, want", [
    (0.0, 0.01, 1.0),  # cost per image only (a large model on a CPU): batching saves nothing
    (0.02, 0.0, 2 / EFFICIENCY_BATCH),  # a fixed cost per call (a tiny model): a batch of 8 shares it 4x better
    (0.01, 0.01, (0.01 + 0.08) / EFFICIENCY_BATCH / ((0.01 + 0.02) / 2)),
])
def test_the_probe_measures_the_batch_efficiency_of_the_model(make_ctx, image_dir, monkeypatch, per_call, per_image,
                                                            want):
    clock = FakeClock()
    monkeypatch.setattr(cost, "time", clock)
    m = cost.measure(make_ctx(Costed(clock, per_call, per_image).eval(), image_dir))
    assert m.source == "probe"
    assert m.fwd == pytest.approx((per_call + 2 * per_image) / 2)
    assert m.batch_eff == pytest.approx(min(EFFICIENCY_RANGE[1], max(EFFICIENCY_RANGE[0], want)))
    assert m.to_dict()["batch_efficiency"] == pytest.approx(m.batch_eff, abs=1e-3)


def test_the_measured_efficiency_is_bounded(make_ctx, image_dir, monkeypatch):
    """A batch of 8 that costs 10x per image what 2 images do (the clock was disturbed, or its activations left the
    cache) counts as the upper bound, 1: no slower per image than the probe."""
    clock = FakeClock()
    monkeypatch.setattr(cost, "time", clock)

    class Worse(Costed):
        def forward(self, x):
            self.clock.now += 0.01 * len(x) * (10 if len(x) == EFFICIENCY_BATCH else 1)
            return self.net(x)

    assert cost.measure(make_ctx(Worse(clock, 0, 0).eval(), image_dir)).batch_eff == EFFICIENCY_RANGE[1] == 1.0


@pytest.mark.parametrize("tid", ["smoothgrad", "vargrad", "integrated_gradients", "occlusion", "corruptions",
                                 "faithfulness"])
def test_batched_sections_scale_with_the_measured_efficiency(tid):
    """Each section whose passes run in batches counts the probe's seconds times the measured efficiency: at 1.0 its
    model time is twice that at 0.5 (faithfulness's ROAD imputations, pixel work, are left out here: they do not)."""
    cfg = make_config("standard")
    t, o = registry.get(tid), cfg.options(tid)
    m = Measure(fwd=0.1, grad=0.3, n=10, size=224, macs=4_000_000_000)
    if tid == "faithfulness":  # its perturbation stream; the maps it computes itself follow their sections' formulas
        o, cfg = dataclasses.replace(o, road=False), None
    half, full = (estimate(t, o, dataclasses.replace(m, batch_eff=e), cfg) - SECTION_OVERHEAD_S for e in (0.5, 1.0))
    assert half > 0 and full == pytest.approx(2 * half)


def test_the_feature_pass_scales_with_the_measured_efficiency():
    m = Measure(fwd=0.1, grad=0.3, n=10, size=224, batch_eff=0.9)
    assert cost.feature_pass_s(m) == pytest.approx(10 * 0.1 * 0.9)


def test_a_pass_costs_its_per_call_part_once_and_its_per_image_part_per_image_and_pixel():
    """The 2-image probe pass split by the measured efficiency: at efficiency 1 a pass costs in proportion to its
    images and pixels; at 1/4 (batching shares the whole cost) it costs the probe's pass whatever its batch and size;
    between, ``c0 + c1 B a`` with ``c0 + 2 c1`` the probe's pass and ``(c0 + 8 c1) / 8`` its efficiency."""
    from reportgen.planning.cost import _pass

    base = Measure(fwd=0.1, grad=0.3, n=10, size=64)
    m1, m4 = (dataclasses.replace(base, batch_eff=e) for e in (1.0, 0.25))
    assert _pass(m1, 0.3, 5, 0.25) == pytest.approx(0.3 * 5 * 0.25)
    assert _pass(m4, 0.3, 5, 0.25) == pytest.approx(0.6) == pytest.approx(_pass(m4, 0.3, 1, 9.0))
    m = dataclasses.replace(base, batch_eff=0.7)
    c1 = (0.7 * 8 * 0.3 - 2 * 0.3) / 6  # from the pass of 8 and the pass of 2
    c0 = 2 * 0.3 - 2 * c1
    assert _pass(m, 0.3, 2) == pytest.approx(0.6) and _pass(m, 0.3, 8) == pytest.approx(8 * 0.3 * 0.7)
    assert _pass(m, 0.3, 3, 4.0) == pytest.approx(c0 + c1 * 3 * 4.0)


@pytest.mark.parametrize("tid", ["texture", "style_transfer", "inversion", "class_visualization"])
def test_optimisation_on_a_tiny_model_is_not_scaled_by_its_canvas(tid):
    """A 28 px model whose passes are all per-call cost (efficiency 1/4): the texture's 112 px canvas costs what the
    model's 28 px do (the demo's 61 s texture estimate against 9 s measured came from scaling that cost by 16)."""
    cfg = make_config("standard")
    t, o = registry.get(tid), cfg.options(tid)
    tiny = Measure(fwd=0.001, grad=0.003, n=10, size=28, batch_eff=0.25)
    small = dataclasses.replace(o, image_size=28)
    assert estimate(t, o, tiny, cfg) == pytest.approx(estimate(t, small, tiny, cfg))
    big = dataclasses.replace(tiny, batch_eff=1.0)
    if tid in ("texture", "style_transfer"):  # their canvas is larger than 28 px: a large model pays for it
        assert estimate(t, o, big, cfg) > 2 * estimate(t, small, big, cfg)


class PixelCosted(Costed):
    """Each call advances the fake clock by ``per_call`` plus ``per_image`` per image in proportion to its pixels
    (``per_image`` at the probe's side)."""

    side = 32  # the test images' side (conftest's tiny_pre)

    def forward(self, x):
        self.clock.now += self.per_call + self.per_image * len(x) * x.shape[-2] * x.shape[-1] / self.side ** 2
        return self.net(x)


def test_the_half_side_pass_splits_a_pass_into_its_per_call_and_per_pixel_parts(make_ctx, image_dir, monkeypatch):
    """A model costing ``c0 + c1 B a`` (B images at a pixels' ratio a): the probe's 2-image pass and its one half-side
    image give ``call_share = c0 / (c0 + 2 c1)``, and a texture-like pass (1 image at 112/224 of the side) is counted
    at ``c0 + c1 / 4``, not a quarter of the probe's per-image seconds."""
    from reportgen.planning.cost import _pass

    clock = FakeClock()
    monkeypatch.setattr(cost, "time", clock)
    c0, c1 = 0.02, 0.03
    ctx = make_ctx(PixelCosted(clock, c0, c1).eval(), image_dir)
    assert ctx.pre.size == PixelCosted.side
    m = cost.measure(ctx)
    assert m.small_grad == pytest.approx(c0 + c1 / 4)
    assert m.call_share == pytest.approx(c0 / (c0 + 2 * c1))
    assert _pass(m, m.grad, 1, 0.25) == pytest.approx(c0 + c1 / 4)
    assert _pass(m, m.grad, 3, 2.0) == pytest.approx(c0 + c1 * 3 * 2.0)
    assert m.to_dict()["small_grad_s"] == pytest.approx(c0 + c1 / 4, abs=1e-5)


def test_a_fixed_size_model_gets_no_half_side_pass_and_the_batch_split_is_used(make_ctx, image_dir, tiny_pre):
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * tiny_pre.size ** 2, 4)).eval()  # takes its own size only
    m = cost.measure(make_ctx(flat, image_dir))
    assert m.fixed_size and m.small_grad is None and m.call_share == m.fixed_share


def test_call_share_is_bounded_whatever_the_half_side_pass_took():
    base = Measure(fwd=0.1, grad=0.3, n=10, size=64, batch_eff=1.0)
    assert dataclasses.replace(base, small_grad=0.6).call_share == 1.0  # no cheaper than 2 full images: all per call
    assert dataclasses.replace(base, small_grad=0.0).call_share == 0.0  # cheaper than its pixels: none per call
    assert dataclasses.replace(base, small_grad=None).call_share == base.fixed_share == 0.0
