"""Layout defects a reader saw (issue 31, item 10): the CKA figure's right heatmap wrote its layer names over the
left one; the compare title repeated each model's name; the sanity plot cut points below its axis and its legend
covered lines; the faithfulness table ran past a 1280-px window and hid its last column; class-visualisation
captions ended in "NOT…"; paths on the card broke mid-name. The figures are checked from matplotlib's own
layout; the page ones in Chromium (skipped when it is absent)."""

from __future__ import annotations

import numpy as np
import pytest
from browser_helpers import chromium  # noqa: F401, F811  (the module's browser fixture)


def _capture(monkeypatch, module) -> list:
    figs: list = []
    real = module.figure_to_png

    def keep(fig, *a, **k):
        figs.append(fig)
        return real(fig, *a, **k)

    monkeypatch.setattr(module, "figure_to_png", keep)
    return figs


def _boxes(fig, artists):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    r = fig.canvas.get_renderer()
    fig.draw(r)
    return [a.get_window_extent(r) for a in artists if a.get_visible() and a.get_text()]


def test_cka_right_heatmap_names_nothing_over_the_left(monkeypatch):
    from reportgen.compare import cka_section

    figs = _capture(monkeypatch, cka_section)
    la = [f"features.{k}.conv.0.long_layer_name_{k}" for k in range(6)]
    lb = [f"layer{k}.0.downsample.0" for k in range(5)]
    rng = np.random.default_rng(0)
    cka_section._heatmaps(rng.random((6, 5)), rng.random((6, 6)), la, lb, ["MobileNetV2", "ResNet18"], 20,
                          "unbiased")
    fig = figs[0]
    left, right = fig.axes[0], fig.axes[1]
    labels = right.get_yticklabels() + right.get_xticklabels()
    boxes = _boxes(fig, labels)
    lbox = left.get_window_extent()
    assert all(b.x0 >= lbox.x1 - 1 for b in boxes), "a label of the right heatmap lies over the left one"
    assert not [t for t in right.get_yticklabels() if t.get_visible() and t.get_text()]  # rows named once
    assert [t.get_text() for t in left.get_yticklabels()] == la


def test_comparison_title_names_each_model_once():
    from reportgen.compare.run import comparison_title

    assert comparison_title(["MobileNetV2", "ResNet18-random"], ["MobileNetV2", "ResNet"]) == \
        "MobileNetV2 vs ResNet18-random — comparison"
    assert comparison_title(["A", "B"], ["MobileNetV2 (mobilenet_v2)", "ResNet"]) == \
        "A (MobileNetV2) vs B (ResNet) — comparison"


def test_sanity_plot_keeps_every_point_and_its_legend_off_the_lines(monkeypatch):
    from reportgen.techniques import sanity

    figs = _capture(monkeypatch, sanity)
    labels = ["features.9", "features.4", "features.0"]
    methods = ("gradient", "guided backprop", "Grad-CAM", "Integrated Gradients")
    cas = {m: [0.9, 0.5, 0.3] for m in methods}
    ind = {m: [0.95, 0.1, 0.0] for m in methods}
    ind["Grad-CAM"] = [0.95, -0.6, -0.45]  # below the old fixed axis (-0.2)
    sanity.curve_plot(labels, cas, ind)
    fig = figs[0]
    lo, hi = fig.axes[1].get_ylim()
    assert lo < -0.6 and hi > 0.95
    legends = [*fig.legends] + [a.get_legend() for a in fig.axes if a.get_legend() is not None]
    assert len(legends) == 1
    _boxes(fig, [])
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    r = FigureCanvasAgg(fig).get_renderer()
    lb = legends[0].get_window_extent(r)
    assert all(not lb.overlaps(ax.get_window_extent(r)) for ax in fig.axes)


def test_paths_wrap_between_folders():
    from reportgen.render.text import wbr_path

    assert str(wbr_path("reportgen/demo/images")) == "reportgen/<wbr>demo/<wbr>images"
    assert str(wbr_path("a<b>/c")) == "a&lt;b&gt;/<wbr>c"


