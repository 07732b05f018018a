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


def test_the_side_caches_are_keyed_by_their_code_too(editable_copy, tmp_path, image_dir, tiny_pre):
    """Three caches live outside the section key: the image scan (decode results by path, size and mtime), the
    encoded pictures of a re-render, and fast style's trained network. Each misses after its code is edited."""
    import numpy as np

    from reportgen.build import make_context
    from reportgen.config import make_config
    from reportgen.imageset import _checked_files
    from reportgen.render.assets import AssetStore
    from reportgen.report import ImageData
    from reportgen.techniques.fast_style import fast_style

    c = cache.Cache(tmp_path / "c")
    files = sorted(p for p in Path(image_dir).rglob("*") if p.is_file())
    scans: list[int] = []

    def progress(it, _what):
        scans.append(1)
        return it

    first = _checked_files(files, Path(image_dir), progress, c)
    assert _checked_files(files, Path(image_dir), progress, c) == first and len(scans) == 1  # remembered
    editable_copy("imageset.py")
    assert _checked_files(files, Path(image_dir), progress, c) == first and len(scans) == 2  # the edit re-reads

    pic = ImageData(np.zeros((8, 8, 3), np.uint8))
    key = AssetStore(tmp_path / "o", encoded=c)._array_key(pic)
    assert AssetStore(tmp_path / "o", encoded=c)._array_key(ImageData(pic.array)) == key
    editable_copy("render/assets.py")
    assert AssetStore(tmp_path / "o", encoded=c)._array_key(ImageData(pic.array)) != key

    ctx = make_context(make_tiny_cnn(), image_dir, class_names=CLASSES, pre=tiny_pre, config=make_config("minimal"),
                       cache=c)
    opts = ctx.config.options("fast_style")
    assert fast_style(ctx, opts).results["cached"] == [False]
    assert fast_style(ctx, opts).results["cached"] == [True]  # the trained network is reused
    editable_copy("synthesis/transformnet.py")
    assert fast_style(ctx, opts).results["cached"] == [False]  # not after its training code changed
