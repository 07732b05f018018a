"""Figures follow the theme (issue 31, item 9): a matplotlib figure drawn the way every technique draws one
(``pictures.new_figure`` + ``figure_to_png``) is dark with light text in a dark report and light with dark text in a
light one, from the same stored picture (a re-render changes the theme without redrawing)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image

from reportgen.pictures import figure_to_png, new_figure
from reportgen.render import render_report
from reportgen.report import Figure, Report, Section


def _figure():
    fig = new_figure((4, 3))
    ax = fig.subplots()
    ax.plot([0, 1, 2], [0.2, 0.9, 0.4], label="method A")
    ax.plot([0, 1, 2], [0.5, 0.1, 0.7], label="method B")
    ax.set_title("A title")
    ax.set_xlabel("layer")
    ax.legend()
    return figure_to_png(fig)


def _lum(a: np.ndarray) -> np.ndarray:
    return a[..., :3].astype(float) @ np.array([0.299, 0.587, 0.114])


def _rendered(tmp_path: Path, theme: str, picture) -> np.ndarray:
    rep = Report(title="t", sections=[Section(id="plot", title="Plot", blocks=[Figure(picture, caption="c")])])
    out = tmp_path / theme
    render_report(rep, out, theme=theme)
    page = (out / "sections" / "plot.html").read_text()
    src = re.search(r'<img src="\.\./(assets/[0-9a-f]+\.png)"', page).group(1)
    return np.asarray(Image.open(out / src).convert("RGBA"))


def test_a_dark_reports_figure_is_dark_with_light_text(tmp_path):
    picture = _figure()
    dark, light = _rendered(tmp_path, "dark", picture), _rendered(tmp_path, "light", picture)
    assert dark.shape == light.shape and (dark[..., 3] == 255).all()  # opaque, painted in the page colour
    ld, ll = _lum(dark), _lum(light)
    assert np.median(ld) < 40 and np.median(ll) > 220  # the panel: dark / light
    assert np.percentile(ld, 99.5) > 180 and np.percentile(ll, 0.5) < 60  # the text: light / dark
    # the lines keep their colours in both themes (matplotlib's first colour, C0 #1f77b4)
    c0 = np.array([0x1F, 0x77, 0xB4])
    assert (np.abs(dark[..., :3].astype(int) - c0).max(-1) <= 2).sum() > 50
    assert (np.abs(light[..., :3].astype(int) - c0).max(-1) <= 2).sum() > 50


def test_pictures_without_the_mark_are_left_alone(tmp_path):
    from reportgen.report import ImageData

    buf = io.BytesIO()
    Image.fromarray(np.full((20, 30, 3), 255, np.uint8)).save(buf, format="PNG")
    got = _rendered(tmp_path, "dark", ImageData(data=buf.getvalue(), mime="image/png"))
    assert (got[..., :3] == 255).all()  # a plain white PNG (a photo, an old report's figure) is not repainted


def test_no_module_saves_a_figure_around_figure_to_png():
    root = Path(__file__).resolve().parents[2] / "reportgen"
    users = [p.relative_to(root).as_posix() for p in root.rglob("*.py") if ".savefig(" in p.read_text()]
    assert users == ["pictures.py"], users


def test_text_a_technique_placed_over_data_keeps_its_colour(tmp_path):
    """Black counts over a Blues heatmap (the card's confusion matrix) are data, not ink: every pixel of the
    heatmap is the same in both themes."""
    fig = new_figure((3, 3))
    ax = fig.subplots()
    m = np.arange(16).reshape(4, 4) % 5
    ax.imshow(m, cmap="Blues")
    for i in range(4):
        for j in range(4):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=9, color="black")
    ax.axis("off")
    picture = figure_to_png(fig)
    dark, light = _rendered(tmp_path, "dark", picture), _rendered(tmp_path, "light", picture)
    data = (np.abs(light[..., :3].astype(int) - 255).max(-1) > 0) & (np.abs(dark[..., :3].astype(int)
                                                                       - [14, 18, 23]).max(-1) > 0)
    assert data.sum() > 10000
    assert (dark[data] == light[data]).all()
