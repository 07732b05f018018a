"""The extension point end to end (a technique from a 20-line module of another package), registry metadata
that is real (code hash in the cache key, option help), and no import cycle in reportgen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CLASSES, make_tiny_cnn
from reportgen import registry

ROOT = Path(__file__).resolve().parents[1]

EXTENSION = '''\
"""Mean brightness: the model's view of how bright each image is (an extension-point test)."""
from dataclasses import dataclass, field

import torch

from reportgen.registry import technique
from reportgen.report import Section, Table


@dataclass
class BrightnessOptions:
    max_images: int = field(default=3, metadata={"help": "How many images to measure."})


@technique("brightness", "Mean brightness", options=BrightnessOptions, order=999,
           summary="The mean pixel value of a few images beside the model's top class: a plain table.")
def brightness(ctx, opts: BrightnessOptions) -> Section:
    idx = list(range(min(opts.max_images, len(ctx.images))))
    x = ctx.to_device(ctx.images.batch(idx))
    with torch.inference_mode():
        top = ctx.pixel_model(x).argmax(1).tolist()
    rows = [[ctx.images.name(i), round(float(x[k].mean()), 4), ctx.class_name(top[k])] for k, i in enumerate(idx)]
    sec = Section(id="brightness", title="Mean brightness", results={"mean": [r[1] for r in rows]})
    return sec.add(Table(columns=["image", "mean pixel", "top class"], rows=rows, numeric=[1]))
'''


@pytest.fixture()
def extension(tmp_path, monkeypatch):
    pkg = tmp_path / "ext" / "myext"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "brightness.py").write_text(EXTENSION)
    assert len(EXTENSION.splitlines()) <= 26
    monkeypatch.syspath_prepend(str(pkg.parent))
    import importlib

    registry.unregister("brightness")
    sys.modules.pop("myext.brightness", None)
    importlib.import_module("myext.brightness")
    yield pkg / "brightness.py"
    registry.unregister("brightness")
    sys.modules.pop("myext.brightness", None)
    sys.modules.pop("myext", None)


def test_a_technique_from_a_20_line_module_is_registered_cached_rendered_and_listed(extension, tmp_path,
                                                                                     image_dir):
    from reportgen.build import build_report

    info = registry.get("brightness")
    assert info.module == "myext.brightness" and registry.option_help(info.options, "max_images")

    def build(out):
        return build_report(make_tiny_cnn(), image_dir, tmp_path / out, labels=CLASSES, preset="minimal",
                            only=["card", "brightness"], resize=None, input_size=32, device="cpu",
                            cache_dir=tmp_path / "cache")

    first = build("a")
    sec = {s.id: s for s in first.report.sections}["brightness"]
    assert first.ok and not sec.cached and len(sec.results["mean"]) == 3
    assert all(0.0 <= m <= 1.0 for m in sec.results["mean"])
    data = json.loads((first.out / "report.json").read_text())
    page = next(s for s in data["sections"] if s["id"] == "brightness")["page"]
    html = (first.out / page).read_text()
    assert "Mean brightness" in html and "mean pixel" in html and first.report.sections[0].id == "card"
    again = {s.id: s for s in build("b").report.sections}["brightness"]
    assert again.cached and again.results == sec.results  # served from the cache
    # editing the technique's code changes its cache key: never a stale section
    extension.write_text(EXTENSION.replace("round(float(x[k].mean()), 4)", "round(float(x[k].mean()), 3)"))
    edited = {s.id: s for s in build("c").report.sections}["brightness"]
    assert not edited.cached

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(extension.parent.parent), str(ROOT)]),
               REPORTGEN_TECHNIQUES="myext.brightness")
    out = subprocess.run([sys.executable, "-m", "reportgen", "techniques", "-v"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "brightness" in out.stdout and "Mean brightness" in out.stdout and "brightness.max_images" in out.stdout


def test_editing_a_technique_changes_its_code_hash(extension):
    info = registry.get("brightness")
    before = registry.code_hash(info)
    assert before == registry.code_hash(info)
    extension.write_text(EXTENSION + "\n# an edit\n")
    assert registry.code_hash(info) != before
    # it covers the reportgen modules the technique imports names from, too
    saliency = registry.get("saliency")
    assert registry.code_hash(saliency) != registry.code_hash(registry.get("filters"))


def test_every_option_has_help():
    missing = [f"{t.id}.{f.name}" for t in registry.all_techniques() for f in t.option_fields
               if not registry.option_help(t.options, f.name)]
    assert not missing, f"options without help (field metadata or attribute docstring): {missing}"


def test_planned_layers_come_from_the_registry():
    assert registry.get("patches").plans_layers is not None
    import reportgen.features.compute as F

    assert not hasattr(F, "plans_layers") and not hasattr(F, "_PLANNERS")


def test_reportgen_has_no_import_cycle():
    from importgraph import cycles, module_graph

    pkg = ROOT / "reportgen"
    assert not cycles(module_graph(pkg)), cycles(module_graph(pkg))
    # imports deferred into functions too, apart from the package root (only __version__ and a lazy wrapper)
    g = {k: v - {"reportgen"} for k, v in module_graph(pkg, deferred=True).items() if k != "reportgen"}
    assert not cycles(g), cycles(g)


def test_the_house_stays_grouped():
    """Subsystems live in packages: at most 25 modules at the top of reportgen/, none over 500 lines, and a
    technique takes another's pieces from a shared helper module, never from that technique's module."""
    from importgraph import module_graph

    pkg = ROOT / "reportgen"
    top = sorted(p.name for p in pkg.glob("*.py"))
    assert len(top) <= 25, top
    long = {str(p.relative_to(ROOT)): n for p in pkg.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long
    techniques = {f"reportgen.techniques.{p.stem}" for p in (pkg / "techniques").glob("*.py")
                  if not p.stem.startswith("_")}
    g = module_graph(pkg, deferred=True)
    crossing = {m: sorted(g[m] & techniques) for m in techniques if g.get(m, set()) & techniques}
    assert not crossing, crossing


def test_architecture_doc_names_modules_that_exist():
    """docs/ARCHITECTURE.md follows the tree: every `something.py` it names exists in reportgen/ or tests/ (any
    package) or at the repository root (the `file.py:factory` SPEC form aside)."""
    import re

    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    have = {p.name for d in ("reportgen", "tests") for p in (ROOT / d).rglob("*.py")}
    have |= {p.name for p in ROOT.glob("*.py")}
    named = set(re.findall(r"([A-Za-z_][\w]*\.py)\b", doc)) - {"file.py"}
    assert named and not named - have, sorted(named - have)
