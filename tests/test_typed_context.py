"""The typed context (issue 29, item 3): every ``ctx`` parameter annotated, typed memo keys (a string is refused),
each section's resize notes in its own record, and techniques that declare the sections they take from."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from reportgen import registry
from reportgen.cache import MemoKey
from reportgen.report import Section

PKG = Path(__file__).resolve().parents[1] / "reportgen"
# the run context's protocol; build.py's own functions take the concrete RunContext; cli.py's callbacks take click's
# context, render/html.py's filters Jinja's, and an autograd Function's forward/backward autograd's (Any)
CTX_TYPES = {"Ctx", "Ctx | None", "RunContext"}
OTHER_CTX = {"cli.py": {"click.Context"}, "render/html.py": {"Context"}}


def _modules() -> list[tuple[str, ast.Module]]:
    files = sorted(PKG.rglob("*.py"))
    return [(f.relative_to(PKG).as_posix(), ast.parse(f.read_text(encoding="utf-8"))) for f in files]


def _autograd_methods(tree: ast.Module) -> set[int]:
    out = set()
    for cls in ast.walk(tree):
        if isinstance(cls, ast.ClassDef) and any(ast.unparse(b).endswith("Function") for b in cls.bases):
            out |= {id(f) for f in cls.body if isinstance(f, ast.FunctionDef)}
    return out


def test_every_ctx_parameter_is_annotated_with_the_protocol():
    bad = []
    for rel, tree in _modules():
        autograd = _autograd_methods(tree)
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            a = fn.args
            for arg in a.posonlyargs + a.args + a.kwonlyargs:
                if arg.arg != "ctx":
                    continue
                ann = ast.unparse(arg.annotation) if arg.annotation is not None else None
                ok = CTX_TYPES | OTHER_CTX.get(rel, set()) | ({"Any"} if id(fn) in autograd else set())
                if ann not in ok:
                    bad.append(f"{rel}:{fn.lineno} {fn.name}(ctx: {ann})")
    assert not bad, "ctx parameters without the Ctx protocol (run annotate_ctx.py):\n" + "\n".join(bad)


def test_no_memo_call_takes_a_string_and_every_key_name_is_declared_once():
    strings, names = [], {}
    for rel, tree in _modules():
        for n in ast.walk(tree):
            if not isinstance(n, ast.Call):
                continue
            f = n.func
            if isinstance(f, ast.Attribute) and f.attr == "memo" and n.args:
                key = n.args[0]
                if isinstance(key, (ast.JoinedStr, ast.BinOp)) or (isinstance(key, ast.Constant)
                                                                    and isinstance(key.value, str)):
                    strings.append(f"{rel}:{n.lineno}")
            if isinstance(f, ast.Name) and f.id == "MemoKey" and n.args and isinstance(n.args[0], ast.Constant):
                names.setdefault(n.args[0].value, []).append(f"{rel}:{n.lineno}")
    assert not strings, f"ctx.memo with a string key: {strings}"
    twice = {k: v for k, v in names.items() if len(v) > 1}
    assert not twice, f"memo key names declared more than once: {twice}"
    # the keys that carry values between sections are among them, declared beside their producers
    for name in ("occlusion.occluder", "attention.probe", "attribution.map_store", "saliency.maps",
                 "sanity.protocol", "explain.cam_layer", "synthesis.style_transfer_grid"):
        assert name in names, name


def test_memo_refuses_a_string_key_and_tells_arguments_apart(ctx):
    with pytest.raises(TypeError, match="MemoKey"):
        ctx.memo("occlusion:occluder", lambda: 1)  # type: ignore[arg-type]
    key: MemoKey[list[int]] = MemoKey("test.counter")
    calls = []

    def make() -> list[int]:
        calls.append(1)
        return [len(calls)]

    first = ctx.memo(key, make)
    assert ctx.memo(key, make) is first and len(calls) == 1  # once per run
    assert ctx.memo(key.at(2), make) == [2] and ctx.memo(key.at(2), make) == [2]  # its own value per arguments
    assert ctx.memo(MemoKey("test.counter"), make) is first  # a key is its name and arguments
    assert key.at(2) != key.at("2") and key.at([1, 2]) == key.at([1, 2])


class _OnlySize:
    """Stands in for a probed model that takes only ``size`` x ``size`` inputs."""

    def __init__(self, size: int):
        self.size = size

    def fit(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == (self.size, self.size):
            return x
        return torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear")

    def describe(self) -> str:
        return f"only {self.size}x{self.size} px inputs"


def test_each_section_notes_its_own_resizes(ctx):
    from reportgen.build import INPUT_RESIZED, run_technique
    from types import SimpleNamespace

    ctx.model_probe = SimpleNamespace(sizes=_OnlySize(32))
    ctx.fit_input(torch.zeros(1, 3, 20, 20))  # outside any section: noted nowhere

    @registry.technique("zz_resizes", "Resizes", order=998)
    def resizes(ctx, opts):
        ctx.fit_input(torch.zeros(1, 3, 40, 48))
        return Section(id="zz_resizes", title="Resizes")

    @registry.technique("zz_fits", "Fits", order=999)
    def fits(ctx, opts):
        ctx.fit_input(torch.zeros(1, 3, 32, 32))  # already the model's size
        return Section(id="zz_fits", title="Fits")

    ctx.config.techniques.update(zz_resizes=registry.NoOptions(), zz_fits=registry.NoOptions())
    try:
        a = run_technique(ctx, registry.get("zz_resizes"), strict=True)
        b = run_technique(ctx, registry.get("zz_fits"), strict=True)
        a2 = run_technique(ctx, registry.get("zz_resizes"), strict=True)
    finally:
        registry.unregister("zz_resizes")
        registry.unregister("zz_fits")
    assert a.results[INPUT_RESIZED] == {"accepts": "only 32x32 px inputs", "resized": ["40x48 -> 32x32"]}
    assert INPUT_RESIZED not in b.results  # the first section's note did not leak into the next
    assert a2.results[INPUT_RESIZED]["resized"] == ["40x48 -> 32x32"]  # nor the stray one made outside

    with ctx.section("outer") as outer:
        ctx.fit_input(torch.zeros(1, 3, 16, 16))
        with ctx.section("inner") as inner:
            ctx.fit_input(torch.zeros(1, 3, 64, 64))
        ctx.fit_input(torch.zeros(1, 3, 8, 8))
    assert inner.resized == {(64, 64): (32, 32)}
    assert outer.resized == {(16, 16): (32, 32), (8, 8): (32, 32)}


def _info(id: str, order: int, uses: tuple[str, ...] = ()) -> registry.TechniqueInfo:
    return registry.TechniqueInfo(id=id, title=id, fn=lambda ctx, opts: Section(id=id, title=id),
                                  options=registry.NoOptions, presets={}, references=(), order=order, summary="",
                                  runs_in=registry.PRESETS, module=__name__, uses=uses)


def test_the_run_puts_a_technique_after_the_ones_it_uses():
    a, b, c, d = _info("zz_a", 1, uses=("zz_c",)), _info("zz_b", 2), _info("zz_c", 3), _info("zz_d", 4, ("zz_b",))
    assert [t.id for t in registry.run_order([a, b, c, d])] == ["zz_b", "zz_c", "zz_a", "zz_d"]
    assert [t.id for t in registry.run_order([b, c, d])] == ["zz_b", "zz_c", "zz_d"]  # already in order: as it is


def test_uses_of_an_unknown_technique_or_a_cycle_is_refused():
    with pytest.raises(ValueError, match="unknown technique.*'zz_nowhere'"):
        registry.run_order([_info("zz_a", 1, uses=("zz_nowhere",))])
    cyc = [_info("zz_a", 1, ("zz_b",)), _info("zz_b", 2, ("zz_c",)), _info("zz_c", 3, ("zz_a",)), _info("zz_d", 0)]
    with pytest.raises(ValueError, match="cycle: zz_a -> zz_b -> zz_c -> zz_a"):
        registry.run_order(cyc)
    with pytest.raises(ValueError, match="itself"):
        registry.technique("zz_self", "Self", uses=("zz_self",))
    registry.technique("zz_user", "User", order=1, uses=("zz_missing",))(lambda ctx, opts: Section(id="zz_user",
                                                                                                    title="User"))
    try:
        with pytest.raises(ValueError, match="zz_missing"):
            registry.all_techniques()
    finally:
        registry.unregister("zz_user")


def test_the_default_order_is_unchanged_and_the_built_in_uses_are_declared():
    infos = registry.all_techniques()
    assert infos == sorted(infos, key=lambda t: (t.order, t.id))  # the declared uses agree with `order`
    by_id = {t.id: t for t in infos}
    faith = set(registry.producers(by_id["faithfulness"]))
    assert faith >= {"saliency", "gradcam", "integrated_gradients", "guided_backprop", "vargrad", "sanity"}
    assert faith - {"sanity"} == {m.technique for m in registry.attribution_methods()}  # the list, expanded
    assert by_id["segmentation"].uses == ("saliency",)
    assert by_id["gram"].uses == ("texture",) and by_id["fast_style"].uses == ("style_transfer",)
    for t in infos:
        assert all(u in by_id for u in registry.producers(t)), t.id
