"""``reportgen site`` over single-file reports (read from the report.json they embed), and entries a reader can
tell apart: two reports of one title list their preset, image count, date and top-1 accuracy, and their names
(issue 31, item 11)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from conftest import CLASSES, make_tiny_cnn
from reportgen.build import build_report
from reportgen.cli import main


def test_site_accepts_single_files_and_tells_same_titles_apart(tmp_path, image_dir):
    outs = []
    for k, (preset, name) in enumerate([("minimal", "a.html"), ("standard", "b.html")]):
        out = tmp_path / name
        build_report(make_tiny_cnn(seed=k), image_dir, out, labels=CLASSES, preset=preset, only=["card"],
                     device="cpu", input_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, title="Tiny — model card")
        outs.append(out)
    assert outs[0].is_file()
    site = tmp_path / "site"
    res = CliRunner().invoke(main, ["site", *map(str, outs), "--out", str(site)])
    assert res.exit_code == 0, res.output
    html = (site / "index.html").read_text()
    assert 'href="reports/a.html"' in html and 'href="reports/b.html"' in html
    assert (site / "reports" / "a.html").read_bytes() == outs[0].read_bytes()
    entries = json.loads((site / "site.json").read_text())["reports"]
    assert [e["preset"] for e in entries] == ["minimal", "standard"]
    n = len(list(image_dir.rglob("*.png")))
    assert all(e["images"].startswith(f"{n} (") for e in entries), entries
    assert all(e["accuracy"].endswith("%") for e in entries)
    assert "<th>Preset</th>" in html and ">minimal<" in html and ">standard<" in html
    assert '<small class="muted">a.html</small>' in html and '<small class="muted">b.html</small>' in html


def test_site_refuses_a_file_that_is_not_a_report(tmp_path):
    other = tmp_path / "x.html"
    other.write_text("<html></html>")
    res = CliRunner().invoke(main, ["site", str(other), "--out", str(tmp_path / "s")])
    assert res.exit_code == 2 and "not a reportgen report" in res.output
