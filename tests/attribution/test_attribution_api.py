"""reportgen.attribution's occlusion and guided (backprop | deconvnet | guided) on plain tensors and modules:
no RunContext, known answers, incremental == batched == one copy at a time, no hook left behind."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from reportgen import attribution as A
from reportgen.inspection.hooks import count_hooks

from conftest import make_tiny_cnn


class Corner(nn.Module):
    """Logits (s, -s) with s = 4 * (mean of channel 0 in the top-left 8x8 corner - 0.5): only that corner counts."""

    def forward(self, x):
        s = 4 * (x[:, 0, :8, :8].mean((1, 2)) - 0.5)
        return torch.stack([s, -s], 1)


def test_occlusion_without_a_context_finds_the_evidence():
    x = torch.ones(2, 3, 16, 16)
    heat = A.occlusion(Corner(), x, 0, window=4, stride=4, baseline=0.0, batch=5)
    assert heat.shape == (2, 16, 16)
    # covering the corner lowers p(class 0); covering anything else leaves it at the unoccluded value
    p0 = float(torch.softmax(Corner()(x[:1]), 1)[0, 0])
    assert torch.allclose(heat[:, 8:, :], torch.full_like(heat[:, 8:, :], p0))
    assert torch.allclose(heat[:, :, 8:], torch.full_like(heat[:, :, 8:], p0))
    assert float(heat[:, :8, :8].max()) < p0 - 0.05  # sigmoid(2) vs sigmoid(4)
    grid = A.occlusion_grid(Corner(), x, [0, 1], 4, 4, baseline=torch.zeros(3), batch=3)
    assert grid.shape == (2, 4, 4) and torch.allclose(grid[0] + grid[1], torch.ones(4, 4))


def _one_at_a_time(model, x, k, window, stride, fill):
    ys = A.window_positions(x.shape[-2], window, stride)
    xs = A.window_positions(x.shape[-1], window, stride)
    out = torch.empty(len(x), len(ys), len(xs))
    with torch.no_grad():
        for b in range(len(x)):
            for i, y0 in enumerate(ys):
                for j, x0 in enumerate(xs):
                    c = x[b:b + 1].clone()
                    c[:, :, y0:y0 + window, x0:x0 + window] = fill
                    out[b, i, j] = torch.softmax(model(c), 1)[0, k[b]]
    return out


def test_occlusion_incremental_equals_batched_and_naive():
    m = make_tiny_cnn()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    ref = _one_at_a_time(m, x, [1, 3], 8, 6, 0.3)
    inc = A.occlusion_grid(m, x, [1, 3], 8, 6, 0.3, batch=7)
    full = A.occlusion_grid(m, x, [1, 3], 8, 6, 0.3, batch=7, incremental=False)
    torch.testing.assert_close(inc, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(full, ref, atol=1e-5, rtol=1e-4)
    assert count_hooks(m) == 0 and not m.training


def test_coverage_average_known_values():
    grid = torch.tensor([[[1.0, 3.0]]])  # one row of two windows of width 2 at columns 0 and 1 on a 1x3 map
    heat = A.coverage_average(grid, (1, 3), window=2, stride=1)
    torch.testing.assert_close(heat, torch.tensor([[[1.0, 2.0, 3.0]]]))
    gap = A.coverage_average(torch.tensor([[[1.0, 3.0]]]), (1, 5), window=1, stride=4, uncovered=0.5)
    torch.testing.assert_close(gap, torch.tensor([[[1.0, 0.5, 0.5, 0.5, 3.0]]]))


def _mlp():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)).eval()
    return m


@pytest.mark.parametrize("rule", ["backprop", "deconvnet", "guided"])
def test_guided_rules_have_their_closed_form(rule):
    m = _mlp()
    x = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    w1, b1, w2 = m[1].weight.detach(), m[1].bias.detach(), m[3].weight.detach()
    k = torch.tensor([0, 1, 1])
    on = ((x.flatten(1) @ w1.T + b1) > 0).float()  # which ReLUs fired, per image
    g = w2[k]  # upstream gradient at the ReLU outputs
    crossed = {"backprop": g * on, "deconvnet": g.clamp_min(0), "guided": g.clamp_min(0) * on}[rule]
    want = (crossed @ w1).view_as(x)
    got = A.guided(m, x, k, rule)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    assert count_hooks(m) == 0 and all(p.requires_grad for p in m.parameters())
    if rule == "backprop":
        torch.testing.assert_close(got, A.gradient(m, x, k))


def test_rule_gradients_of_a_unit_match_autograd():
    m = make_tiny_cnn()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    layer = dict(m.named_modules())[[n for n, mod in m.named_modules() if isinstance(mod, nn.Conv2d)][0]]
    (g,), report = A.rule_gradients(m, x, [A.unit_target([1, 2], [(3, 4), (5, 6)])], "backprop", layer=layer)
    xr = x.clone().requires_grad_(True)
    store = {}
    h = layer.register_forward_hook(lambda _m, _i, o: store.update(a=o.clone()))  # before the in-place ReLU
    try:
        m(xr)
    finally:
        h.remove()
    a = store["a"]
    (want,) = torch.autograd.grad(a[0, 1, 3, 4] + a[1, 2, 5, 6], xr)
    torch.testing.assert_close(g, want)
    assert np.isfinite(g.numpy()).all() and count_hooks(m) == 0 and report is not None
