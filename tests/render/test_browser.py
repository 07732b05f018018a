"""The reader's view in a real browser: every page of the demo report (minimal preset), both themes and
single-file mode, in headless Chromium driven through the DevTools protocol over a pipe (tests/cdp.py).

Per page and viewport width (1280 px desktop, 390 px phone): no console error, no request outside the report,
every <img> decoded, every internal link resolving (file and #fragment), nothing wider than the viewport,
links underlined, one <h1>; a screenshot of each is saved under the artefacts folder
($REPORTGEN_TEST_ARTEFACTS, else a pytest temp folder).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from browser_helpers import _problems, chromium  # noqa: F401, F811  (the module's browser fixture)

WIDTHS = [(1280, 900, False), (390, 844, True)]

CHECK_JS = r"""
(async () => {
  const imgs = [...document.images];
  imgs.forEach(i => { i.loading = 'eager'; });
  await Promise.all(imgs.map(i => (i.complete && i.naturalWidth > 0) ? null : new Promise(r => {
    i.addEventListener('load', r); i.addEventListener('error', r); setTimeout(r, 5000); })));
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  const vw = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll('body *')].filter(e => {
      const r = e.getBoundingClientRect();
      if (r.width === 0 || r.right <= vw + 1) return false;
      for (let p = e.parentElement; p; p = p.parentElement) {
        const s = getComputedStyle(p);
        if (['auto', 'scroll', 'hidden', 'clip'].includes(s.overflowX) && p !== document.body) return false;
      }
      return true;
    }).slice(0, 5).map(e => e.tagName + '.' + e.className + ' right=' + Math.round(e.getBoundingClientRect().right));
  const main = document.querySelector('main');
  const plainLinks = [...(main ? main.querySelectorAll('a[href]') : [])]
    .filter(a => !a.closest('.pager') && getComputedStyle(a).textDecorationLine.indexOf('underline') < 0)
    .map(a => a.textContent.trim().slice(0, 40));
  return {
    broken: imgs.filter(i => !(i.naturalWidth > 0)).map(i => (i.getAttribute('src') || '').slice(0, 80)),
    nimg: imgs.length,
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    scrollWidth: document.documentElement.scrollWidth, viewport: vw, wide: wide,
    h1: document.querySelectorAll('h1').length, plainLinks: plainLinks,
  };
})()
"""


@pytest.fixture(scope="module")
def demo_reports(tmp_path_factory):
    """The demo report built once (minimal preset, light theme); the same report rendered again in the dark
    theme and as one self-contained file (report.json embedded), as a re-render would."""
    from types import SimpleNamespace

    from reportgen.build import build_report
    from reportgen.demo import images_dir
    from reportgen.publish.atomic import embed_json
    from reportgen.render import render_report

    root = tmp_path_factory.mktemp("browser")
    light = build_report("demo", images_dir(), root / "light", theme="light", preset="minimal", device="cpu",
                         title="Demo: FashionNet on Fashion-MNIST — model card", cache_dir=root / "cache")
    out = {"light": light}
    for name, kw in (("dark", {"theme": "dark"}), ("single", {"single_file": True})):
        folder = root / name
        manifest = render_report(light.report, folder, **kw)
        out[name] = SimpleNamespace(out=folder, index=folder / "index.html", manifest=manifest)
    embed_json(root / "single" / "index.html", root / "light" / "report.json")
    return root, out


def _artefacts(tmp_path_factory) -> Path:
    env = os.environ.get("REPORTGEN_TEST_ARTEFACTS")
    d = Path(env) if env else tmp_path_factory.mktemp("artefacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _fragment_exists(path: Path, frag: str, cache: dict) -> bool:
    if path not in cache:
        cache[path] = set(re.findall(r'\bid="([^"]+)"', path.read_text(encoding="utf-8")))
    return frag in cache[path]


def test_every_page_in_a_real_browser(chromium, demo_reports, tmp_path_factory):  # noqa: F811
    root, results = demo_reports
    shots = _artefacts(tmp_path_factory)
    t0 = time.monotonic()
    ids: dict = {}
    failures: list[str] = []
    n_pages = 0
    for name, res in results.items():
        report_root = res.index.parent if name == "single" else res.out
        pages = [res.index] if name == "single" else [res.out / p for p in res.manifest["pages"]]
        for width, height, mobile in WIDTHS:
            chromium.viewport(width, height, mobile)
            for page in pages:
                n_pages += 1
                where = f"{name}/{page.relative_to(report_root)} @{width}px"
                events = chromium.navigate(page.resolve().as_uri())
                info = chromium.evaluate(CHECK_JS)
                events += chromium.drain()
                errors, outside = _problems(events, report_root)
                failures += [f"{where}: {e}" for e in errors]
                failures += [f"{where}: request outside the report: {u}" for u in outside]
                failures += [f"{where}: image not decoded: {s}" for s in info["broken"]]
                if info["scrollWidth"] > info["viewport"] + 1 or info["wide"]:
                    failures.append(f"{where}: wider than the viewport ({info['scrollWidth']} > {info['viewport']}):"
                                    f" {info['wide']}")
                if info["h1"] != 1:
                    failures.append(f"{where}: {info['h1']} <h1> elements")
                if info["plainLinks"]:
                    failures.append(f"{where}: links without underline: {info['plainLinks'][:3]}")
                for href in info["links"]:
                    u = urlsplit(href)
                    if u.scheme in ("http", "https"):
                        continue  # paper links: followed only by the reader, never loaded
                    if u.scheme != "file":
                        failures.append(f"{where}: unexpected link {href}")
                        continue
                    target = Path(unquote(u.path))
                    if not target.is_file():
                        failures.append(f"{where}: broken link {href}")
                    elif u.fragment and not _fragment_exists(target, unquote(u.fragment), ids):
                        failures.append(f"{where}: link to a missing anchor {href}")
                shot = shots / f"{name}-{width}-{str(page.relative_to(report_root)).replace('/', '_')}.png"
                chromium.screenshot(shot)
                assert shot.stat().st_size > 1000
    assert not failures, "\n".join(failures[:40])
    assert n_pages >= 4 * len(results)
    print(f"{n_pages} page views checked in {time.monotonic() - t0:.1f} s; screenshots in {shots}")
