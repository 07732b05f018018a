"""reportgen.attribution.relu_rules beyond test_relu_rules.py's hand computations: the report's texts word for word
(they go into the guided-backprop section's note), in-place activations keep their in-place forward under a rule,
and input_gradient's default rule (kills the mutants the mutation run left, docs/mutation.md)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reportgen.attribution.relu_rules import RULES, RuleReport, gradient_rule, input_gradient

TANH = "plain gradient (not a rectifier; left unchanged)"
DECONV = "deconvnet relu(g) (forward mask ignored)"
SMOOTH = "guided relu(g)·f'(x) (own local derivative in place of the mask)"


class Mixed(nn.Module):
    """Every kind of activation the rules know: modules (ReLU twice, ReLU6, two Hardtanh bands, GELU, a Tanh gate),
    functional F.relu twice, and one functional F.silu the patcher cannot reach."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(4, 6)
        self.r1, self.r2, self.r6 = nn.ReLU(), nn.ReLU(inplace=True), nn.ReLU6()
        self.ht, self.ht01, self.gelu, self.tanh = nn.Hardtanh(-1.0, 2.5), nn.Hardtanh(0.0, 1.0), nn.GELU(), nn.Tanh()
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x):
        h = self.r1(self.r2(self.fc1(x)))
        h = self.r6(h) + self.ht(h) + self.ht01(h) + self.gelu(h) + self.tanh(h)
        h = F.relu(h) + F.relu(h)
        return self.fc2(h + F.silu(h))


def _report(model: nn.Module, rule: str, x: torch.Tensor | None = None) -> RuleReport:
    with gradient_rule(model, rule) as rep:
        if x is not None:
            model(x)
    return rep


GUIDED = ("F.relu (functional, 2 calls): guided relu(g)·[x>0]; "
          f"GELU ×1: {SMOOTH}; Hardtanh ×2: guided relu(g)·[-1<x<2.5]; guided relu(g)·[0<x<1]; "
          f"ReLU ×2: guided relu(g)·[x>0]; ReLU6 ×1: guided relu(g)·[0<x<6]; Tanh ×1: {TANH}. "
          "1 activation call was not reached (functional silu ×1); that layer uses the plain gradient.")
DECONVNET = (f"F.relu (functional, 2 calls): {DECONV}; GELU ×1: {DECONV}; "
             f"Hardtanh ×2: {DECONV}; ReLU ×2: {DECONV}; ReLU6 ×1: {DECONV}; Tanh ×1: {TANH}. "
             "1 activation call was not reached (functional silu ×1); that layer uses the plain gradient.")


@pytest.mark.parametrize("rule,text", [("guided", GUIDED), ("deconvnet", DECONVNET),
                                       ("backprop", "Plain backpropagation: every activation passes its ordinary "
                                                    "gradient.")])
def test_describe_names_every_activation_type_with_its_rule_word_for_word(rule, text):
    assert _report(Mixed(), rule, torch.randn(2, 4)).describe() == text


def test_by_type_lists_each_rule_text_once_per_type():
    rep = _report(Mixed(), "guided", torch.randn(2, 4))
    assert rep.by_type() == {
        "F.relu (functional, 2 calls)": ["guided relu(g)·[x>0]"],
        "GELU": [SMOOTH],
        "Hardtanh": ["guided relu(g)·[-1<x<2.5]", "guided relu(g)·[0<x<1]"],
        "ReLU": ["guided relu(g)·[x>0]"],
        "ReLU6": ["guided relu(g)·[0<x<6]"],
        "Tanh": [TANH],
    }
    assert list(rep.by_type()) == sorted(rep.by_type())
    assert _report(Mixed(), "backprop", torch.randn(2, 4)).by_type() == {}


def test_a_report_built_by_hand_describes_the_plain_rule():
    rep = RuleReport(rule="backprop", functional_calls=Counter({"F.relu": 1, "F.relu6": 3}),
                     unreached=Counter({"functional gelu": 2}))
    assert rep.by_type() == {"F.relu (functional, 1 call)": ["plain gradient"],
                             "F.relu6 (functional, 3 calls)": ["plain gradient"]}
    assert rep.unreached_text() == ""  # under the plain rule nothing is missed


