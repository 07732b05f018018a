"""Accessibility of the rendered report: text contrast computed from each theme's variables (WCAG 2.x),
links told apart without colour, tones marked by more than colour, one <h1> per page."""

from __future__ import annotations

import re

import pytest

from reportgen.render import available_themes, load_theme
from reportgen.render.themes import themes_dir

# (text colour, background colour) pairs the stylesheet actually uses for text (themes/_base.css).
TEXT_PAIRS = [
    ("fg", "bg"), ("fg", "card-bg"), ("fg", "table-stripe"), ("fg", "table-hover"), ("fg", "info-bg"),
    ("fg", "warning-bg"), ("fg", "error-bg"), ("fg", "bad-bg"), ("fg", "ok-bg"),
    ("muted", "bg"), ("muted", "card-bg"), ("muted", "nav-bg"), ("muted", "table-stripe"), ("muted", "code-bg"),
    ("accent", "bg"), ("accent", "card-bg"), ("accent", "accent-soft"), ("accent", "info-bg"), ("accent-fg", "accent"),
    ("nav-fg", "nav-bg"), ("nav-fg", "table-hover"), ("header-fg", "header-bg"), ("code-fg", "code-bg"),
    ("error", "error-bg"), ("warning", "warning-bg"), ("warning", "bg"), ("warning", "card-bg"),
    ("ok", "ok-bg"), ("ok", "bg"), ("ok", "card-bg"), ("bad", "bg"), ("bad", "card-bg"), ("bad", "nav-bg"),
    ("bad", "bad-bg"), ("bg", "bad"), ("info", "info-bg"), ("muted", "header-bg"), ("error", "bg"),
    ("error", "card-bg"), ("muted", "info-bg"), ("muted", "warning-bg"), ("muted", "error-bg"),
]


def _rgb(value: str) -> tuple[float, float, float]:
    v = value.strip().lower()
    m = re.fullmatch(r"#([0-9a-f]{6})", v) or re.fullmatch(r"#([0-9a-f]{3})", v)
    assert m, f"not a hex colour: {value!r}"
    h = m.group(1)
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    return tuple(int(h[i:i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


def luminance(value: str) -> float:
    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(c) for c in _rgb(value))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_contrast_formula():
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)


@pytest.mark.parametrize("theme", available_themes())
def test_text_contrast_at_least_4_5(theme):
    colors = load_theme(theme).colors
    bad = [f"{fg} on {bg}: {contrast(colors[fg], colors[bg]):.2f}" for fg, bg in TEXT_PAIRS
           if contrast(colors[fg], colors[bg]) < 4.5]
    assert not bad, f"theme {theme}: text below 4.5:1 contrast: {bad}"


def test_no_text_is_faded_below_its_colour():
    """Opacity on text would lower the contrast the theme test computed."""
    css = (themes_dir() / "_base.css").read_text()
    screen = css.split("@media print")[0]
    assert not re.search(r"(?<![-\w])opacity:\s*0?\.\d", screen.replace("opacity: 0; }", "")), \
        "text faded with opacity"


def test_links_are_underlined_outside_navigation():
    css = (themes_dir() / "_base.css").read_text()
    rule = re.search(r"(?m)^a \{([^}]*)\}", css).group(1)
    assert "text-decoration: underline" in rule
    # only navigation blocks (sidebar, brand, pager, skip link) drop the underline
    for m in re.finditer(r"([^{}]+)\{[^}]*text-decoration:\s*none", css):
        for sel in m.group(1).split(","):
            sel = sel.strip()
            assert re.search(r"nav-list|brand|pager|skip-link|:hover", sel), f"{sel} hides link underlines"


def test_tones_carry_a_mark_not_only_colour():
    from reportgen.render.html import tone_mark

    assert "✓" in tone_mark("ok") and "(correct)" in tone_mark("ok")
    assert "✗" in tone_mark("tone-bad") and "(incorrect)" in tone_mark("bad")
    assert tone_mark("") == "" and tone_mark("muted") == ""


@pytest.mark.parametrize("single_file", [False, True])
def test_exactly_one_h1_per_page_and_marked_tones(tmp_path, single_file):
    from sample_report import make_report

    from reportgen.render import render_report

    manifest = render_report(make_report(), tmp_path, single_file=single_file)
    for page in manifest["pages"]:
        text = (tmp_path / page).read_text(encoding="utf-8")
        n = len(re.findall(r"<h1[\s>]", text))
        assert n == 1, f"{page}: {n} <h1>"
    grid_page = (tmp_path / manifest["sections"]["filters"]["page"].split("#")[0]).read_text(encoding="utf-8")
    assert 'class="cell tone-bad"' in grid_page
    cell = grid_page.split('class="cell tone-bad"')[1].split("</div>")[0]
    assert "✗" in cell and "(incorrect)" in cell  # not colour alone
    row = grid_page.split('<tr class="tone-bad">')[1].split("</tr>")[0]
    assert "✗" in row
