"""The explorer in a real browser (headless Chromium over tests/cdp.py), on a synthetic report (no model): the
scatter draws every point, a wheel event zooms, hovering a point shows its thumbnail, a click opens that image's
page, search finds a class; no console error and no request outside the report folder, in both themes and in
single-file mode; with scripts disabled the static mosaic and the links still show. Plus the tree rules the
renderer relies on (which image a grid cell explains, stable image ids) and the per-image page size."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest
from cdp import Browser, CDPError, find_chromium
from explorer_fixture import synthetic_report_dir
from browser_helpers import _canvas_origin, _problems, _wait

N = 600


@pytest.fixture(scope="module")
def chromium():
    exe = find_chromium()
    if exe is None:
        pytest.skip("Chromium is not installed")
    try:
        b = Browser(exe)
        b.open_page()
    except (CDPError, OSError) as e:
        pytest.skip(f"Chromium ({exe}) could not be started headless: {e}")
    b.viewport(1280, 900)
    yield b
    b.close()


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("explorer")
    from reportgen.report import Report  # noqa: F401  (the fixture builds the tree without a model)

    return {"light": synthetic_report_dir(root, N, "light"), "dark": synthetic_report_dir(root, N, "dark"),
            "single": synthetic_report_dir(root / "s", N, "light", single_file=True)}


def _mouse(b: Browser, kind: str, x: float, y: float, **kw) -> None:
    b.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, **kw})


def _drive(b: Browser, url: str, root: Path, single: bool) -> list[str]:
    """Open the explorer, zoom, hover, click; return the events' problems."""
    events = b.navigate(url)
    _wait(b, "window.__rgExplorer && window.__rgExplorer.drawn > 0")
    assert b.evaluate("window.__rgExplorer.drawn") == N  # every point drawn
    left, top, w, h = _canvas_origin(b)
    s0 = b.evaluate("__rgExplorer.scale()")
    b.send("Input.dispatchMouseEvent", {"type": "mouseWheel", "x": left + w / 2, "y": top + h / 2,
                                        "deltaX": 0, "deltaY": -400})
    _wait(b, f"__rgExplorer.scale() > {s0} * 1.5")
    p = b.evaluate("__rgExplorer.firstVisible()")
    assert p >= 0
    x, y = b.evaluate(f"__rgExplorer.screen({p})")
    _mouse(b, "mouseMoved", left + x, top + y)
    _wait(b, "__rgExplorer.hovered() >= 0")
    hp = b.evaluate("__rgExplorer.hovered()")
    tip = b.evaluate("(() => { const t = document.querySelector('.rg-tip'); const th = t.querySelector('.rg-thumb');"
                     " return {shown: !t.hidden && t.getBoundingClientRect().width > 0, bg: th.style.backgroundImage,"
                     " text: t.textContent}; })()")
    assert tip["shown"] and ("assets/" in tip["bg"] or "data:image/jpeg" in tip["bg"]), tip
    assert "predicted" in tip["text"] and "img_" in tip["text"]
    iid = b.evaluate(f"__rgExplorer.id({hp})")
    _mouse(b, "mousePressed", left + x, top + y, button="left", clickCount=1)
    _mouse(b, "mouseReleased", left + x, top + y, button="left", clickCount=1)
    if single:
        _wait(b, f"location.hash === '#img-{iid}'")
        assert b.evaluate(f"document.getElementById('img-{iid}').getBoundingClientRect().top") < 300
    else:
        _wait(b, f"location.pathname.endsWith('/images/{iid}.html') && document.readyState === 'complete'")
        assert b.evaluate("document.querySelector('h1').textContent").startswith("class ")
    events += b.drain()
    errors, outside = _problems(events, root)
    return errors + [f"outside: {u}" for u in outside]


