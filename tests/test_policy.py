"""The technique policy (reportgen/policy.py), enforced once in build.run_technique, and named seeds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from conftest import CLASSES
from reportgen import registry, sampling
from reportgen.build import compute_sections, run_technique
from reportgen.inspection.hooks import count_hooks, module_signature
from reportgen.policy import PolicyViolation, isolated
from reportgen.report import Note, Section


class TinyBN(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 4)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


@pytest.fixture()
def throwaway():
    made = []

    def reg(id, fn, **kw):
        registry.technique(id, id.title(), **kw)(fn)
        made.append(id)
        return registry.get(id)

    yield reg
    for id in made:
        registry.unregister(id)


def _leaky(ctx, opts):
    """Leaves a hook and moves BatchNorm's running stats (a train-mode forward), then 'succeeds'."""
    ctx.model.bn.register_forward_hook(lambda *a: None)
    ctx.model.bn.train()
    ctx.pixel_model(torch.rand(2, 3, 32, 32))
    ctx.model.bn.eval()
    return Section(id="leaky", title="Leaky")


def _seen(ctx, opts):
    s = Section(id="seen", title="Seen")
    s.results = {"training": any(m.training for m in ctx.model.modules()),
                 "grad": any(p.requires_grad for p in ctx.model.parameters())}
    return s


def test_leaking_technique_fails_its_own_section_and_the_model_is_clean_after(make_ctx, image_dir, throwaway):
    leaky = throwaway("leaky", _leaky, cacheable=False)
    seen = throwaway("seen", _seen, cacheable=False)
    model = TinyBN().train()  # the user's flags must come back as they were
    ctx = make_ctx(model, image_dir, class_names=CLASSES)
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    sig = module_signature(model)
    a, b = compute_sections(ctx, [leaky, seen])
    assert a.error and "1 hook left registered (now removed)" in a.error
    assert "bn.running_mean" in a.error and "(restored)" in a.error
    assert b.error is None and b.results == {"training": False, "grad": False}  # the policy, once, for everyone
    assert count_hooks(model) == 0 and module_signature(model) == sig
    assert all(torch.equal(v, stats[k]) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(PolicyViolation, match="hook"):
        run_technique(ctx, leaky, strict=True)
    assert count_hooks(model) == 0


def test_a_technique_that_raises_and_leaks_reports_both(make_ctx, image_dir, throwaway):
    def broken(ctx, opts):
        ctx.model.conv.register_forward_pre_hook(lambda *a: None)
        raise ValueError("boom")

    info = throwaway("broken", broken, cacheable=False)
    model = TinyBN().eval()
    ctx = make_ctx(model, image_dir, class_names=CLASSES)
    sec = run_technique(ctx, info)
    assert sec.error.startswith("ValueError: boom") and "1 hook left registered" in sec.error
    assert count_hooks(model) == 0


def test_isolation_sees_in_place_parameter_writes_and_swapped_modules():
    m = TinyBN()
    with pytest.raises(PolicyViolation, match="parameter"):
        with isolated(m):
            with torch.no_grad():
                m.conv.weight.mul_(1.0)
    with pytest.raises(PolicyViolation, match="submodule"):
        with isolated(m):
            m.head = nn.Linear(4, 4)


def test_torchscript_skips_layer_level_sections_from_the_metadata(make_ctx, image_dir):
    from conftest import make_tiny_cnn

    ctx = make_ctx(torch.jit.script(make_tiny_cnn()), image_dir, class_names=CLASSES)
    for info in registry.all_techniques():
        if not info.needs_layers:
            continue
        sec = run_technique(ctx, info, strict=True)  # strict: a skip is not an exception
        assert sec.error is None and isinstance(sec.results.get("unsupported"), str), info.id
        assert isinstance(sec.blocks[0], Note) and "TorchScript archives do not allow hooks" in sec.blocks[0].text


def test_named_seeds_are_reproducible_independent_and_strings_only(make_ctx, image_dir):
    ctx = make_ctx(TinyBN(), image_dir, class_names=CLASSES)
    a = ctx.rng("adversarial/targets").random(4)
    assert np.array_equal(a, ctx.rng("adversarial/targets").random(4))
    assert not np.array_equal(a, ctx.rng("adversarial/images").random(4))
    g1, g2 = ctx.generator("x/y"), ctx.generator("x/y")
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))
    assert 0 <= ctx.seed_for("embedding/layout") < 2**32
    assert sampling.seed_int(1, "a") != sampling.seed_int(2, "a")
    with pytest.raises(TypeError, match="named"):
        ctx.rng(9001)  # no magic integer offsets any more
    assert sampling.spread_indices(ctx, 3, "s") == sampling.spread_indices(ctx, 6, "s")[:3]


def test_target_choice_true_label_prediction_or_given(make_ctx, image_dir):
    ctx = make_ctx(TinyBN(), image_dir, class_names=CLASSES)
    idx = [0, 1, 2]
    labels = ctx.images.labels[idx]
    tgt, known = sampling.target_classes(ctx, idx)
    assert list(tgt) == list(labels) and known.all()
    rec = ctx.images.records[1]
    ctx.images.records[1] = dataclasses.replace(rec, label=None)  # unknown label: the prediction stands in
    try:
        tgt, known = sampling.target_classes(ctx, idx, preds=np.array([3, (labels[1] + 1) % 4, 1]))
        assert tgt[1] == (labels[1] + 1) % 4 and list(known) == [True, False, True]
        with pytest.raises(ValueError, match="predictions"):
            sampling.target_classes(ctx, idx)
    finally:
        ctx.images.records[1] = rec
    tgt, known = sampling.target_classes(ctx, idx, given=2)
    assert list(tgt) == [2, 2, 2] and list(known) == list(labels == 2)
    with pytest.raises(ValueError, match="out of range"):
        sampling.target_classes(ctx, idx, given=9)


def test_no_technique_declares_the_unsupported_marker():
    """run_technique marks a section the model cannot support with results["unsupported"]; a technique's own
    results must never use that key (segmentation's own "skipped" count once read as such a marker)."""
    from reportgen.build import UNSUPPORTED
    from reportgen.results_schema import declared

    for info in registry.all_techniques():
        assert not any(k.split(".")[0].split("[")[0] == UNSUPPORTED for k in declared(info.id)), info.id
