"""Typed results (issue 29, item 2): every technique declares its report.json ``results`` as a frozen dataclass whose
fields are the keys, docs/results.md is derived from it, and a section's results are checked against it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from conftest import CLASSES
from reportgen import registry
from reportgen import results_schema as rs
from reportgen.build import make_context, run_technique
from reportgen.config import make_config

TECHNIQUES = [t.id for t in registry.all_techniques()]


@rs.result_type
class _Box:
    side: int
    """side in px"""


@rs.result_type
class _Row:
    image: str
    """image name"""
    class_: str
    """its class"""
    boxes: list[_Box]
    """its boxes"""
    map: np.ndarray = rs.local()


@rs.result_type
class _Res:
    layer: str
    """the layer"""
    rows: list[_Row]
    accuracy: rs.Absent[float] = rs.MISSING
    """(with labels) accuracy"""
    peak: float | None = None
    """largest value (null: none)"""
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    """class -> images"""


def _res(**kw) -> _Res:
    row = _Row(image="a.png", class_="cat", boxes=[_Box(side=3)], map=np.ones((4, 4)))
    return _Res(**{"layer": "conv1", "rows": [row], **kw})


def test_a_typed_result_serialises_to_the_plain_json_of_its_fields_in_order():
    out = rs.to_json(_res(counts={"cat": 2}))
    assert out == {"layer": "conv1", "rows": [{"image": "a.png", "class": "cat", "boxes": [{"side": 3}]}],
                   "peak": None, "counts": {"cat": 2}}
    assert list(out) == ["layer", "rows", "peak", "counts"]  # Absent left MISSING: no key; None: null
    assert rs.to_json(_res(accuracy=0.5))["accuracy"] == 0.5
    json.dumps(out)  # the local map stays behind
    with pytest.raises(dataclasses.FrozenInstanceError):
        _res().layer = "x"  # type: ignore[misc]


def test_the_schema_is_derived_from_the_fields_and_their_docs():
    assert rs.schema(_Res) == {
        "layer": "the layer", "rows[].image": "image name", "rows[].class": "its class",
        "rows[].boxes": "its boxes", "rows[].boxes[].side": "side in px", "accuracy": "(with labels) accuracy",
        "peak": "largest value (null: none)", "counts": "class -> images"}
    assert rs.undocumented(_Res) == []


def test_results_that_drift_from_the_type_are_named():
    good = rs.to_json(_res())
    assert rs.problems(_Res, good) == []
    assert rs.problems(_Res, {**good, "accuracy": 0.9}) == []
    assert rs.problems(_Res, {**good, "extra": 1}) == ["extra: not declared by _Res"]
    no_layer = {k: v for k, v in good.items() if k != "layer"}
    assert rs.problems(_Res, no_layer) == ["layer: missing"]
    assert rs.problems(_Res, {**good, "peak": "high"})[0].startswith("peak: 'high' is not")
    assert rs.problems(_Res, {**good, "counts": {"cat": 1.5}})[0].startswith("counts:")
    bad_row = {**good, "rows": [{"image": "a.png", "class": "cat", "boxes": [{"side": True}], "p": 1}]}
    assert rs.problems(_Res, bad_row) == ["rows[0].p: not declared by _Row", "rows[0].boxes[0].side: True is not int"]


@pytest.mark.parametrize("tid", TECHNIQUES)
def test_every_technique_has_a_documented_result_type(tid):
    tp = rs.result_type_of(tid)
    assert tp is not None, f"{tid}: its module's RESULTS is not a @result_type class"
    assert dataclasses.is_dataclass(tp) and tp.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert rs.undocumented(tp) == [], f"{tid}: fields without a meaning"
    assert rs.declared(tid) == rs.schema(tp)


def test_the_results_page_covers_every_technique():
    page = rs.results_markdown()
    for tid in TECHNIQUES:
        assert f"## `{tid}`:" in page, tid


@pytest.fixture(scope="module")
def sections(tiny_pre, tiny_model, image_dir):
    """Every technique run once on the tiny CNN (minimal preset, labelled images)."""
    c = make_context(tiny_model, image_dir, class_names=CLASSES, pre=tiny_pre, config=make_config("minimal"),
                     device="cpu")
    return {t.id: run_technique(c, t, strict=True) for t in registry.all_techniques()}


@pytest.mark.slow
@pytest.mark.parametrize("tid", TECHNIQUES)
def test_a_section_results_fit_its_result_type(tid, sections):
    """One case per technique (tests/regression/test_paper_fidelity.py makes the same check in one test, by default)."""
    sec = sections[tid]
    assert sec.error is None and sec.results, tid
    json.dumps(sec.results)
    assert rs.check(tid, sec.results) == [], tid


@rs.result_type
class _Score:
    p: float
    """probability"""


@rs.result_type
class _Named:
    l2_only: _Score = rs.named("L2 only")
    """the L2-only image's score"""


def test_a_named_field_writes_its_key_and_a_nested_result_is_checked():
    out = rs.to_json(_Named(l2_only=_Score(p=0.5)))
    assert out == {"L2 only": {"p": 0.5}} and rs.schema(_Named) == {"L2 only": "the L2-only image's score"}
    assert rs.problems(_Named, out) == []
    assert rs.problems(_Named, {"L2 only": {"p": "high"}}) == ["L2 only.p: 'high' is not float"]
