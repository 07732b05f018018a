"""The explorer draws the images themselves while few share the view (issue 31, item 12): 20 images are 20
thumbnails (each pixel at a point's centre is that image's colour in the synthetic sprite sheet), in a folder and
in a single-file report (whose sheets are read from its stylesheet); 500 crowded points are dots until a zoom
leaves few enough in view. Driven in headless Chromium (tests/cdp.py); skipped without it."""

from __future__ import annotations

import numpy as np
import pytest
from explorer_fixture import synthetic_report_dir
from browser_helpers import chromium  # noqa: F401, F811  (the module's browser fixture)
from browser_helpers import _canvas_origin, _wait

COLOURS = np.array([[230, 60, 60], [60, 160, 60], [60, 90, 220], [220, 180, 40], [150, 60, 200],
                    [40, 190, 190], [240, 130, 30], [120, 120, 120], [200, 80, 150], [90, 60, 30]])

def _centre_pixels(b, tmp_path) -> list[tuple[int, np.ndarray]]:
    """(point, RGB of the page at its centre) from a screenshot (a file:// canvas cannot be read back)."""
    from PIL import Image

    left, top, _, _ = _canvas_origin(b)
    pts = b.evaluate("(() => { const E = window.__rgExplorer, out = [];"
                     " for (let p = 0; p < E.n; p++) out.push(E.screen(p)); return out; })()")
    shot = tmp_path / "shot.png"
    b.screenshot(shot)
    a = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    return [(p, a[int(round(top + y)), int(round(left + x))]) for p, (x, y) in enumerate(pts)]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("thumbs")
    return {"folder": synthetic_report_dir(root, 20), "single": synthetic_report_dir(root / "s", 20, single_file=True)}


def _labels(n: int) -> np.ndarray:  # explorer_fixture.synthetic_report's labels (seed 0)
    return np.random.default_rng(0).integers(0, 10, n)


@pytest.mark.parametrize("kind", ["folder", "single"])
def test_few_images_are_drawn_as_their_thumbnails(chromium, small, kind, tmp_path):  # noqa: F811
    chromium.viewport(1280, 900, False)
    out = small[kind]
    chromium.navigate(((out / "index.html").as_uri() + "#explorer") if kind == "single"
                      else (out / "explorer.html").as_uri())
    _canvas_origin(chromium)
    _wait(chromium, "window.__rgExplorer && window.__rgExplorer.thumbs === 20")
    assert chromium.evaluate("window.__rgExplorer.dots") == 0
    labels = _labels(20)
    got = _centre_pixels(chromium, tmp_path)
    # a point's centre shows its own thumbnail's colour, unless a neighbour's thumbnail lies over it
    match = [np.abs(rgb - COLOURS[labels[p]]).max() <= 40 for p, rgb in got]
    assert sum(match) >= 8, got
    assert "as thumbnails" in chromium.evaluate("document.querySelector('.rg-status').textContent")


def test_crowded_points_are_dots_until_a_zoom_thins_them(chromium, tmp_path):  # noqa: F811
    out = synthetic_report_dir(tmp_path, 500)
    chromium.viewport(1280, 900, False)
    chromium.navigate((out / "explorer.html").as_uri())
    _wait(chromium, "window.__rgExplorer && window.__rgExplorer.drawn === 500")
    assert chromium.evaluate("[window.__rgExplorer.thumbs, window.__rgExplorer.dots]") == [0, 500]
    chromium.evaluate("(() => { const E = window.__rgExplorer, [x, y] = E.screen(E.firstVisible());"
                      " E.zoom(12, x, y); })()")
    _wait(chromium, "window.__rgExplorer.thumbs > 0")
    assert chromium.evaluate("window.__rgExplorer.drawn") < 400