# ------------------------------------------------------------------------------------------------ in Chromium


@pytest.fixture(scope="module")
def page_report(tmp_path_factory):
    from reportgen.render import render_report
    from reportgen.report import (
        Grid, GridItem, ImageData, ImagesInfo, KeyValues, Report, RunInfo, Section, Table,
    )

    cols = ["rank", "method", "deletion AUC", "insertion AUC", "insertion - deletion", "MuFidelity",
            "ROAD MoRF / LeRF", "sanity (rho weights / class)"]
    rows = [[k, name, 0.1816, 0.8972, "0.716 [0.690, 0.741]", 0.6881, "0.010 / 0.973",
             "weights passes, class fails (rho 0.26 / 0.82)"]
            for k, name in enumerate(["guided backprop", "Guided Grad-CAM", "centre Gaussian (baseline)"], 1)]
    table = Table(cols, rows, numeric=[0, 2, 3, 5])
    cells = [GridItem(ImageData(np.full((28, 28, 3), 120, np.uint8), display_width=56), label="Sandal — regularised",
                      sublabel="S_c = 12.3, p = 0.120, rank 3: not reached", tone="bad")]
    grid = Grid(cells, columns=2, cell_width=96)
    kv = KeyValues([("weights", "reportgen/demo/weights_of_a_model_with_a_long_name.pt")])
    meta = RunInfo(images=ImagesInfo(folder="/data/some_long_folder_name/validation_images_of_a_set", count=3))
    rep = Report(title="t", meta=meta, sections=[Section(id="faithfulness", title="F", blocks=[table, grid, kv])])
    out = tmp_path_factory.mktemp("layout") / "rep"
    render_report(rep, out)
    return out


def test_a_wide_table_shows_its_last_column_at_1280px(chromium, page_report):  # noqa: F811
    chromium.viewport(1280, 900, False)
    chromium.navigate((page_report / "sections" / "faithfulness.html").as_uri())
    got = chromium.evaluate("""(() => {
      const wrap = document.querySelector('.table-wrap'), th = [...wrap.querySelectorAll('thead th')];
      const sub = document.querySelector('.cell-sub');
      return {wrap: wrap.getBoundingClientRect().right, last: th[th.length - 1].getBoundingClientRect().right,
              sticky: getComputedStyle(wrap.querySelector('tbody td')).position,
              sub: [sub.scrollHeight, sub.clientHeight], text: sub.textContent};
    })()""")
    assert got["last"] <= got["wrap"] + 1, got  # the sanity column is in view, not scrolled away
    assert got["sticky"] == "sticky"  # a narrower window scrolls under the row names
    assert got["sub"][0] <= got["sub"][1] + 1 and got["text"].endswith("not reached"), got  # nothing cut off


def test_paths_on_the_card_break_at_separators(chromium, page_report):  # noqa: F811
    html = (page_report / "index.html").read_text()
    assert "/<wbr>some_long_folder_name/<wbr>validation_images_of_a_set" in html
    page = (page_report / "sections" / "faithfulness.html").read_text()
    assert "reportgen/<wbr>demo/<wbr>weights_of_a_model_with_a_long_name.pt" in page
    chromium.viewport(390, 844, True)
    chromium.navigate((page_report / "index.html").as_uri())
    lines = chromium.evaluate("""(() => {
      const dd = [...document.querySelectorAll('.fact-card dd')].find(d => d.textContent.includes('validation'));
      const walker = document.createTreeWalker(dd, NodeFilter.SHOW_TEXT), out = [];
      let top = null;
      for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        for (let i = 0; i < n.length; i++) {
          const r = document.createRange(); r.setStart(n, i); r.setEnd(n, i + 1);
          const t = Math.round(r.getBoundingClientRect().top);
          if (top === null || t > top + 2) { out.push(''); top = t; }
          out[out.length - 1] += n.data[i];
        }
      }
      return out;
    })()""")
    assert len(lines) > 1 and all(line.endswith("/") for line in lines[:-1]), lines  # lines end at a folder
