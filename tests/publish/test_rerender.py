"""`reportgen render`: a built report re-rendered from its stored tree, without the model or the images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reportgen import loading
from reportgen.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("rerender")
    out, cache = base / "report", base / "cache"
    r = CliRunner().invoke(main, ["demo", "--out", str(out), "--preset", "minimal", "--only", "saliency,neighbors",
                                  "--cache-dir", str(cache), "--theme", "light"])
    assert r.exit_code == 0, r.output
    return out, cache


def _theme(page: Path) -> str:
    text = page.read_text(encoding="utf-8")
    return "dark" if 'data-theme="dark"' in text else "light"


def test_render_changes_theme_without_the_model(built, tmp_path, monkeypatch):
    out, cache = built
    before = json.loads((out / "report.json").read_text())
    assert _theme(out / "index.html") == "light"

    def boom(*a, **k):
        raise AssertionError("render must not load the model")

    monkeypatch.setattr(loading, "load_model", boom)
    new = tmp_path / "dark"
    r = CliRunner().invoke(main, ["render", str(out), "--theme", "dark", "--out", str(new), "--cache-dir", str(cache)])
    assert r.exit_code == 0, r.output
    after = json.loads((new / "report.json").read_text())
    assert after["theme"] == "dark" and before["theme"] == "light"
    pages = [new / "index.html", *sorted((new / "sections").glob("*.html"))]
    assert len(pages) >= 3 and all(_theme(p) == "dark" for p in pages)
    assert [s["results"] for s in after["sections"]] == [s["results"] for s in before["sections"]]
    assert after["report_tree"] == before["report_tree"]
    # one self-contained file, and from that file back to a folder
    one = tmp_path / "one.html"
    r = CliRunner().invoke(main, ["render", str(new), "--out", str(one), "--cache-dir", str(cache)])
    assert r.exit_code == 0, r.output
    assert _theme(one) == "dark" and 'id="reportgen-report"' in one.read_text(encoding="utf-8")
    r = CliRunner().invoke(main, ["render", str(one), "--theme", "light", "--out", str(tmp_path / "back"),
                                  "--cache-dir", str(cache)])
    assert r.exit_code == 0, r.output
    assert _theme(tmp_path / "back" / "index.html") == "light"


def test_render_does_not_import_torch(built, tmp_path):
    out, cache = built
    code = ("import sys; from reportgen.cli import main\n"
            "try:\n main(['render', sys.argv[1], '--theme', 'dark', '--out', sys.argv[2],\n"
            "       '--cache-dir', sys.argv[3]])\n"
            "except SystemExit as e:\n assert not e.code, e.code\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    p = subprocess.run([sys.executable, "-c", code, str(out), str(tmp_path / "x"), str(cache)], cwd=ROOT,
                       capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "x" / "index.html").is_file()


def test_render_refuses_when_the_tree_is_gone(built, tmp_path):
    out, _ = built
    r = CliRunner().invoke(main, ["render", str(out), "--theme", "dark", "--cache-dir", str(tmp_path / "empty")])
    assert r.exit_code == 2
    assert "rebuild with reportgen build" in r.output
    assert _theme(out / "index.html") == "light"  # the report was left as it was


def test_rerender_reuses_encoded_pictures_and_links_unchanged_files(built, tmp_path, monkeypatch):
    import numpy as np

    from reportgen.cache import Cache
    from reportgen.render import assets as assets_mod
    from reportgen.render import render_report
    from reportgen.publish.rerender import load_tree
    from reportgen.report import Figure, ImageData, iter_images

    out, cache = built
    tree = load_tree(out, Cache(cache))
    memo = Cache(tmp_path / "encoded")  # the real cache: its safe unpickler must admit these entries
    first = tmp_path / "first"
    render_report(tree, first, theme="light", encoded=memo)
    names = sorted(p.name for p in (first / "assets").iterdir() if p.suffix in (".png", ".jpg"))
    assert names and list((tmp_path / "encoded").rglob("*.pkl"))

    def no_encoding(*a, **k):
        raise AssertionError("a picture was encoded again")

    monkeypatch.setattr(assets_mod, "encode_array", no_encoding)
    (first / "assets" / names[0]).write_bytes(b"tampered")  # never linked: its bytes are not the asset's
    second = tmp_path / "second"
    render_report(tree, second, theme="dark", encoded=memo, link_from=first)
    assert sorted(p.name for p in (second / "assets").iterdir() if p.suffix in (".png", ".jpg")) == names
    st = {n: ((first / "assets" / n).stat().st_ino, (second / "assets" / n).stat().st_ino) for n in names}
    assert all(a == b for n, (a, b) in st.items() if n != names[0])  # hard links, not copies
    assert st[names[0]][0] != st[names[0]][1]
    data = (second / "assets" / names[0]).read_bytes()
    assert assets_mod.content_hash(data) == names[0].split(".")[0]  # written afresh with the right bytes

    # a section whose pictures change is encoded again, alone; the others still come from the cache
    calls = []
    monkeypatch.setattr(assets_mod, "encode_array", lambda a, pixelated=False: (calls.append(a.shape),
                        (assets_mod.encode_png(a), "image/png"))[1])
    sec = next(s for s in tree.sections if any(True for _ in iter_images(s.blocks)))
    sec.blocks.append(Figure(image=ImageData(array=np.full((20, 30, 3), 7, np.uint8)), caption="new"))
    render_report(tree, tmp_path / "third", theme="light", encoded=memo)
    assert calls == [(20, 30, 3)]


def test_a_tampered_encoded_picture_entry_is_not_used(tmp_path):
    """Cached encodings are trusted only when they are PNG or JPEG bytes: an entry rewritten into, say, an SVG with
    a script is ignored and the picture is encoded afresh."""
    import numpy as np

    from reportgen.render.assets import AssetStore
    from reportgen.report import ImageData

    class Entries(dict):
        def put(self, key, obj):
            self[key] = obj

    img = ImageData(array=np.zeros((8, 8, 3), np.uint8))
    cache = Entries()
    first = AssetStore(tmp_path / "a", encoded=cache)
    first.begin_section([img], "s")
    good = first.add(img)
    first.end_section()
    assert cache and first.encoded_hits == 0
    for k, v in list(cache.items()):
        if isinstance(v, dict):
            cache[k] = {a: (b"<svg onload=alert(1)>", "image/svg+xml") for a in v}
    again = AssetStore(tmp_path / "b", encoded=cache)
    again.begin_section([img], "s")
    asset = again.add(img)
    assert again.encoded_hits == 0 and asset.path == good.path and asset.mime == "image/png"