def test_unreached_text_counts_and_plurals():
    one = RuleReport(rule="guided", unreached=Counter({"functional gelu": 1}))
    assert one.unreached_text() == ("1 activation call was not reached (functional gelu ×1); that layer uses the "
                                    "plain gradient.")
    two = RuleReport(rule="deconvnet", unreached=Counter({"functional gelu": 2, "clamp(min=0)": 1}))
    assert two.unreached_text() == ("3 activation calls were not reached (clamp(min=0) ×1, functional gelu ×2); "
                                    "those layers use the plain gradient.")
    assert RuleReport(rule="guided").unreached_text() == ""
    assert RuleReport(rule="guided", unreached=Counter({"functional gelu": 0})).unreached_text() == ""


class Relu6Twice(nn.Module):
    def forward(self, x):
        return F.relu6(F.relu6(x) - 1)


def test_functional_relu6_is_described_with_its_pass_band():
    """F.relu6's rule masks with 0 < x < 6 (test_relu_rules.py's hand computation): the text says that band too.
    Before: "guided relu(g)·[x>0]", the ReLU's band (mutants by_type__mutmut_24, _27-_35 showed the band was unused)."""
    rep = _report(Relu6Twice(), "guided", torch.randn(1, 2))
    assert rep.by_type() == {"F.relu6 (functional, 2 calls)": ["guided relu(g)·[0<x<6]"]}
    assert rep.describe() == "F.relu6 (functional, 2 calls): guided relu(g)·[0<x<6]."
    assert _report(Relu6Twice(), "deconvnet", torch.randn(1, 2)).describe() == (
        f"F.relu6 (functional, 2 calls): {DECONV}.")


class OnlyGelu(nn.Module):
    def forward(self, x):
        return F.gelu(x)


def test_describe_when_no_rectifier_was_reached():
    assert _report(nn.Sequential(nn.Linear(2, 2)), "guided", torch.randn(1, 2)).describe() == (
        "No ReLU-family activation was reached: the 'guided' rule changed nothing (plain gradient).")
    assert _report(OnlyGelu(), "deconvnet", torch.randn(1, 2)).describe() == (
        "No ReLU-family activation was reached: the 'deconvnet' rule changed nothing (plain gradient). "
        "1 activation call was not reached (functional gelu ×1); that layer uses the plain gradient.")


def test_describe_without_unreached_calls_ends_with_the_full_stop():
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert _report(m, "guided", torch.randn(1, 2)).describe() == "ReLU ×1: guided relu(g)·[x>0]."


def test_a_type_name_with_a_colon_keeps_its_count():
    odd = type("My: ReLU", (nn.ReLU,), {})
    rep = _report(nn.Sequential(odd(), odd()), "guided")
    assert rep.describe().startswith("My ×2: ")
    assert list(rep.by_type()) == ["My"]


class ReadsBack(nn.Module):
    """``act(h) + 2 h``: after an in-place activation ``h`` is the activation's output (3 act(h)), otherwise not."""

    def __init__(self, act: nn.Module):
        super().__init__()
        torch.manual_seed(1)
        self.fc, self.act = nn.Linear(3, 5), act

    def forward(self, x):
        h = self.fc(x)
        return self.act(h) + 2 * h


@pytest.mark.parametrize("act", [nn.ReLU(inplace=True), nn.ReLU6(inplace=True), nn.SiLU(inplace=True), nn.ReLU(),
                                 nn.GELU(), nn.SiLU()], ids=lambda a: f"{type(a).__name__}-{getattr(a, 'inplace', 0)}")
@pytest.mark.parametrize("rule", RULES)
def test_the_rules_keep_the_forward_pass_in_place_or_not(act, rule):
    m = ReadsBack(act).eval()
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(2)) * 4
    with torch.no_grad():
        want = m(x)
    inplace = getattr(act, "inplace", False)
    h = m.fc(x).detach()
    assert torch.allclose(want, (3 if inplace else 1) * act.__class__()(h) + (0 if inplace else 2) * h, atol=1e-6)
    xr = x.clone().requires_grad_(True)
    with gradient_rule(m, rule):
        out = m(xr)
        out.sum().backward()
    torch.testing.assert_close(out.detach(), want)
    assert torch.isfinite(xr.grad).all()


def test_input_gradient_defaults_to_the_plain_gradient():
    m = Mixed().eval()
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(3))
    xr = x.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(m(xr)[:, 1].sum(), xr)
    g = input_gradient(m, x, lambda out: out[:, 1])
    torch.testing.assert_close(g, want)
    assert not torch.allclose(g, input_gradient(m, x, lambda out: out[:, 1], "guided"))
    assert not x.requires_grad
