"""The HTML renderer: files, links, escaping, CSP, assets, themes, single-file mode (no torch needed)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

from reportgen.report import (
    OVERVIEW, Figure, Grid, GridItem, ImageData, KeyValues, Note, Report, RunInfo, Section,
)
from sample_report import REF, _matplotlib_png, make_report

ROOT = Path(__file__).resolve().parents[2]
XSS_RAW = "<img src=x onerror"  # must never appear unescaped in any page
CSP_EXPECTED = ("default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                "base-uri 'none'; form-action 'none'")



class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attr, value)
        self.ids: set[str] = set()
        self.metas: list[dict] = []
        self.imgs: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "meta":
            self.metas.append(a)
        if tag == "img":
            self.imgs.append(a)
        for k in ("href", "src"):
            if k in a and a[k] is not None:
                self.refs.append((tag, k, a[k]))


def parse(path: Path) -> _Links:
    p = _Links()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def render(tmp_path: Path, **kw) -> tuple[Path, dict]:
    from reportgen.render import render_report

    out = tmp_path / "out"
    out.mkdir()
    (out / ".cache").mkdir()  # build.py's cache folder may already be there
    manifest = render_report(make_report(), out, **kw)
    return out, manifest


def check_pages(out: Path, manifest: dict) -> None:
    ref_urls = {REF.url}
    for page in manifest["pages"]:
        path = out / page
        assert path.is_file(), page
        text = path.read_text(encoding="utf-8")
        assert XSS_RAW not in text, f"unescaped user text in {page}"
        assert "<script" not in text.lower(), page
        assert "javascript:" not in text.lower(), page
        p = parse(path)
        csp = [m for m in p.metas if (m.get("http-equiv") or "").lower() == "content-security-policy"]
        assert csp and csp[0]["content"] == CSP_EXPECTED, page
        assert f'content="{CSP_EXPECTED}"' in text, page
        for img in p.imgs:
            assert img.get("alt"), (page, img)
            assert img.get("width", "").isdigit() and img.get("height", "").isdigit(), (page, img)
            assert img.get("loading") == "lazy", (page, img)
        for tag, _attr, url in p.refs:
            if url.startswith("data:"):
                assert tag in ("img", "link"), (page, tag, url[:40])
                continue
            parts = urlsplit(url)
            if parts.scheme in ("http", "https"):
                # the only network URLs allowed are <a> links to the papers
                assert tag == "a" and url in ref_urls, (page, tag, url)
                continue
            assert not parts.scheme and not parts.netloc and not url.startswith("/"), (page, url)
            if not parts.path:  # same-page anchor
                assert parts.fragment in p.ids, (page, url)
                continue
            target = (path.parent / unquote(parts.path)).resolve()
            assert target.is_file(), (page, url)
            assert out.resolve() in target.parents, (page, url)
            if parts.fragment:
                assert parts.fragment in parse(target).ids, (page, url)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_multi_page(tmp_path, theme):
    out, manifest = render(tmp_path, theme=theme)
    assert manifest["index"] == "index.html"
    assert manifest["pages"][0] == "index.html"
    assert set(manifest["sections"]) == {"card", "filters", "bad/../../sect!on", "cached"}
    assert manifest["sections"]["filters"]["page"] == "sections/filters.html"
    # ids are sanitised: nothing escapes out/ and names are [a-z0-9_-]
    bad_page = manifest["sections"]["bad/../../sect!on"]["page"]
    assert re.fullmatch(r"sections/[a-z0-9_-]+\.html", bad_page), bad_page
    for page in manifest["pages"]:
        assert (out / page).resolve().is_relative_to(out.resolve())
    check_pages(out, manifest)
    # everything written lives in out/ (plus the untouched .cache/)
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assets = {a for a in written if a.startswith("assets/")}
    assert written == set(manifest["pages"]) | assets
    assert (out / ".cache").is_dir()
    for a in assets:
        assert re.fullmatch(r"assets/(style-)?[0-9a-f]{16}\.(png|svg|css)", a), a
    # every section asset exists, and the manifest lists each once
    for entry in manifest["sections"].values():
        assert len(entry["assets"]) == len(set(entry["assets"]))
        for a in entry["assets"]:
            assert (out / a).is_file()
    assert any(a.endswith(".svg") for a in manifest["sections"]["filters"]["assets"])
    # stylesheet: theme variables + shared rules, linked relatively from every page
    css = [a for a in assets if a.endswith(".css")]
    assert len(css) == 1
    css_text = (out / css[0]).read_text()
    assert ":root" in css_text and "--bg:" in css_text and "@media print" in css_text
    assert "://" not in css_text and "@import" not in css_text and "url(" not in css_text
    sec_html = (out / "sections/filters.html").read_text()
    assert f'href="../{css[0]}"' in sec_html
    assert 'href="../index.html"' in sec_html


def test_identical_images_written_once(tmp_path):
    out, manifest = render(tmp_path)
    pngs = sorted((out / "assets").glob("*.png"))
    hashes = [p.stem for p in pngs]
    assert len(hashes) == len(set(hashes))
    # the 16x16 array appears twice (pixelated and display_width=200): one file, two <img>s
    html = (out / "sections/filters.html").read_text()
    srcs = re.findall(r'<img src="(\.\./assets/[0-9a-f]{16}\.png)"', html)
    assert len(srcs) > len(set(srcs))
    # content-addressed: a file's name is the hash of its bytes
    import hashlib

    for p in pngs:
        assert hashlib.sha256(p.read_bytes()).hexdigest()[:16] == p.stem


def test_images_sizes_and_pixelation(tmp_path):
    out, _ = render(tmp_path)
    html = (out / "sections/filters.html").read_text()
    # a 16x16 pixelated figure is upscaled (integer factor) and nearest-neighbour rendered
    m = re.search(r'<img src="[^"]+" width="(\d+)" height="(\d+)" alt="tiny"[^>]*class="pixelated"', html)
    assert m and int(m.group(1)) >= 48 and int(m.group(1)) % 16 == 0 and m.group(1) == m.group(2)
    # display_width sets the width, keeping the aspect ratio
    assert re.search(r'width="200" height="200" alt="same pixels again', html)
    # 3x3 filters in a grid get cells of at least 48 px
    cell = int(re.search(r"--cell: (\d+)px; --cols: 3", html).group(1))
    assert cell >= 48
    css = next((out / "assets").glob("style-*.css")).read_text()
    assert "image-rendering: pixelated" in css
    # svg size comes from its width/height attributes
    assert re.search(r'width="40" height="20" alt="svg"', html)


def test_escaping_and_links(tmp_path):
    out, _ = render(tmp_path)
    html = (out / "sections/filters.html").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    # only http(s) reference URLs become links
    assert 'href="https://arxiv.org/abs/1311.2901"' in html
    assert "A paper with a javascript link" in html and "javascript:" not in html
    index = (out / "index.html").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in index  # skipped image path shown as text
    assert "cannot identify image file" in index


def test_index_overview(tmp_path):
    out, manifest = render(tmp_path)
    index = (out / "index.html").read_text()
    for text in ("Model card", "Contents", "Skipped images", "centre-crop 32x32", "cpu (2 cores)", "sub-folder names",
                 "3.5 s", "1 min 15 s", "cached", "failed", "Headline numbers.", "First sentence.", "91 %"):
        assert text in index, text
    # one-line summaries: only the first sentence of each section's summary in the contents
    assert "Second sentence" not in index
    # the failed section is marked in the nav of every page
    for page in manifest["pages"]:
        assert "(failed)" in (out / page).read_text()
    # the card section's blocks are on the overview
    assert "Top-1" in index


def test_error_section(tmp_path):
    out, manifest = render(tmp_path)
    page = out / manifest["sections"]["bad/../../sect!on"]["page"]
    html = page.read_text()
    assert "This section failed" in html
    assert "RuntimeError: boom &lt;img" in html
    assert re.search(r"<details[^>]*>\s*<summary>Traceback</summary>", html)
    assert 'role="alert"' in html


def test_no_block_failed_to_render(tmp_path):
    out, manifest = render(tmp_path)
    for page in manifest["pages"]:
        assert "could not be rendered" not in (out / page).read_text()


def test_bad_blocks_do_not_sink_the_report(tmp_path):
    from reportgen.render import render_report

    sec = Section(id="x", title="X").add(
        KeyValues([("only-a-key",)]),  # malformed pair
        Figure(ImageData(data=b"not an image", mime="image/x-unknown"), caption="garbage bytes"),
        "not a block",
        Note("still rendered"),
    )
    out = tmp_path / "o"
    out.mkdir()
    manifest = render_report(Report(title="T", sections=[sec]), out)
    html = (out / manifest["sections"]["x"]["page"]).read_text()
    assert "This KeyValues block could not be rendered" in html
    assert "image could not be rendered" in html  # a placeholder picture, with the reason
    assert "Unsupported block" in html and "str" in html
    assert "still rendered" in html
    for a in manifest["sections"]["x"]["assets"]:
        assert (out / a).is_file()


def test_prev_next_links(tmp_path):
    out, manifest = render(tmp_path)
    pages = [manifest["sections"][s]["page"] for s in manifest["sections"]]
    second = (out / pages[1]).read_text()
    assert f'href="../{pages[0]}" rel="prev"' in second
    assert f'href="../{pages[2]}" rel="next"' in second


def test_single_file(tmp_path):
    out, manifest = render(tmp_path, theme="dark", single_file=True)
    assert manifest["pages"] == ["index.html"]
    assert all(v["page"].startswith("index.html#") for v in manifest["sections"].values())
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written == {"index.html"}
    html = (out / "index.html").read_text()
    assert "assets/" not in html
    assert "data:image/png;base64," in html
    assert "data:image/svg+xml;base64," in html
    assert "<style>" in html and "--bg:" in html and '<link rel="stylesheet"' not in html
    assert "Broken technique" in html and "This section failed" in html
    check_pages(out, manifest)
    # every section is an anchor in the same file
    ids = parse(out / "index.html").ids
    for v in manifest["sections"].values():
        assert v["page"].split("#", 1)[1] in ids


def test_themes_and_resources():
    from reportgen import _resources
    from reportgen.render import available_themes, load_theme, render_report, themes

    assert {"light", "dark"} <= set(available_themes())
    assert (_resources.templates_dir() / "layouts" / "base.html").is_file()
    assert (_resources.themes_dir() / "_base.css").is_file()
    light, dark = load_theme("light"), load_theme("dark")
    assert set(light.colors) == set(dark.colors)  # both themes define every variable
    assert light.colors["bg"] != dark.colors["bg"] and dark.color_scheme == "dark"
    # the defaults live in one :root block; the other rules only use variables for colours and layout sizes
    base = (_resources.themes_dir() / "_base.css").read_text()
    screen = base.split("@media print")[0]
    assert len(re.findall(r":root\s*\{", screen)) == 1  # (print has its own black-on-white overrides)
    rules = re.sub(r":root\s*\{[^}]*\}", "", screen)
    assert not re.search(r":\s*#[0-9a-fA-F]{3,6}\b", rules)
    for var in set(re.findall(r"var\(--([a-z0-9-]+)", base)) - {"w", "cell", "cols", "cell-min"}:
        assert var in light.colors, var
    # the light theme is the defaults; dark states every colour; the page gets one resolved :root
    assert light.colors == themes.default_variables()
    css = dark.css()
    assert len(re.findall(r":root\s*\{", css.split("@media print")[0])) == 1
    assert f"--bg: {dark.colors['bg']};" in css and "color-scheme: dark;" in css
    with pytest.raises(ValueError):
        render_report(make_report(), Path("/nonexistent-never-written"), theme="nope")


def test_empty_report(tmp_path):
    from reportgen.render import render_report

    out = tmp_path / "o"
    out.mkdir()
    manifest = render_report(Report(title="Empty", sections=[]), out)
    assert manifest == {"index": "index.html", "pages": ["index.html"], "sections": {}}
    assert "Empty" in (out / "index.html").read_text()


def test_render_does_not_import_torch():
    code = "import sys, reportgen.render; assert 'torch' not in sys.modules, 'torch was imported'"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_resources_prefer_installed_data(tmp_path, monkeypatch):
    from reportgen import _resources

    pkg = tmp_path / "site" / "reportgen"
    for base in (pkg / "_data", pkg.parent):  # installed copy and a source-style copy next to the package
        (base / "templates" / "layouts").mkdir(parents=True)
        (base / "templates" / "layouts" / "base.html").write_text("x")
        (base / "themes").mkdir(parents=True)
        (base / "themes" / "_base.css").write_text("x")
    monkeypatch.setattr(_resources, "_PKG", pkg)
    assert _resources.templates_dir() == pkg / "_data" / "templates"
    assert _resources.themes_dir() == pkg / "_data" / "themes"
    import shutil

    shutil.rmtree(pkg / "_data")
    assert _resources.templates_dir() == pkg.parent / "templates"
    shutil.rmtree(pkg.parent / "templates")
    with pytest.raises(FileNotFoundError):
        _resources.templates_dir()


def _theme(folder: Path, toml: str, **files: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "theme.toml").write_text(toml)
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def test_a_theme_of_ones_own_extends_light_and_overrides_a_template(tmp_path):
    """mkdocs/Pelican-style: ``extends``, only the changed variable, a template override, extra blocks."""
    from reportgen.render import load_theme, render_report

    folder = _theme(tmp_path / "mytheme", 'name = "Mine"\nextends = "light"\n[colors]\naccent = "#7a1fa2"\n',
                    **{"style.css": ".brand-title { letter-spacing: 0.02em; }\n",
                       "templates/layouts/base.html": '{% extends "reportgen:layouts/base.html" %}'
                       '{% block footer %}<p class="house-footer">House footer</p>{% endblock %}'})
    th = load_theme(folder)
    light = load_theme("light")
    assert th.colors == {**light.colors, "accent": "#7a1fa2"} and th.color_scheme == "light" and th.title == "Mine"
    out = tmp_path / "out"
    render_report(make_report(), out, theme=str(folder))
    css = next((out / "assets").glob("style-*.css")).read_text()
    assert "--accent: #7a1fa2;" in css and "--accent: #2451c9;" not in css
    assert css.index(".brand-mark") < css.index(".brand-title { letter-spacing")  # parent's style.css first
    for page in ("index.html", "sections/filters.html"):
        html = (out / page).read_text()
        assert '<p class="house-footer">House footer</p>' in html and "Generated by" not in html, page
        assert "Skip to content" in html  # the rest of base.html is the package's


def test_theme_errors_are_clear(tmp_path):
    from reportgen.errors import ReportgenError
    from reportgen.render import check_theme, load_theme

    a = _theme(tmp_path / "a", 'extends = "b"\n')
    _theme(tmp_path / "b", 'extends = "a"\n')
    with pytest.raises(ValueError, match="cycle"):
        load_theme(a)
    typo = _theme(tmp_path / "typo", 'extends = "dark"\n[colors]\naccnet = "#000000"\n')
    with pytest.raises(ValueError, match="unknown variable 'accnet'"):
        load_theme(typo)
    bad = _theme(tmp_path / "bad", '[colors]\nbg = "red; } body { x"\n')
    with pytest.raises(ValueError, match="bad variable"):
        load_theme(bad)
    with pytest.raises(ReportgenError, match="unknown theme 'nope'"):
        check_theme("nope")
    # a child of dark inherits its colour scheme and colours
    child = load_theme(_theme(tmp_path / "dim", 'extends = "dark"\n[colors]\nmuted = "#a0a8b4"\n'))
    assert child.color_scheme == "dark" and child.colors["bg"] == load_theme("dark").colors["bg"]


def test_small_inputs_are_enlarged_with_nearest_neighbour(tmp_path):
    """CIFAR-size (32 px) pictures are shown at >= 128 px, integer-scaled with crisp pixels; plots are not."""
    from reportgen.render import render_report
    from reportgen.render.html import grid_info

    rng = np.random.default_rng(0)
    small = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(4)]
    grid = Grid([GridItem(ImageData(a), label=f"img {k}", sublabel="cat") for k, a in enumerate(small)],
                columns=4, cell_width=64)  # what a technique asks for a 32-px model: 2x
    assert grid_info(grid).cell == 128
    sec = Section(id="inputs", title="Inputs")
    sec.add(grid, Figure(ImageData(small[0]), caption="one input"), Figure(_matplotlib_png(), caption="a plot"))
    render_report(Report(title="t", sections=[sec]), tmp_path)
    page = (tmp_path / "sections" / "inputs.html").read_text()
    imgs = re.findall(r"<img [^>]*>", page)
    assert len(imgs) == 6
    for tag in imgs[:5]:  # the grid's four and the figure
        assert 'width="128"' in tag and 'class="pixelated"' in tag, tag
    assert 'class="pixelated"' not in imgs[5]  # a matplotlib plot keeps its own resolution and smoothing


def test_library_draws_without_pyplot():
    """Every plot is a ``matplotlib.figure.Figure``: no pyplot state machine, no backend switch."""
    from pathlib import Path

    import reportgen

    root = Path(reportgen.__file__).parent
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if "matplotlib.pyplot" in p.read_text() or "matplotlib.use(" in p.read_text()]
    assert offenders == []


def test_overview_placement_is_declared_by_the_section_not_its_id(tmp_path):
    """The renderer puts a section's blocks on the front page because of ``placement``, never its id or title."""
    from reportgen.render import render_report

    a = Section(id="card", title="Model card").add(Note("stays on its own page"))
    b = Section(id="headline", title="Anything", placement=OVERVIEW).add(Note("on the front page"))
    render_report(Report(title="t", sections=[a, b]), tmp_path)
    index = (tmp_path / "index.html").read_text()
    assert "on the front page" in index and 'id="overview-headline"' in index
    assert "stays on its own page" not in index
    render_dir = Path(__file__).resolve().parents[2] / "reportgen" / "render"
    code = "".join(p.read_text() for p in render_dir.glob("*.py"))
    assert '"card"' not in code and "'card'" not in code