def _search(b: Browser, url: str, root: Path) -> list[str]:
    events = b.navigate(url)
    b.evaluate("(() => { const i = document.querySelector('.rg-search input'); i.focus(); i.value = 'class c';"
               " i.dispatchEvent(new Event('input')); })()")
    hits = _wait(b, "(() => { const l = document.querySelector('.rg-search ol'); return !l.hidden &&"
                    " [...l.querySelectorAll('a')].map(a => a.textContent); })()")
    assert any("class C (" in h for h in hits), hits
    b.evaluate("(() => { const i = document.querySelector('.rg-search input'); i.value = 'img_000017';"
               " i.dispatchEvent(new Event('input')); })()")
    hits = _wait(b, "(() => [...document.querySelectorAll('.rg-search ol a')].map(a => a.getAttribute('href'))"
                    ".filter(h => h.indexOf('000000000011') >= 0))()")
    assert hits
    errors, outside = _problems(events + b.drain(), root)
    return errors + [f"outside: {u}" for u in outside]


def test_explorer_folder_both_themes(chromium, reports):
    for theme in ("light", "dark"):
        out = reports[theme]
        problems = _drive(chromium, (out / "explorer.html").as_uri(), out, single=False)
        problems += _search(chromium, (out / "sections" / "saliency.html").as_uri(), out)
        # the image page and a unit page load cleanly too (the sprite thumbnails are CSS backgrounds)
        for page in (out / "images" / "000000000000.html", out / "units" / "features-3" / "1.html"):
            ev = chromium.navigate(page.as_uri())
            errors, outside = _problems(ev + chromium.drain(), out)
            problems += errors + outside
        assert not problems, f"{theme}: {problems}"


def test_explorer_single_file(chromium, reports):
    out = reports["single"]
    problems = _drive(chromium, (out / "index.html").as_uri() + "#explorer", out, single=True)
    problems += _search(chromium, (out / "index.html").as_uri(), out)
    assert not problems, problems
    html = (out / "index.html").read_text()
    assert "script-src 'sha256-" in html and "<script src=" not in html


def _rendered(b: Browser, selector: str) -> tuple[int, int]:
    """(matching nodes, how many of them have a layout box) through the DOM domain (no page script runs)."""
    doc = b.send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
    nodes = b.send("DOM.querySelectorAll", {"nodeId": doc, "selector": selector})["nodeIds"]
    boxed = 0
    for nid in nodes[:50]:
        try:
            b.send("DOM.getBoxModel", {"nodeId": nid})
            boxed += 1
        except CDPError:
            pass
    return len(nodes), boxed


