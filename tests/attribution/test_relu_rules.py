"""Gradient rules (backprop / deconvnet / guided) against hand computations on a tiny net."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reportgen.attribution.relu_rules import RULES, gradient_rule, input_gradient
from reportgen.inspection.hooks import count_hooks, module_signature

# Linear(2 -> 6, no bias) - activation - Linear(6 -> 1, no bias), input x = (4, 4):
#   hidden pre-activations h = W1 x = (8, -4, -2, 8, 4, 4)
#   upstream gradient     g = W2    = (1, 1, 1, -1, 1, -1)
W1 = [[1.0, 1.0], [1.0, -2.0], [-1.0, 0.5], [2.0, 0.0], [0.5, 0.5], [1.0, 0.0]]
W2 = [[1.0, 1.0, 1.0, -1.0, 1.0, -1.0]]
X = [[4.0, 4.0]]
# dx = W1^T (signal arriving at h), with the signal per rule:
#   ReLU   backprop  g*[h>0]          = (1, 0, 0, -1, 1, -1) -> (1 - 2 + 0.5 - 1, 1 + 0.5) = (-1.5, 1.5)
#          deconvnet relu(g)          = (1, 1, 1, 0, 1, 0)   -> (1 + 1 - 1 + 0.5, 1 - 2 + 0.5 + 0.5) = (1.5, 0)
#          guided    relu(g)*[h>0]    = (1, 0, 0, 0, 1, 0)   -> (1.5, 1.5)
#   ReLU6  backprop  g*[0<h<6]        = (0, 0, 0, 0, 1, -1) -> (0.5 - 1, 0.5) = (-0.5, 0.5)
#          deconvnet relu(g)          = (1.5, 0) as for ReLU
#          guided    relu(g)*[0<h<6]  = (0, 0, 0, 0, 1, 0)  -> (0.5, 0.5)
EXPECTED = {
    "relu": {"backprop": (-1.5, 1.5), "deconvnet": (1.5, 0.0), "guided": (1.5, 1.5)},
    "relu6": {"backprop": (-0.5, 0.5), "deconvnet": (1.5, 0.0), "guided": (0.5, 0.5)},
}


class Net(nn.Module):
    """Linear - act - Linear, where ``act`` is a module or a functional call made in forward."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.fc1 = nn.Linear(2, 6, bias=False)
        self.fc2 = nn.Linear(6, 1, bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor(W1))
            self.fc2.weight.copy_(torch.tensor(W2))
        self.act = {"relu_module": nn.ReLU(), "relu_inplace": nn.ReLU(inplace=True), "relu6_module": nn.ReLU6(),
                    "relu6_inplace": nn.ReLU6(inplace=True), "gelu": nn.GELU(), "silu_inplace": nn.SiLU(inplace=True),
                    "tanh": nn.Tanh()}.get(kind)

    def forward(self, x):
        h = self.fc1(x)
        k = self.kind
        if self.act is not None:
            h = self.act(h)
        elif k == "F.relu":
            h = F.relu(h)
        elif k == "F.relu_inplace":
            h = F.relu(h, inplace=True)
        elif k == "torch.relu":
            h = torch.relu(h)
        elif k == "Tensor.relu":
            h = h.relu()
        elif k == "F.relu6":
            h = F.relu6(h)
        else:
            raise ValueError(k)
        return self.fc2(h)


RELU_KINDS = ["relu_module", "relu_inplace", "F.relu", "F.relu_inplace", "torch.relu", "Tensor.relu"]
RELU6_KINDS = ["relu6_module", "relu6_inplace", "F.relu6"]


def grad_of(net: nn.Module, rule: str) -> torch.Tensor:
    return input_gradient(net, torch.tensor(X), lambda out: out[:, 0], rule)[0]


@pytest.mark.parametrize("kind", RELU_KINDS + RELU6_KINDS)
@pytest.mark.parametrize("rule", RULES)
def test_rule_matches_hand_computation(kind, rule):
    net = Net(kind).eval()
    hooks, sig = count_hooks(net), module_signature(net)
    family = "relu6" if "relu6" in kind else "relu"
    g = grad_of(net, rule)
    assert torch.allclose(g, torch.tensor(EXPECTED[family][rule]), atol=1e-6), (kind, rule, g)
    assert count_hooks(net) == hooks and module_signature(net) == sig
    # and the plain gradient is untouched afterwards
    assert torch.allclose(grad_of(net, "backprop"), torch.tensor(EXPECTED[family]["backprop"]))