def test_run_info_round_trips_and_accepts_the_old_dict():
    info = make_report().meta
    d = info.to_dict()
    assert RunInfo.from_dict(d) == info
    assert "kind" not in d and "extra" not in d and d["images"]["labels_from"] == "sub-folder names"
    assert d["preprocessing"] is None  # not given: null, but the key is there
    pair = RunInfo(kind="compare", extra={"accuracy": {"A": 0.5}}, unrecorded=("command", "model_hash"))
    assert pair.to_dict()["accuracy"] == {"A": 0.5} and "command" not in pair.to_dict()
    assert RunInfo.from_dict(pair.to_dict()) == pair
    old = Report(title="t", sections=[], meta={"device": "cpu", "images": {"count": 3}, "custom": 1})
    assert old.meta.device == "cpu" and old.meta.images.count == 3 and old.meta.extra == {"custom": 1}


def test_build_with_a_theme_folder_records_a_published_path(tmp_path, image_dir, monkeypatch):
    from conftest import make_tiny_cnn
    from reportgen.build import build_report

    folder = _theme(tmp_path / "themes" / "mine", 'extends = "dark"\n[colors]\naccent = "#8fb4ff"\n')
    monkeypatch.chdir(tmp_path)
    res = build_report(make_tiny_cnn(), image_dir, tmp_path / "out", preset="minimal", only=["card"], device="cpu",
                       input_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, theme=str(folder))
    assert res.report.meta.theme == "themes/mine"
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["theme"] == "themes/mine"
    # report.json's top level is what it was when Report.meta was a dict (RunInfo.to_dict)
    assert set(data) == {"reportgen", "title", "model", "model_hash", "num_classes", "preprocessing",
                         "preprocessing_text", "images", "config", "device", "versions", "theme", "generated",
                         "command", "total_time_s", "skipped_images", "sections", "cache",
                         "report_tree",  # the stored tree `reportgen render` reads
                         "predictions", "review"}  # per-image predictions and the review (reportgen.review)
    assert set(data["images"]) == {"folder", "count", "skipped", "labels_from"}
    html = (tmp_path / "out" / "index.html").read_text()
    assert 'data-theme="mine"' in html and 'content="dark"' in html
