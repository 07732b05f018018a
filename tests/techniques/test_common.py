"""Checks every registered technique must pass, one test case per technique (xplique's pattern): a failure names
its technique, and ``-k saliency`` selects saliency's cases."""

from __future__ import annotations

import dataclasses
import types
import typing

import pytest

from reportgen import registry
from reportgen.config import ConfigError, field_types, make_config

TECHNIQUES = [t.id for t in registry.all_techniques()]
# the TorchScript check scripts the tiny CNN: torch deprecates torch.jit.script, the models users bring still use it
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")


def _numeric(tp: typing.Any) -> bool:
    """Whether an option's type holds numbers (int or float, optional, or a list of them); bools are not."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _numeric(args[0])
    if origin in (typing.Union, types.UnionType):
        return any(_numeric(a) for a in args if a is not type(None))
    if origin in (list, tuple):
        return bool(args) and _numeric(args[0])
    return tp in (int, float)


def _bounded(tp: typing.Any) -> bool:
    """Whether every number in the type carries a ``registry.Range`` (list items included)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return any(isinstance(m, registry.Range) for m in tp.__metadata__) or _bounded(args[0])
    if origin in (typing.Union, types.UnionType):
        return all(_bounded(a) for a in args if a is not type(None) and _numeric(a))
    if origin in (list, tuple):
        return _bounded(args[0])
    return not _numeric(tp)


def _numeric_fields(tid: str) -> dict[str, typing.Any]:
    cls = registry.get(tid).options
    return {n: tp for n, tp in field_types(cls).items() if _numeric(tp)}


@pytest.mark.parametrize("tid", TECHNIQUES)
def test_every_numeric_option_is_bounded(tid):
    loose = [n for n, tp in _numeric_fields(tid).items() if not _bounded(tp)]
    assert not loose, f"{tid}: numeric options without a Range: {loose}"


