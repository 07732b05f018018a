"""reportgen site: a landing page over built reports, relative links, same CSP, atomic output."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from conftest import CLASSES, make_tiny_cnn
from reportgen.build import build_report
from reportgen.cli import main
from reportgen.errors import OutputError
from reportgen.render.html import CSP
from reportgen.publish.site import build_site


@pytest.fixture(scope="module")
def two_reports(tmp_path_factory, image_dir):
    root = tmp_path_factory.mktemp("reports")
    outs = []
    for k in range(2):
        out = root / f"model-{k}"
        build_report(make_tiny_cnn(seed=k), image_dir, out, labels=CLASSES, preset="minimal", only=["card"],
                     device="cpu", input_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, title=f"Tiny {k}")
        outs.append(out)
    return outs


def test_site_lists_reports_with_relative_links(two_reports, tmp_path):
    site = tmp_path / "site"
    res = CliRunner().invoke(main, ["site", *map(str, two_reports), "--out", str(site), "--theme", "dark"])
    assert res.exit_code == 0, res.output
    html = (site / "index.html").read_text()
    assert CSP in html and 'data-theme="dark"' in html
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert "reports/model-0/index.html" in hrefs and "reports/model-1/index.html" in hrefs
    assert not any(h.startswith(("/", "http:", "https:", "file:")) for h in hrefs)
    for h in hrefs:
        if not h.startswith("data:"):
            assert (site / h).is_file(), h
    data = json.loads((site / "site.json").read_text())
    accs = [e["accuracy"] for e in data["reports"]]
    for out, acc in zip(two_reports, accs):
        card = next(s for s in json.loads((out / "report.json").read_text())["sections"] if s["id"] == "card")
        assert acc == f"{100 * card['results']['top1_accuracy']:.1f}%"
        assert acc in html
    assert "Tiny 0" in html and "Tiny 1" in html
    assert not (site / "reports" / "model-0" / ".cache").exists()


def test_site_refuses_foreign_folder_and_non_reports(two_reports, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(OutputError):
        build_site(two_reports, foreign)
    assert (foreign / "keep.txt").is_file()
    from reportgen.errors import ReportgenError

    with pytest.raises(ReportgenError):
        build_site([foreign], tmp_path / "site2")
    # rebuilding an existing site replaces it
    build_site(two_reports[:1], tmp_path / "site3")
    build_site(two_reports, tmp_path / "site3")
    assert len(json.loads((tmp_path / "site3" / "site.json").read_text())["reports"]) == 2
