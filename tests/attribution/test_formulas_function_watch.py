"""reportgen.attribution._function_watch: which calls a forward pass makes that the gradient rules cannot reach
(functional smooth activations, clamp(min=0) in any spelling, a relu bound before the patch) and how many max-pooling
calls it makes, counted call by call; the rules' own calls and the patched ones are not counted, and every call
runs unchanged (kills the mutants the mutation run left, docs/mutation.md)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reportgen.attribution._function_watch import FunctionWatch
from reportgen.attribution.relu_rules import RuleReport, gradient_rule

BOUND_RELU = torch.relu  # bound before any patch: a call to it escapes the rule
BOUND = "(a name bound before the patch)"


class Calls(nn.Module):
    """Linear(3 -> 4), then ``fn`` on the hidden units, then a sum: ``fn`` is the call under test."""

    def __init__(self, fn):
        super().__init__()
        torch.manual_seed(0)
        self.fc, self.fn = nn.Linear(3, 4), fn

    def forward(self, x):
        return self.fn(self.fc(x)).sum(-1)


X = torch.randn(2, 3, generator=torch.Generator().manual_seed(1))

CASES = {  # id: (call, what the watch reports as unreached)
    "clamp-min-keyword": (lambda h: torch.clamp(h, min=0), {"clamp(min=0)": 1}),
    "clamp-min-positional": (lambda h: torch.clamp(h, 0), {"clamp(min=0)": 1}),
    "clamp-min-max-none": (lambda h: torch.clamp(h, 0, None), {"clamp(min=0)": 1}),
    "clamp-twice": (lambda h: torch.clamp(torch.clamp(h, min=0.0) - 1, 0), {"clamp(min=0)": 2}),
    "method-clamp": (lambda h: h.clamp(min=0) + h.clamp(0), {"clamp(min=0)": 2}),
    "clamp_-in-place": (lambda h: h.clone().clamp_(min=0), {"clamp_(min=0)": 1}),
    "clip": (lambda h: h.clip(min=0), {"clip(min=0)": 1}),
    "clamp_min-positional": (lambda h: torch.clamp_min(h, 0), {"clamp_min(min=0)": 1}),
    "clamp_min-keyword": (lambda h: torch.clamp_min(h, min=0), {"clamp_min(min=0)": 1}),
    "clamp_min-method-twice": (lambda h: h.clamp_min(0) + h.clamp_min(0.0), {"clamp_min(min=0)": 2}),
    "clamp-zero-d-tensor": (lambda h: h.clamp(min=torch.tensor(0.0)), {"clamp(min=0)": 1}),
    # not a ReLU: an upper bound, another lower bound, no lower bound, an elementwise bound, a plain add of 0
    "clamp-band-positional": (lambda h: torch.clamp(h, 0, 6), {}),
    "clamp-band-keyword": (lambda h: torch.clamp(h, min=0, max=6), {}),
    "clamp-max-only": (lambda h: torch.clamp(h, max=0), {}),
    "clamp-min-half": (lambda h: h.clamp(min=0.5) + torch.clamp(h, 0.5), {}),
    "clamp_min-half": (lambda h: torch.clamp_min(h, 0.5), {}),
    "clamp-tensor-bound": (lambda h: h.clamp(min=torch.zeros(4)), {}),
    "add-zero": (lambda h: torch.add(h, 0), {}),
    # relu names the patch could not reach
    "bound-relu-twice": (lambda h: BOUND_RELU(BOUND_RELU(h) - 1), {f"relu {BOUND}": 2}),
    "hardtanh": (lambda h: F.hardtanh(h, 0.0, 6.0), {f"hardtanh {BOUND}": 1}),
    # functional smooth activations
    "gelu-twice": (lambda h: F.gelu(F.gelu(h), approximate="tanh"), {"functional gelu": 2}),
    "silu-leaky-elu": (lambda h: F.silu(h) + F.leaky_relu(h, 0.2) + F.elu(h), {"functional silu": 1,
                                                                              "functional leaky_relu": 1,
                                                                              "functional elu": 1}),
    # the patched functional relus are reached (counted as functional calls, not as unreached)
    "patched-relus": (lambda h: F.relu(h) + torch.relu(h) + h.relu() + F.relu6(h), {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_unreached_calls_are_counted_call_by_call(case):
    fn, want = CASES[case]
    m = Calls(fn).eval()
    with torch.no_grad():
        plain = m(X)
    xr = X.clone().requires_grad_(True)
    with gradient_rule(m, "guided") as rep:
        out = m(xr)
        out.sum().backward()
    assert dict(rep.unreached) == want
    assert rep.max_pool_calls == 0
    torch.testing.assert_close(out.detach(), plain)  # every call ran with its own arguments


def test_patched_calls_count_as_functional_calls():
    m = Calls(CASES["patched-relus"][0]).eval()
    with gradient_rule(m, "deconvnet") as rep:
        m(X)
    assert rep.functional_calls == Counter({"F.relu": 1, "torch.relu": 1, "Tensor.relu": 1, "F.relu6": 1})
    assert not rep.unreached


class Pools(nn.Module):
    """A max-pool module, two functional max-pools and an adaptive one; activations are modules (the rules' own
    clamp and gelu calls inside them are not the model's)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv, self.relu, self.gelu = nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.GELU()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        h = self.pool(self.gelu(self.relu(self.conv(x))))
        h = F.max_pool2d(F.max_pool2d(h, 1), 1)
        return F.adaptive_max_pool2d(h, 1).flatten(1)


@pytest.mark.parametrize("rule", ["guided", "deconvnet"])
def test_max_pool_calls_are_counted_and_the_rules_own_calls_are_not(rule):
    m = Pools().eval()
    x = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(3), requires_grad=True)
    with gradient_rule(m, rule) as rep:
        m(x).sum().backward()
    assert rep.max_pool_calls == 4
    assert not rep.unreached
    assert set(rep.modules) == {"relu", "gelu"}


class Op:
    """A callable without ``__name__`` that dispatches through ``__torch_function__`` (a user-defined op)."""

    def __call__(self, t):
        return t * 2


def test_the_watch_on_its_own():
    """Used directly (no gradient_rule): counts what it sees; a function listed in ``patched`` is reached."""
    rep = RuleReport(rule="guided")
    x = torch.randn(2, 3)
    with FunctionWatch(rep):
        a = F.gelu(x)
        b = torch.relu(x)
        c = torch.overrides.handle_torch_function(Op(), (x,), x)
        d = x.clamp(min=torch.zeros(3))  # an elementwise bound: not a ReLU
    assert rep.unreached == Counter({"functional gelu": 1, f"relu {BOUND}": 1})
    torch.testing.assert_close((a, b, c, d), (F.gelu(x), torch.relu(x), 2 * x, x.clamp(min=0)))
    rep2 = RuleReport(rule="guided")
    watch = FunctionWatch(rep2)
    watch.patched = {id(torch.relu)}
    with watch:
        torch.relu(x)
        F.silu(x)
    assert rep2.unreached == Counter({"functional silu": 1})
