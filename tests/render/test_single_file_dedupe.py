"""A single-file report holds each distinct picture once (issue 31, item 11): a picture shown in several places
is one stylesheet rule, and each place keeps its <img> (alt text, size, aspect ratio) drawn from it."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
from explorer_fixture import synthetic_report
from browser_helpers import chromium  # noqa: F401, F811  (the module's browser fixture)

from reportgen.render import render_report

_URI = re.compile(r"data:image/(?:png|jpeg|webp|gif);base64,[A-Za-z0-9+/=]+")


def _single(tmp_path):
    rep = synthetic_report(30)
    out = tmp_path / "single"
    render_report(rep, out, single_file=True)
    return (out / "index.html").read_text()


def test_every_distinct_picture_appears_once(tmp_path):
    html = _single(tmp_path)
    counts = Counter(_URI.findall(html))
    assert counts and max(counts.values()) == 1, [c for c in counts.values() if c > 1]
    shared = re.findall(r'<img src="data:image/svg\+xml,[^"]+" data-p="(\d+)"', html)
    assert shared, "the input shown on its section and its image page should be shared"
    assert all(f'img[data-p="{k}"]{{background-image:url("data:image/' in html for k in set(shared))


def test_a_shared_picture_is_drawn_with_its_size_and_alt(chromium, tmp_path):  # noqa: F811
    html = _single(tmp_path)
    page = tmp_path / "single" / "index.html"
    assert page.read_text() == html
    chromium.viewport(1280, 900, False)
    chromium.navigate(page.as_uri() + "#img-000000000000")
    got = chromium.evaluate("""(() => [...document.querySelectorAll('img[data-p]')].map(i => {
        i.scrollIntoView(); const r = i.getBoundingClientRect();
        return {alt: i.alt, w: r.width, h: r.height, aw: +i.getAttribute('width'), ah: +i.getAttribute('height'),
                bg: getComputedStyle(i).backgroundImage.slice(0, 30), nat: i.naturalWidth};
      }))()""")
    assert got
    for g in got:
        assert g["alt"] and g["nat"] > 0 and g["bg"].startswith('url("data:image/'), g
        if g["w"]:  # shown (not in a closed <details>): the aspect ratio its width/height give
            assert abs(g["w"] / g["h"] - g["aw"] / g["ah"]) < 0.05, g
    # the input picture (grey 200) is drawn where it is shared: sample the big picture on its image page
    from PIL import Image

    chromium.evaluate("document.querySelector('#img-000000000000 .rg-pic').scrollIntoView({block: 'center'})")
    r = chromium.evaluate("(() => { const r = document.querySelector('#img-000000000000 .rg-pic')"
                          ".getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()")
    chromium.screenshot(tmp_path / "shot.png")
    px = np.asarray(Image.open(tmp_path / "shot.png").convert("RGB"))[int(r[1]), int(r[0])]
    assert np.abs(px.astype(int) - 200).max() <= 3, px
