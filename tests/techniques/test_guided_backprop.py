"""The guided_backprop technique (reportgen/techniques/guided_backprop.py): its own tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CLASSES, ColourMeans
from torch import nn

from reportgen import registry
from reportgen.build import run_technique
from reportgen.report import Grid, Group, Note, Row, iter_images


def test_guided_backprop_layout_and_rule_note(ctx):
    sec = run_technique(ctx, registry.get("guided_backprop"), strict=True)
    grid = next(b for g in sec.blocks if isinstance(g, Group) for r in g.blocks if isinstance(r, Row)
                for b in r.blocks if isinstance(b, Grid))
    opts = ctx.config.options("guided_backprop")
    assert grid.columns == 3 and len(grid.items) == 3 * (opts.units + 1)
    assert [it.label for it in grid.items[:3]] == ["backprop", "deconvnet", "guided backprop"]
    note = " ".join(b.text for b in sec.blocks if isinstance(b, Note))
    assert "ReLU" in note and "guided relu(g)" in note


def test_guided_backprop_is_the_same_in_batches_of_one(make_ctx, tiny_model, image_dir):
    over = {"guided_backprop": {"max_images": 3}}
    whole = make_ctx(tiny_model, image_dir, class_names=CLASSES, overrides=over)
    ones = make_ctx(tiny_model, image_dir, class_names=CLASSES, overrides=over, general={"batch_size": 1})
    a = [im.array for im in iter_images(run_technique(whole, registry.get("guided_backprop"), strict=True).blocks)]
    b = [im.array for im in iter_images(run_technique(ones, registry.get("guided_backprop"), strict=True).blocks)]
    assert len(a) == len(b) > 3
    assert max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(a, b)) <= 1  # rounding only


def test_guided_backprop_output_is_the_guided_gradient(make_ctx, image_dir, identity_pre, walk_blocks):
    # behavioural: for ColourMeans the predicted class's guided gradient is positive in its own colour channel
    # and exactly zero in the others
    c = make_ctx(ColourMeans(), image_dir, class_names=["red", "green", "blue"], pre=identity_pre,
                 overrides={"guided_backprop": {"max_images": 1, "units": 1}})
    sec = run_technique(c, registry.get("guided_backprop"), strict=True)
    pred = sec.results["images"][0]["predicted"]
    k = ["red", "green", "blue"].index(pred)
    grid = next(b for b in walk_blocks(sec.blocks) if isinstance(b, Grid))
    guided_class = grid.items[-1].image.array.astype(int)  # last row = class score, last column = guided
    assert "guided" in grid.items[-1].label
    assert guided_class[..., k].mean() > 150
    for other in {0, 1, 2} - {k}:
        assert np.abs(guided_class[..., other] - 128).max() <= 1


class Functional(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.c2, self.kind = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), kind
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = F.relu(self.c1(x))
        x = self.c2(x)
        x = {"gelu": F.gelu, "silu": F.silu, "clamp": lambda t: torch.clamp(t, min=0)}.get(self.kind, F.relu)(x)
        x = F.max_pool2d(x, 2)
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("kind,label", [("gelu", "gelu"), ("silu", "silu"), ("clamp", "clamp(min=0)")])
def test_unreached_activations_are_reported(kind, label):
    # before: the note listed only what was patched
    from reportgen.attribution.relu_rules import gradient_rule

    m = Functional(kind).eval()
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    with gradient_rule(m, "guided") as rep:
        m(x).sum().backward()
    assert sum(rep.unreached.values()) == 1 and label in next(iter(rep.unreached))
    assert "1 activation call was not reached" in rep.describe() and "plain gradient" in rep.describe()
    assert rep.max_pool_calls == 1  # F.max_pool2d, no nn.MaxPool2d module


def test_import_bound_relu_gets_the_rule():
    # `from torch.nn.functional import relu` is dispatched through the watch to the patched F.relu
    from torch.nn.functional import relu as bound_relu

    from reportgen.attribution.relu_rules import gradient_rule

    class Bound(nn.Module):
        def __init__(self, module_relu: bool):
            super().__init__()
            torch.manual_seed(0)
            self.c = nn.Conv2d(3, 3, 3, padding=1)
            self.act = nn.ReLU() if module_relu else bound_relu

        def forward(self, x):
            return self.act(self.c(x)).sum((2, 3))

    x = torch.randn(1, 3, 6, 6)
    grads = []
    for module_relu in (False, True):
        m = Bound(module_relu).eval()
        xr = x.clone().requires_grad_(True)
        with gradient_rule(m, "guided") as rep:
            y = m(xr)
            (g,) = torch.autograd.grad(y[0, 0] - y[0, 1], xr)
        grads.append(g)
        if not module_relu:
            assert rep.functional_calls["F.relu"] == 1 and not rep.unreached
    assert torch.allclose(grads[0], grads[1], atol=1e-6)  # the same rule as an nn.ReLU module gets


def test_guided_backprop_sees_functional_max_pool_and_warns_about_gelu(make_ctx, image_dir, identity_pre, notes_of):
    # before: "no max-pooling, so deconvnet is image-independent" although F.max_pool2d ran
    c = make_ctx(Functional("gelu").eval(), image_dir, class_names=["red", "green", "blue"], pre=identity_pre,
                 overrides={"guided_backprop": {"layer": "c2"}})
    sec = run_technique(c, registry.get("guided_backprop"), strict=True)
    assert sec.results["max_pool_calls"] >= 1
    assert not any("no max-pooling" in n.text for n in notes_of(sec))
    assert sec.results["unreached_activations"] == 1
    assert any(n.kind == "warning" and "not reached" in n.text for n in notes_of(sec))
