"""reportgen.attribution.guided beyond the closed forms of test_attribution_api.py: several selectors from one forward
pass each give their own autograd gradient, a unit of a B x C layer, guided_backprop is the guided rule, and the
errors name the missing layer (kills the mutants the mutation run left, docs/mutation.md)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reportgen import attribution as A


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3)).eval()


def _grad(fn, x):
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(xr).sum(), xr)
    return g


def test_several_selectors_each_get_their_own_gradient():
    m = _mlp()
    x = torch.randn(2, 2, 2, 2, generator=torch.Generator().manual_seed(1))
    sels = [A.class_target([0, 2]), A.class_target(1), A.unit_target([4, 0])]
    grads, _ = A.rule_gradients(m, x, sels, "backprop", layer=m[2])
    assert len(grads) == 3
    torch.testing.assert_close(grads[0], _grad(lambda v: m(v).gather(1, torch.tensor([[0], [2]])), x))
    torch.testing.assert_close(grads[1], _grad(lambda v: m(v)[:, 1], x))
    torch.testing.assert_close(grads[2], _grad(lambda v: torch.stack([m[:3](v)[0, 4], m[:3](v)[1, 0]]), x))
    assert not grads[0].requires_grad


def test_unit_target_picks_one_value_per_image_from_any_activation_shape():
    a = torch.arange(2 * 3 * 7, dtype=torch.float32).view(2, 3, 7)  # B x C x L (a token-like layer)
    torch.testing.assert_close(A.unit_target([1, 2], [(5,), (3,)])(None, a), torch.stack([a[0, 1, 5], a[1, 2, 3]]))
    b = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)  # B x C x H x W
    torch.testing.assert_close(A.unit_target([2, 0], [(1, 4), (3, 0)])(None, b), torch.stack([b[0, 2, 1, 4],
                                                                                         b[1, 0, 3, 0]]))
    c = torch.arange(6, dtype=torch.float32).view(2, 3)  # B x C: no position
    torch.testing.assert_close(A.unit_target([2, 1])(None, c), torch.tensor([2.0, 4.0]))


def test_guided_backprop_is_the_guided_rule_and_differs_from_the_gradient():
    m = _mlp()
    x = torch.randn(3, 2, 2, 2, generator=torch.Generator().manual_seed(2))
    gb = A.guided_backprop(m, x, [0, 1, 2])
    torch.testing.assert_close(gb, A.guided(m, x, [0, 1, 2], "guided"))
    torch.testing.assert_close(A.guided(m, x, [0, 1, 2]), gb)  # the default rule is guided
    assert not torch.allclose(gb, A.gradient(m, x, [0, 1, 2]))


def test_errors_name_the_missing_layer():
    m = _mlp()
    x = torch.randn(1, 2, 2, 2)
    with pytest.raises(ValueError, match=r"^unit_target needs rule_gradients\(\.\.\., layer=\.\.\.\)$"):
        A.rule_gradients(m, x, [A.unit_target([0])])
    with pytest.raises(RuntimeError, match="^the layer was not called during the forward pass$"):
        A.rule_gradients(m, x, [A.unit_target([0])], layer=nn.Linear(1, 1))
