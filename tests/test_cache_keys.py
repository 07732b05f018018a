"""Cache keys cannot go stale: a section's key covers every module its technique reaches through imports
(transitively, function-level and ``from .. import pkg as X`` included) and reportgen's version.

Checked against the old ``registry.code_hash`` (the modules whose names the technique module binds, no
version): the helper-edit, version-bump and rebuild tests below fail on it; saliency's key ignored an edit of
``attribution/gradients.py`` and every key ignored ``__version__``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from conftest import CLASSES, make_tiny_cnn

import reportgen
from reportgen import cache, registry

ROOT = Path(reportgen.__file__).parent
HELPER = "attribution/gradients.py"  # saliency -> attribution (package) -> attribution.gradients


@pytest.fixture
def editable_copy(tmp_path, monkeypatch):
    """The package's sources copied to a tmp folder, every loaded reportgen module pointed at its copy (so
    keys are computed from the copy), and a function that edits one copied file."""
    copy = tmp_path / "reportgen"
    for src in ROOT.rglob("*.py"):
        dst = copy / src.relative_to(ROOT)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    for name, mod in list(sys.modules.items()):
        file = getattr(mod, "__file__", None)
        if (name == "reportgen" or name.startswith("reportgen.")) and file and Path(file).is_relative_to(ROOT):
            monkeypatch.setattr(mod, "__file__", str(copy / Path(file).relative_to(ROOT)))

    def edit(rel: str, old: str = "", new: str = "") -> None:
        p = copy / rel
        text = p.read_text()
        if old:
            assert old in text, f"{old!r} not in {rel}"
            text = text.replace(old, new, 1)
        else:
            text += "\n# edited\n"
        p.write_text(text)

    return edit


def _keys() -> dict[str, str]:
    return {t.id: registry.code_hash(t) for t in registry.all_techniques()}


def test_editing_a_helper_two_imports_away_changes_that_key_and_no_unrelated_one(editable_copy):
    before = _keys()
    editable_copy(HELPER)
    after = _keys()
    assert after["saliency"] != before["saliency"]
    assert after["integrated_gradients"] != before["integrated_gradients"]  # also reaches the helper
    assert after["filters"] == before["filters"] and after["card"] == before["card"]
    assert after["embedding"] == before["embedding"]


def test_a_function_level_import_counts(editable_copy):
    """RunContext.features() imports the feature pass inside the method: every section handed ``ctx`` and the
    feature-pass key see an edit of the pass's row store, and an attribution helper leaves the pass alone."""
    before, feat = _keys(), cache.code_digest("reportgen.features.compute")
    editable_copy("features/rowstore.py")
    assert cache.code_digest("reportgen.features.compute") != feat
    assert _keys()["embedding"] != before["embedding"]
    feat = cache.code_digest("reportgen.features.compute")
    editable_copy("inspection/receptive.py")
    assert cache.code_digest("reportgen.features.compute") != feat
    feat = cache.code_digest("reportgen.features.compute")
    editable_copy(HELPER)
    assert cache.code_digest("reportgen.features.compute") == feat


def test_a_version_bump_changes_every_key(monkeypatch):
    before = _keys()
    monkeypatch.setattr(reportgen, "__version__", reportgen.__version__ + ".post1")
    after = _keys()
    assert all(after[k] != before[k] for k in before)
    feat = cache.code_digest("reportgen.features.compute")
    monkeypatch.setattr(reportgen, "__version__", reportgen.__version__ + ".post2")
    assert cache.code_digest("reportgen.features.compute") != feat


def test_import_forms_are_followed(tmp_path, monkeypatch):
    """Relative and absolute, ``from .. import pkg as X`` (pkg/__init__ and what it imports), function-level."""
    pkg = tmp_path / "keypkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "tech.py": "from . import sub as S\nimport keypkg.absolute\ndef f():\n    from .lazy import g\n    return g\n",
        "sub/__init__.py": "from .deep import h\n",
        "sub/deep.py": "from ..leaf import k\n",
        "leaf.py": "",
        "absolute.py": "",
        "lazy.py": "",
        "unrelated.py": "",
        "sub/unused.py": "",
    }
    for rel, text in files.items():
        (pkg / rel).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    import keypkg  # noqa: F401 - only the top package is imported; the closure is read from source

    try:
        found = set(cache.import_closure("keypkg.tech"))
        assert found == {"keypkg.tech", "keypkg.sub", "keypkg.sub.deep", "keypkg.leaf", "keypkg.absolute",
                         "keypkg.lazy"}
        assert "keypkg.sub.deep" not in sys.modules  # found without importing
    finally:
        sys.modules.pop("keypkg", None)


def test_rebuild_recomputes_the_edited_section_only(editable_copy, tmp_path, image_dir):
    from reportgen.build import build_report

    def build(out):
        res = build_report(make_tiny_cnn(), image_dir, tmp_path / out, labels=CLASSES, preset="minimal",
                           only=["filters", "saliency"], resize=None, input_size=32, mean=(0.5,) * 3,
                           std=(0.25,) * 3, device="cpu", cache_dir=tmp_path / "cache")
        return {s.id: s.cached for s in res.report.sections}

    assert build("a") == {"filters": False, "saliency": False}
    assert build("b") == {"filters": True, "saliency": True}
    editable_copy(HELPER)
    assert build("c") == {"filters": True, "saliency": False}