def test_without_scripts_the_mosaic_and_links_show(chromium, reports):
    out = reports["light"]
    chromium.send("DOM.enable")
    chromium.send("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        chromium.navigate((out / "explorer.html").as_uri())
        assert _rendered(chromium, ".rg-mosaic img") == (1, 1)  # the static mosaic shows
        assert _rendered(chromium, ".rg-mosaic a") == (100, 50)  # each thumbnail links to its page
        assert _rendered(chromium, ".rg-classes summary")[1] == 10  # the class lists show
        assert _rendered(chromium, ".rg-classes a")[0] == N  # and link every image
        assert _rendered(chromium, ".rg-stage canvas")[1] == 0  # the interactive part stays hidden
        chromium.navigate((out / "images" / "000000000000.html").as_uri())
        assert _rendered(chromium, ".rg-nn a")[1] == 10 and _rendered(chromium, "table.rg-top")[1] == 1
    finally:
        chromium.send("Emulation.setScriptExecutionDisabled", {"value": False})


def test_image_page_thumbnails_and_bars_are_drawn_from_the_stylesheet(chromium, reports):
    """The classes that replace inline styles place each thumbnail's sprite cell and size each bar."""
    for key in ("light", "dark", "single"):
        out = reports[key]
        url = (out / "index.html").as_uri() + "#img-000000000005" if key == "single" else \
            (out / "images" / "000000000005.html").as_uri()
        events = chromium.navigate(url)
        got = chromium.evaluate("""(() => {
          const page = document.getElementById('img-000000000005') || document.querySelector('main');
          const nn = [...page.querySelectorAll('.rg-nn a')].map(a => getComputedStyle(a));
          const big = getComputedStyle(page.querySelector('.thb'));
          const bars = [...page.querySelectorAll('.rg-top td[class]')].map(td => getComputedStyle(td, '::after').width);
          return {pos: nn.map(c => c.backgroundPosition), img: nn.map(c => c.backgroundImage.slice(0, 300)),
                  w: nn.map(c => c.width), big: [big.width, big.backgroundPosition], bars: bars,
                  probs: [...page.querySelectorAll('.rg-top td[class]')].map(td => td.textContent)};
        })()""")
        assert got["pos"][:5] == [f"{-64 * c}px 0px" for c in (6, 7, 8, 9, 10)], got  # row 0, columns 6..10
        assert all(("assets/" in i or "data:image/jpeg" in i) for i in got["img"]) and set(got["w"]) == {"64px"}
        assert got["big"] == ["128px", f"{-128 * 5}px 0px"], got
        assert [round(float(b[:-2])) for b in got["bars"]] == [round(float(q) * 80) for q in got["probs"]], got
        errors, outside = _problems(events + chromium.drain(), out)
        assert not errors and not outside, (errors, outside)


@pytest.fixture(scope="module")
def compact(tmp_path_factory, reports):
    """The light report again with the compact-page threshold below its size (the full one is the reference)."""
    import reportgen.render.explorer as ex_mod

    keep, ex_mod.COMPACT_ABOVE = ex_mod.COMPACT_ABOVE, N // 2
    try:
        return synthetic_report_dir(tmp_path_factory.mktemp("compact"), N, "light")
    finally:
        ex_mod.COMPACT_ABOVE = keep


_PAGE_DOM = """(() => ({top: [...document.querySelectorAll('.rg-top tr')].map(r => r.textContent),
  bars: [...document.querySelectorAll('.rg-top td[class]')].map(td => td.className + ':' +
         getComputedStyle(td, '::after').width),
  nn: [...document.querySelectorAll('.rg-nn a')].map(a => [a.getAttribute('href'), a.title, a.className,
        getComputedStyle(a).backgroundPosition]),
  heads: [...document.querySelectorAll('main h2')].map(h => h.textContent),
  text: document.querySelector('main').textContent}))()"""


def test_compact_image_pages_draw_what_a_complete_page_holds(chromium, reports, compact):
    """Above COMPACT_ABOVE images a page's top-k table and neighbour lists come from the shared data script: in
    the browser they are the complete page's, cell for cell; no console error, nothing outside the folder; with
    scripts off the picture, label and prediction stay and the stylesheet says what is left out."""
    full, small = reports["light"], compact
    for iid in ("000000000005", f"{N - 1:012x}"):  # the last row's neighbours wrap around to the first rows
        chromium.navigate((full / "images" / f"{iid}.html").as_uri())
        ref = chromium.evaluate(_PAGE_DOM)
        events = chromium.navigate((small / "images" / f"{iid}.html").as_uri())
        _wait(chromium, "window.__rgPage && window.__rgPage.drawn")
        got = chromium.evaluate(_PAGE_DOM)
        assert got["top"] == ref["top"] and got["bars"] == ref["bars"], (got, ref)
        assert got["nn"] == ref["nn"] and len(got["nn"]) == 10, (got["nn"], ref["nn"])
        assert got["heads"] == ref["heads"]
        assert "Placed in the explorer by synthetic." in got["text"]
        errors, outside = _problems(events + chromium.drain(), small)
        assert not errors and not outside, (errors, outside)
    page = (small / "images" / "000000000005.html").read_text()
    assert "<table" not in page and "rg-nn" not in page and page.count("<script") == 1
    assert "style-src 'self';" in page and "unsafe-inline" not in page  # nothing inline on a compact page
    assert "predicted <strong>class" in page
    chromium.send("DOM.enable")
    chromium.send("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        chromium.navigate((small / "images" / "000000000005.html").as_uri())
        assert _rendered(chromium, ".thb")[1] == 1 and _rendered(chromium, ".rg-nn a")[0] == 0
        assert _rendered(chromium, "#rg-more")[1] == 1  # its ::before says what the script would add
    finally:
        chromium.send("Emulation.setScriptExecutionDisabled", {"value": False})
    css = next((small / "assets").glob("style-*.css")).read_text()
    assert "html:not(.js) #rg-more::before{content:" in css and "over 300 images" in css


def test_grid_cells_follow_their_input_and_thumbnails_link(reports):
    from reportgen.render.explorer import cell_ids
    from reportgen.report import Grid, GridItem, ImageData

    a = np.zeros((4, 4), np.uint8)
    g = Grid([GridItem(ImageData(a, image_id="x")), GridItem(ImageData(a)), GridItem(ImageData(a, image_id="y")),
              GridItem(ImageData(a))])
    assert cell_ids(g) == ["x", "x", "y", "y"]
    sal = (reports["light"] / "sections" / "saliency.html").read_text()
    assert sal.count('href="../images/000000000000.html"') == 2  # the input and its map
    page = (reports["light"] / "images" / "000000000000.html").read_text()
    assert "Deletion AUC" in page and "deletion_auc" not in page  # another section's numbers, by name
    # its page shows the map, not the input again (a picture of the image itself), and names the section
    assert page.count("<figure>") == 1 and "Saliency maps</a>: map of it" in page
    assert "Appears in: <a href=../sections/saliency.html>Saliency maps</a>" in page


def test_image_ids_are_stable_and_unique(tmp_path):
    from conftest import write_image_folder  # noqa: F401  (the helper exists; ids come from file bytes)

    from reportgen.imageset import ImageRecord, ImageSet

    recs = [ImageRecord(i, Path(f"{i}.png"), f"{i}.png", sha, 4, 4) for i, sha in enumerate(["ab" * 32, "cd" * 32,
                                                                                            "ab" * 32])]
    s = ImageSet(tmp_path, recs, [], None, None)
    assert [s.image_id(i) for i in range(3)] == ["ab" * 6, "cd" * 6, "ab" * 6 + "-2"]


def _page_sizes(out: Path) -> tuple[list[bytes], float, float]:
    texts = [p.read_bytes() for p in sorted((out / "images").glob("*.html"))]
    return texts, float(np.mean([len(t) for t in texts])), float(np.mean([len(gzip.compress(t, 6)) for t in texts]))


def test_image_pages_are_small(tmp_path, monkeypatch):
    """Complete pages up to COMPACT_ABOVE images; compact ones above it (measured on the same 2,000 images)."""
    import reportgen.render.explorer as ex_mod

    out = synthetic_report_dir(tmp_path, 2000)
    texts, mean, zipped = _page_sizes(out)
    assert len(texts) == 2000
    units = [len(p.read_bytes()) for p in (out / "units").rglob("*.html")]
    print(f"complete image pages: mean {mean:.0f} B, gzip -6 {zipped:.0f} B; per 10,000 pages {mean * 1e4 / 1e6:.1f} MB"
          f" on disk, {zipped * 1e4 / 1e6:.1f} MB compressed; unit pages: mean {np.mean(units):.0f} B")
    assert mean < 2550  # measured 2,346 B with the 3-section sidebar (~400 B): 2,000 complete pages are ~4.7 MB
    page = texts[5].decode()
    from reportgen.render.html import CSP

    assert f"content=\"{CSP.replace('; ', ';')};script-src 'self'\">" in page  # the same policy, spelt shorter
    assert "style=" not in page and "<script" not in page  # sprite cells and bars are classes of the stylesheet
    assert "<title>class A/img_000005.jpg · Explorer test report</title>" in page  # the report title, once
    assert page.count("<a ") == 2 + 3 + 10 and page.count("<tr>") == 6  # nav, sidebar, 5 + 5 neighbours; top-5
    assert "title=img_000006.jpg" in page and 'title="class B/img_000008.jpg"' in page  # same folder left out

    monkeypatch.setattr(ex_mod, "COMPACT_ABOVE", 1000)
    out = synthetic_report_dir(tmp_path / "compact", 2000)
    texts, mean_c, zipped_c = _page_sizes(out)
    data = sum(p.stat().st_size for p in (out / "assets").glob("pages-*.js"))
    print(f"compact image pages: mean {mean_c:.0f} B, gzip -6 {zipped_c:.0f} B, shared data {data / 2000:.0f} B per"
          f" image; per 10,000 images {(mean_c * 1e4 + data * 5) / 1e6:.1f} MB on disk with the data")
    assert mean_c < 0.4 * mean and data / 2000 < 80  # measured 852 B (no sidebar) and 67 B per image
    assert texts[5].decode().count("<a ") == 2  # the nav only: the neighbours are drawn from the shared data


def test_attribute_values_are_bare_only_when_safe():
    from reportgen.render.explorer import attr_value, short_name, squeeze

    assert attr_value("../images/00ab.html") == "../images/00ab.html"
    assert attr_value("c3 r2") == '"c3 r2"'
    for nasty in ['x" onmouseover=alert(1)', "a=b", "<b>", "it's", "a&b", "", "`x`"]:
        v = str(attr_value(nasty))
        assert v.startswith('"') and v.endswith('"') and '"' not in v[1:-1] and "<" not in v, (nasty, v)
    assert short_name("a/b/x.png", "a/b/y.png") == "x.png" and short_name("a/c/x.png", "a/b/y.png") == "c/x.png"
    assert short_name("x.png", "a/y.png") == "x.png" and short_name("a/x.png", "y.png") == "a/x.png"
    assert squeeze("<p>a</p>\n  <p>b <a>c</a> d\n<i></i>") == "<p>a</p><p>b <a>c</a> d\n<i></i>\n"


def test_user_file_names_stay_escaped_on_image_pages(tmp_path):
    from explorer_fixture import synthetic_report

    from reportgen.render import render_report

    rep = synthetic_report(20)
    ex = rep.sections[0].blocks[0]
    ex.names[1] = 'class A/x" onmouseover=alert(1) <b>.jpg'
    ex.names[2] = "a=b c.jpg"
    render_report(rep, tmp_path)
    page = (tmp_path / "images" / "000000000000.html").read_text()
    assert "<b>" not in page and 'x" onmouseover' not in page
    assert re.search(r'title="(class A/)?x&#34; onmouseover=alert\(1\) &lt;b&gt;\.jpg"', page)
    assert 'title="a=b c.jpg"' in page
    neighbour = (tmp_path / "images" / "000000000001.html").read_text()
    assert "<h1>class A/x&#34; onmouseover=alert(1) &lt;b&gt;.jpg</h1>" in neighbour


def test_an_image_page_names_the_group_a_picture_came_from():
    """A picture inside a titled Group (the patches section's "Channel 12") is listed on the image's page with the
    group's title, so two crops of one image for two channels are told apart."""
    from reportgen.render.explorer import _walk_grouped
    from reportgen.report import Grid, GridItem, Group, ImageData, Row

    a = np.zeros((4, 4), np.uint8)
    g1, g2 = Grid([GridItem(ImageData(a, image_id="x"), label="3.8")]), Grid([GridItem(ImageData(a))])
    seen = []
    _walk_grouped([Group("Channel 12", [Row([g1])]), g2], lambda b, group: seen.append((b, group)))
    assert seen == [(g1, "Channel 12"), (g2, "")]