def _below(tp: typing.Any) -> typing.Any:
    """A value the option's first lower bound refuses (None when the type has no lower bound)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        for m in tp.__metadata__:
            if isinstance(m, registry.Range) and (m.ge is not None or m.gt is not None):
                low = m.ge - 1 if m.ge is not None else m.gt
                return int(low) if _numeric(args[0]) and args[0] is int else low
        return _below(args[0])
    if origin in (typing.Union, types.UnionType):
        return next((v for a in args if a is not type(None) for v in [_below(a)] if v is not None), None)
    if origin in (list, tuple):
        v = _below(args[0])
        return None if v is None else [v]
    return None


@pytest.mark.parametrize("tid", TECHNIQUES)
def test_out_of_range_options_are_refused_when_the_config_is_made(tid):
    """``--set faithfulness.steps=0`` must fail before any work, naming the option, not inside the section."""
    cases = {n: v for n, tp in _numeric_fields(tid).items() if (v := _below(tp)) is not None}
    if not cases:
        pytest.skip(f"{tid} has no numeric option with a lower bound")
    for name, value in cases.items():
        with pytest.raises(ConfigError, match=name):
            make_config("minimal", technique_overrides={tid: {name: value}})


@pytest.mark.parametrize("tid", TECHNIQUES)
def test_preset_values_are_admitted(tid):
    for preset in registry.PRESETS:
        opts = make_config(preset).options(tid)
        assert dataclasses.is_dataclass(opts)


@pytest.mark.parametrize("tid", TECHNIQUES)
def test_declares_its_results(tid):
    """Every technique declares the ``report.json`` results it writes (``docs/results.md`` is generated from it)."""
    from reportgen.results_schema import declared

    assert declared(tid), f"{tid} declares no RESULTS"


# ----- every technique run on the tiny CNN: one run per configuration, shared by the checks below -----------------
# the minimal preset plus these overrides: the same code paths with fewer steps, so the registry runs in seconds
FAST: dict[str, dict[str, typing.Any]] = {
    "fast_style": {"iterations": 2, "train_images": 2, "batch": 1, "width": 4},
    "faithfulness": {"max_images": 1, "steps": 4, "mufidelity_runs": 4, "bootstrap": 0, "road": False, "sanity": False},
    "texture": {"steps": 3, "nn_source_size": 16, "nn_size": 16, "nn_levels": 1, "image_size": 16},
    "style_transfer": {"steps": 2, "image_size": 16, "ratios": [1.0, 100.0]},
    "adversarial": {"max_steps": 8, "attack_images": 2, "pgd_steps": 1, "epsilons": [8.0]},
    "inversion": {"steps": 6},
    "corruptions": {"corruptions": ["gaussian_noise", "jpeg"], "severities": [1, 5], "bootstrap": 100},
    "occlusion": {"window": 16, "stride": 16},
    "class_visualization": {"steps": 4, "num_classes": 1},
    "integrated_gradients": {"max_images": 1, "max_steps": 8},
    "smoothgrad": {"samples": 4},
    "sanity": {"ig_steps": 4, "stages": 1},
    "deepdream": {"octaves": 1, "steps": 2},
}


@dataclasses.dataclass
class ModelState:
    """What a technique must leave as it found it: hooks (per module, and torch's global ones), train flags,
    ``requires_grad`` and a digest of every parameter and buffer."""

    hooks: dict[str, int]
    global_hooks: dict[str, int]
    training: dict[str, bool]
    requires_grad: dict[str, bool]
    digest: str
    structure: tuple = ()  # (name, class, forward patched on the instance) per module: nothing swapped


_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called",
               "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
               "_load_state_dict_post_hooks")


def _global_hooks() -> dict[str, int]:
    import torch.nn.modules.module as M

    return {k: len(v) for k, v in vars(M).items() if k.startswith("_global_") and isinstance(v, dict)}


def _state(model: typing.Any) -> ModelState:
    import hashlib

    hooks = {f"{name or '<root>'}.{attr}": len(d) for name, m in model.named_modules()
             for attr in _HOOK_DICTS if (d := getattr(m, attr, None))}
    h = hashlib.sha256()
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        h.update(name.encode() + t.detach().cpu().contiguous().numpy().tobytes())
    return ModelState(hooks, _global_hooks(), {n: m.training for n, m in model.named_modules()},
                      {n: p.requires_grad for n, p in model.named_parameters()}, h.hexdigest(),
                      tuple((n, type(m).__name__, "forward" in vars(m)) for n, m in model.named_modules()))


@dataclasses.dataclass
class Run:
    section: typing.Any  # reportgen.report.Section
    before: ModelState  # as the test handed the model over: some modules in train mode, some in eval
    inside: ModelState | None  # at the end of the technique's own body, before the policy's audit cleans up
    after: ModelState


def _scramble_global_rngs(kind: str) -> None:
    """Different global random states for each run: a technique must draw from its own seeded generators
    (``ctx.rng``, ``reportgen.sampling``), so the same seed gives the same results whatever ran before."""
    import random

    import numpy as np
    import torch

    k = sum(kind.encode())
    random.seed(k)
    np.random.seed(k)
    torch.manual_seed(k)


def run_once(tid: str, kind: str, model: typing.Any, images: typing.Any, pre: typing.Any) -> Run:
    """Run technique ``tid`` as a build would (``run_technique``, minimal preset + ``FAST``) on ``model``, noting
    its state before, at the end of the technique's own body and after."""
    from reportgen.build import make_context, run_technique

    cfg = make_config("minimal", technique_overrides={tid: FAST.get(tid, {})})
    ctx = make_context(model, images, class_names=["red", "green", "blue", "white"], pre=pre, config=cfg,
                       device="cpu")
    if kind != "torchscript":
        model.train()
        model.features[1].train(False)  # a mixed state must come back as it was
    info = registry.get(tid)
    inside: list[ModelState] = []

    def body(ctx, opts):
        sec = info.fn(ctx, opts)
        inside.append(_state(ctx.pixel_model))
        return sec

    before = _state(ctx.pixel_model)
    _scramble_global_rngs(kind)
    sec = run_technique(ctx, dataclasses.replace(info, fn=body))
    return Run(sec, before, inside[0] if inside else None, _state(ctx.pixel_model))


@pytest.fixture(scope="module")
def run_of(tiny_cnn_factory, four_images, tiny_pre):
    """``run_of(tid, kind)``: the technique run once per kind and module ("plain", "again": a second plain run
    on a fresh model and context, "torchscript": on ``torch.jit.script`` of the tiny CNN)."""
    import torch

    runs: dict[tuple[str, str], Run] = {}

    def run(tid: str, kind: str = "plain") -> Run:
        if (tid, kind) not in runs:
            model = tiny_cnn_factory()
            if kind == "torchscript":
                model = torch.jit.script(model)
            runs[tid, kind] = run_once(tid, kind, model, four_images, tiny_pre)
        return runs[tid, kind]

    return run


def _ran(run: Run, tid: str) -> None:
    sec = run.section
    assert sec.error is None, f"{tid} failed on the tiny CNN: {sec.error}"
    if "unsupported" not in sec.results:
        assert run.inside is not None, f"{tid}: its body did not run"


@pytest.mark.parametrize("tid", TECHNIQUES)
def test_runs_and_fills_its_declared_results(tid, run_of):
    """The section is ok (or a reasoned ``unsupported``), its results are plain JSON, every key it writes is
    declared in ``RESULTS`` and every required declared key is written."""
    import json

    from reportgen import results_schema as rs

    sec = run_of(tid).section
    _ran(run_of(tid), tid)
    json.dumps(sec.results, allow_nan=True)
    if "unsupported" in sec.results:
        assert isinstance(sec.results["unsupported"], str) and sec.results["unsupported"].strip(), tid
        return
    assert sec.blocks, f"{tid} produced an empty section"
    assert not rs.undeclared(tid, sec.results), f"{tid} wrote undeclared results: {rs.undeclared(tid, sec.results)}"
    assert not rs.missing(tid, sec.results), f"{tid} left declared results out: {rs.missing(tid, sec.results)}"
    assert rs.check(tid, sec.results) == [], f"{tid}: results differ from its result type: {rs.check(tid, sec.results)}"


@pytest.mark.parametrize("tid", TECHNIQUES)
def test_leaves_no_hook(tid, run_of):
    """No forward/backward/state-dict hook on any module of the model, nor a torch global module hook, at the end
    of the technique's own body (before the policy would remove a leak) and after the run."""
    run = run_of(tid)
    _ran(run, tid)
    for when, state in (("in its body", run.inside), ("after the run", run.after)):
        if state is None:
            continue
        assert state.hooks == run.before.hooks, f"{tid} left hooks {when}: {state.hooks}"
        assert state.global_hooks == run.before.global_hooks, f"{tid} left global hooks {when}"
    assert run.after.structure == run.before.structure, f"{tid} swapped or patched modules"


@pytest.mark.parametrize("tid", TECHNIQUES)
def test_leaves_the_train_flags_as_they_were(tid, run_of):
    """The model comes back with its mixed train/eval flags and ``requires_grad``; the body ran in eval mode."""
    run = run_of(tid)
    _ran(run, tid)
    if run.inside is not None:
        flipped = sorted(n for n, t in run.inside.training.items() if t)
        assert not flipped, f"{tid} switched modules to train mode: {flipped}"
    assert run.after.training == run.before.training, f"{tid} changed train/eval flags"
    assert run.after.requires_grad == run.before.requires_grad, f"{tid} changed requires_grad"


@pytest.mark.parametrize("tid", TECHNIQUES)
def test_leaves_parameters_and_buffers_unchanged(tid, run_of):
    run = run_of(tid)
    _ran(run, tid)
    if run.inside is not None:
        assert run.inside.digest == run.before.digest, f"{tid} wrote parameters or buffers"
    assert run.after.digest == run.before.digest, f"{tid} wrote parameters or buffers"


@pytest.mark.parametrize("tid", TECHNIQUES)
def test_a_torchscript_model_is_run_or_skipped_with_a_reason(tid, run_of):
    """``torch.jit.script`` of the tiny CNN (no hooks, no module tree to read): ok, or ``unsupported`` with the
    reason; never a failed section."""
    from reportgen import results_schema as rs

    sec = run_of(tid, "torchscript").section
    assert sec.error is None, f"{tid} failed on a TorchScript model: {sec.error}"
    if "unsupported" in sec.results:
        assert isinstance(sec.results["unsupported"], str) and sec.results["unsupported"].strip(), tid
    else:
        assert not rs.undeclared(tid, sec.results) and not rs.missing(tid, sec.results), tid


def _timing_keys(tid: str) -> set[str]:
    """Declared results that are wall times (or ratios of them): they differ between two runs by nature."""
    import re

    from reportgen.results_schema import declared

    return {k.split(".")[-1] for k, m in declared(tid).items() if re.search(r"\btime\b|, m?s\b", m)}


def _without(value: typing.Any, keys: set[str]) -> typing.Any:
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(v, keys) for v in value]
    return value


