"""Image pages a reviewer reads (issue 31, item 8) and sections that cannot apply grouped last (item 13): the
picture large, the attribution methods in faithfulness order with their scores, the sanity maps folded away,
numbers by name and unit, the section pages' sidebar; a section marked ``unsupported`` is one line, listed under
"Not applicable" at the end of the sidebar and the contents. Rendered from a synthetic report (no model)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from explorer_fixture import synthetic_report

from reportgen.render import render_report
from reportgen.report import Grid, GridItem, ImageData, Note, Section

IID = "000000000000"


def _map(v: int) -> ImageData:
    return ImageData(np.full((28, 28, 3), v, np.uint8))


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    rep = synthetic_report(30)
    att = rep.sections[1]
    small = ImageData(np.full((28, 28, 3), 90, np.uint8), image_id=IID, whole=True)  # a 28-px input
    att.blocks = [Grid([GridItem(small, label="input"), GridItem(_map(10), label="saliency"),
                        GridItem(_map(20), label="SmoothGrad"), GridItem(_map(30), label="IG")], columns=4)]
    att.results = {"per_image": [{"image": IID, "p_unoccluded": 0.9, "fg_seed_fraction": 0.05}]}
    sanity = Section(id="sanity", title="Sanity checks", blocks=[Grid(
        [GridItem(ImageData(np.zeros((28, 28, 3), np.uint8), image_id=IID, whole=True), label="input")]
        + [GridItem(_map(40 + k), label=f"{m}: {stage}") for m in ("gradient", "Grad-CAM")
           for k, stage in enumerate(("trained", "to features.9", "to features.4"))])])
    faith = Section(id="faithfulness", title="Faithfulness", results={"methods": [
        {"method": "Integrated Gradients", "rank": 1, "score": 0.61},
        {"method": "saliency", "rank": 2, "score": 0.40},
        {"method": "SmoothGrad", "rank": 3, "score": 0.12}]})
    why = "Attention maps were skipped: the model has no self-attention module this section recognises."
    attention = Section(id="attention", title="Attention maps", summary="Long summary that should not show.",
                        blocks=[Note(why, kind="warning")], results={"unsupported": why})
    rep.sections[1:1] = [attention]
    rep.sections += [sanity, faith]
    out = tmp_path_factory.mktemp("imgpages") / "rep"
    render_report(rep, out)
    return out


def _main(html: str) -> str:
    return html[html.index("<main"):]


def test_the_picture_is_large_and_pixelated(report_dir):
    page = (report_dir / "images" / f"{IID}.html").read_text()
    m = re.search(r"<img class=\"rg-pic pixelated\" src=\S+ width=(\d+) height=(\d+)", page)
    assert m, page[:2000]
    assert 320 <= int(m.group(1)) <= 448 and int(m.group(1)) % 28 == 0  # an integer enlargement of 28 px
    assert "Predicted <strong>class" in page


def test_methods_follow_faithfulness_order_with_scores(report_dir):
    page = _main((report_dir / "images" / f"{IID}.html").read_text())
    names = re.findall(r"<section class=rg-method><h3>([^<]+)</h3><p class=rg-score>([^<]+)", page)
    assert [n for n, _ in names] == ["Integrated Gradients", "Saliency", "SmoothGrad"], names
    assert names[0][1].strip() == "faithfulness 0.610, rank 1 of 3" and "rank 3 of 3" in names[2][1]


def test_sanity_maps_are_folded_away_by_method(report_dir):
    page = _main((report_dir / "images" / f"{IID}.html").read_text())
    details = page[page.index("<details class=rg-sanity>"):page.index("</details>")]
    assert "6 maps" in details
    assert re.findall(r"class=rg-sanity-head><a [^>]+>([^<]+)</a>", details) == ["gradient", "Grad-CAM"]
    assert details.count("<figcaption>to features.9</figcaption>") == 2
    assert page.count("<img") - details.count("<img") == 4  # the picture and three method maps outside


def test_numbers_have_names_and_units_not_raw_keys(report_dir):
    from reportgen.render.image_page import NUMBER_LABELS, number_label

    page = _main((report_dir / "images" / f"{IID}.html").read_text())
    assert "p_unoccluded" not in page and "fg_seed_fraction" not in page
    assert "Probability, nothing covered" in page and "Foreground seeds" in page
    assert "fraction of the image" in page  # the unit column
    assert all("_" not in name for name, _ in NUMBER_LABELS.values())
    assert number_label("some_new_key") == ("Some new key", "")


def test_image_pages_have_the_sidebar_with_not_applicable_last(report_dir):
    page = (report_dir / "images" / f"{IID}.html").read_text()
    nav = page[page.index("<nav class=sidebar"):page.index("</nav>")]
    links = re.findall(r"<a href=\.\./sections/([a-z_]+)\.html", nav)
    assert links[-1] == "attention" and set(links) == {"embedding", "saliency", "patches", "sanity", "faithfulness",
                                                      "attention"}
    assert nav.index("Not applicable to this model/images") < nav.index("sections/attention.html")


def test_unsupported_sections_are_one_line_and_grouped_last(report_dir):
    index = (report_dir / "index.html").read_text()
    toc = index[index.index('id="toc-title"'):]
    assert toc.index("Not applicable to this model/images") < toc.index("sections/attention.html")
    assert "the model has no self-attention module" in toc
    table = toc[:toc.index("</table>")]
    assert "attention.html" not in table  # not among the sections that say something
    side = index[index.index('class="sidebar"'):index.index("</nav>")]
    assert side.rindex("sections/attention.html") > side.index("Not applicable")
    page = (report_dir / "sections" / "attention.html").read_text()
    body = page[page.index('<article'):page.index('</article>')]
    assert "Not applicable to this model/images:</strong> Attention maps were skipped" in body
    assert "Long summary" not in body and "callout-warning" not in body and 'class="blocks"' not in body
