"""The extension point, tested from docs/adding-a-technique.md itself: its example module, put in a temporary
package, registers, runs, is cached, renders, is listed by ``reportgen techniques`` and passes the page's test."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import re
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import CLASSES, make_tiny_cnn
from reportgen import registry, results_schema
from reportgen.build import build_report
from reportgen.cli import main
from reportgen.report import Note

DOC = Path(__file__).resolve().parents[1] / "docs" / "adding-a-technique.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture()
def doc_technique(tmp_path, monkeypatch):
    """The page's module as ``docplugin.class_means`` (registered on import); unregistered afterwards."""
    module, _test = _python_blocks()
    pkg = tmp_path / "docplugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "class_means.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        yield importlib.import_module("docplugin.class_means")
    finally:
        registry.unregister("class_means")
        for name in ("docplugin.class_means", "docplugin"):
            sys.modules.pop(name, None)


def test_the_example_follows_the_pattern_it_teaches(doc_technique):
    """Typed bounded options, a frozen result, compute apart from present, and a technique function of a few lines."""
    module, _ = _python_blocks()
    body = module[module.index("def class_means("):]
    assert len(body.strip().splitlines()) <= 6
    assert dataclasses.is_dataclass(doc_technique.ClassMeans)
    assert doc_technique.ClassMeans.__dataclass_params__.frozen
    assert set(results_schema.schema(doc_technique.RESULTS)) == {"classes[].class", "classes[].images"}
    hint = typing.get_type_hints(doc_technique.ClassMeansOptions, include_extras=True)["max_classes"]
    assert any(isinstance(m, registry.Range) and m.ge == 1 for m in hint.__metadata__)
    present = inspect.signature(doc_technique.present_class_means).parameters
    assert "ctx" not in present, "presentation must work from the result alone"


def test_the_example_presents_a_result_without_a_model(doc_technique):
    """present_class_means needs only the result: a class resting on few images gets the warning, in order."""
    res = doc_technique.ClassMeans(("cat", "dog"), (7, 1), (np.zeros((4, 4, 3)), np.ones((4, 4, 3))))
    blocks = doc_technique.present_class_means(res)
    assert isinstance(blocks[0], Note) and blocks[0].kind == "warning"
    grid = blocks[-1]
    assert [i.label for i in grid.items] == ["cat", "dog"] and grid.items[1].sublabel == "1 image"
    assert grid.items[1].image.array.max() == 255 and grid.items[0].image.array.max() == 0
    assert results_schema.to_json(res.results()) == {"classes": [{"class": "cat", "images": 7},
                                                                 {"class": "dog", "images": 1}]}
    assert not any(isinstance(b, Note) for b in doc_technique.present_class_means(
        doc_technique.ClassMeans(("cat",), (5,), (np.zeros((4, 4, 3)),))))


def test_the_documented_technique_registers_runs_caches_renders_and_is_listed(doc_technique, image_dir, tmp_path):
    info = registry.get("class_means")
    assert info.module == "docplugin.class_means" and info.default_options("minimal").max_classes == 2
    listing = CliRunner().invoke(main, ["techniques"])
    assert listing.exit_code == 0 and "class_means" in listing.output and "Class mean images" in listing.output

    kw = dict(labels=CLASSES, preset="minimal", only=["class_means"], device="cpu", input_size=32,
              mean=(0.5,) * 3, std=(0.25,) * 3)
    first = build_report(make_tiny_cnn(), image_dir, tmp_path / "a", **kw)
    second = build_report(make_tiny_cnn(), image_dir, tmp_path / "b", **kw)
    (s1,), (s2,) = first.report.sections, second.report.sections
    assert s1.error is None and not s1.cached and s2.cached and s2.results == s1.results
    assert not results_schema.undeclared("class_means", s1.results)
    assert results_schema.check("class_means", s1.results) == []
    data = json.loads((tmp_path / "a" / "report.json").read_text())
    assert data["sections"][0]["results"]["classes"] and data["sections"][0]["figures"]
    page = (tmp_path / "a" / "sections" / "class_means.html").read_text()
    assert "Class mean images" in page and page.count("<img ") == len(s1.results["classes"])


def test_the_documented_test_passes(doc_technique, tiny_model, image_dir, make_ctx):
    _, test_code = _python_blocks()
    ns: dict = {}
    exec(compile(test_code, str(DOC), "exec"), ns)
    ns["test_class_means_average_the_images_of_each_predicted_class"](tiny_model, image_dir, make_ctx)