def test_backprop_rule_is_autograd():
    net = Net("relu_inplace").eval()
    x = torch.tensor(X, requires_grad=True)
    net(x)[:, 0].sum().backward()
    assert torch.allclose(grad_of(net, "backprop"), x.grad[0])


def _gelu_prime(h: float) -> float:
    cdf = 0.5 * (1 + math.erf(h / math.sqrt(2)))
    pdf = math.exp(-h * h / 2) / math.sqrt(2 * math.pi)
    return cdf + h * pdf


def test_smooth_activation_uses_its_own_derivative():
    net = Net("gelu").eval()
    h = torch.tensor(W1) @ torch.tensor(X[0])
    g = torch.tensor(W2[0])
    d = torch.tensor([_gelu_prime(float(v)) for v in h])
    W = torch.tensor(W1)
    expect_guided = W.T @ (g.clamp(min=0) * d)
    expect_deconv = W.T @ g.clamp(min=0)
    assert torch.allclose(grad_of(net, "guided"), expect_guided, atol=1e-5)
    assert torch.allclose(grad_of(net, "deconvnet"), expect_deconv, atol=1e-6)
    with gradient_rule(net, "guided") as rep:
        pass
    assert "GELU" in rep.describe() and "f'(x)" in rep.describe()


def test_inplace_silu_and_gates_are_reported():
    net = Net("silu_inplace").eval()
    x = torch.tensor(X, requires_grad=True)
    net(x).sum().backward()
    plain = x.grad[0].clone()
    assert torch.allclose(grad_of(net, "backprop"), plain, atol=1e-6)
    h = torch.tensor(W1) @ torch.tensor(X[0])
    sig = torch.sigmoid(h)
    silu_prime = sig * (1 + h * (1 - sig))
    expect = torch.tensor(W1).T @ (torch.tensor(W2[0]).clamp(min=0) * silu_prime)
    assert torch.allclose(grad_of(net, "guided"), expect, atol=1e-5)  # through the in-place path
    with gradient_rule(Net("tanh"), "guided") as rep:
        pass
    assert "Tanh" in rep.describe() and "plain gradient" in rep.describe()


def test_functional_calls_are_counted_and_forward_values_unchanged():
    net = Net("F.relu").eval()
    x = torch.tensor(X)
    ref = net(x)
    with gradient_rule(net, "guided") as rep:
        out = net(x)
    assert torch.allclose(out, ref)
    assert rep.functional_calls["F.relu"] == 1
    assert "F.relu (functional, 1 call)" in rep.describe()
    net6 = Net("relu6_inplace").eval()
    with gradient_rule(net6, "deconvnet") as rep6:
        assert torch.allclose(net6(x), Net("relu6_module")(x))
    assert "ReLU6" in rep6.describe()


def test_everything_restored_even_on_exception():
    from conftest import make_tiny_cnn

    model = make_tiny_cnn()
    originals = (F.relu, F.relu_, F.relu6, torch.relu, torch.relu_)
    hooks, sig = count_hooks(model), module_signature(model)
    with pytest.raises(RuntimeError, match="boom"):
        with gradient_rule(model, "guided"):
            assert "forward" in model.features[1].__dict__
            raise RuntimeError("boom")
    assert (F.relu, F.relu_, F.relu6, torch.relu, torch.relu_) == originals
    assert "relu" not in torch.Tensor.__dict__ and "relu_" not in torch.Tensor.__dict__
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert count_hooks(model) == hooks and module_signature(model) == sig
    with pytest.raises(ValueError):
        with gradient_rule(model, "nope"):
            pass


def test_guided_differs_from_backprop_on_a_cnn():
    from conftest import make_tiny_cnn

    model = make_tiny_cnn()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    grads = {r: input_gradient(model, x, lambda o: o[:, 1], r) for r in RULES}
    assert not torch.allclose(grads["guided"], grads["backprop"])
    assert not torch.allclose(grads["deconvnet"], grads["guided"])
    # the rules do not change the forward pass
    with torch.no_grad(), gradient_rule(model, "guided"):
        a = model(x)
    with torch.no_grad():
        b = model(x)
    assert torch.allclose(a, b)