@pytest.mark.parametrize("tid", TECHNIQUES)
def test_the_same_seed_gives_the_same_results(tid, run_of):
    """Two runs on fresh copies of the model and fresh contexts write the same results, wall times aside."""
    import json

    first, second = run_of(tid), run_of(tid, "again")
    _ran(first, tid)
    _ran(second, tid)
    keys = _timing_keys(tid)
    a = json.dumps(_without(first.section.results, keys), sort_keys=True)
    b = json.dumps(_without(second.section.results, keys), sort_keys=True)
    assert a == b, f"{tid}: two runs with the same seed differ"


@pytest.mark.parametrize("leak", ["module hook", "global hook", "train flag", "parameter write"])
def test_the_checks_see_a_planted_leak(leak, tiny_cnn_factory, four_images, tiny_pre, monkeypatch):
    """The state the checks above compare does change when a technique's body leaks (the policy's own audit
    then cleans up or fails the section: the checks look inside the body as well, and at torch's global hooks,
    which the audit does not watch)."""
    import torch

    from reportgen.report import Section

    handles = []

    def leaky(ctx, opts):
        inner = ctx.pixel_model.model
        if leak == "module hook":
            handles.append(inner.features[0].register_forward_hook(lambda *a: None))
        elif leak == "global hook":
            handles.append(torch.nn.modules.module.register_module_forward_hook(lambda *a: None))
        elif leak == "train flag":
            inner.features[0].train()
        else:
            with torch.no_grad():
                inner.classifier.bias.mul_(1.5)
        return Section(id="saliency", title="Saliency")

    monkeypatch.setitem(registry._REGISTRY, "saliency", dataclasses.replace(registry.get("saliency"), fn=leaky))
    try:
        run = run_once("saliency", "plain", tiny_cnn_factory(), four_images, tiny_pre)
    finally:
        for h in handles:
            h.remove()
    assert run.inside is not None
    seen = {"module hook": run.inside.hooks != run.before.hooks,
            "global hook": run.inside.global_hooks != run.before.global_hooks,
            "train flag": any(run.inside.training.values()),
            "parameter write": run.inside.digest != run.before.digest}
    assert [k for k, v in seen.items() if v] == [leak]
