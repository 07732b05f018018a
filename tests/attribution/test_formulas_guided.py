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


class _Tokens(nn.Module):
    """4 x 4 patches of an 8 x 16 input -> 2 x 4 = 8 tokens of 5 channels (B x 8 x 5) -> ``proj`` -> mean -> head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.patch = nn.Conv2d(3, 5, 4, stride=4)
        self.proj = nn.Linear(5, 5)
        self.head = nn.Linear(5, 3)

    def tokens(self, x):
        return self.proj(self.patch(x).flatten(2).transpose(1, 2))

    def forward(self, x):
        return self.head(self.tokens(x).mean(1))


def test_a_unit_of_a_token_layer_is_addressed_in_the_grid_of_a_non_square_input():
    """The input's H x W (8 x 16) tells the token sequence's grid (2 x 4): unit (channel c, row i, column j) is
    token i * 4 + j; a wrong size hint (or none) reads another grid or none."""
    m = _Tokens().eval()
    x = torch.rand(2, 3, 8, 16, generator=torch.Generator().manual_seed(4))
    (g,), _ = A.rule_gradients(m, x, [A.unit_target([3, 1], [(1, 2), (0, 3)])], "backprop", layer=m.proj)
    want = _grad(lambda v: torch.stack([m.tokens(v)[0, 1 * 4 + 2, 3], m.tokens(v)[1, 0 * 4 + 3, 1]]), x)
    torch.testing.assert_close(g, want)


def test_default_rule_of_rule_gradients_is_guided():
    m = _mlp()
    x = torch.randn(3, 2, 2, 2, generator=torch.Generator().manual_seed(5))
    (g,), report = A.rule_gradients(m, x, [A.class_target([2, 0, 1])])
    torch.testing.assert_close(g, A.guided_backprop(m, x, [2, 0, 1]))


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
