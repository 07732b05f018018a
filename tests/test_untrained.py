"""A model that is (or looks) untrained is announced on the console and in a banner at the top of every page, with
what to pass instead (issue 31, item 4): known when the loader built a random initialisation (timm without
--weights), suspected from the predictions (near-chance confidence, one class for every image), said as such."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from reportgen.checks import untrained_evidence
from reportgen.cli import main
from reportgen.demo import images_dir

BANNER = 'class="callout callout-warning run-banner"'


def _build(model: str, out: Path, *extra: str, images: Path | None = None):
    return CliRunner().invoke(main, ["build", "--model", model, "--images", str(images or images_dir()), "--out",
                                     str(out), "--preset", "minimal", "--device", "cpu", "--no-cache", *extra],
                              catch_exceptions=False)


def _pages(out: Path) -> list[Path]:
    return [out / "index.html", *sorted((out / "sections").glob("*.html"))]


def test_timm_without_weights_is_announced_on_the_console_and_every_page(tmp_path):
    pytest.importorskip("timm")
    out = tmp_path / "out"
    r = _build("timm:test_resnet", out, "--only", "card,filters", "--max-images", "4", "--input-size", "32")
    assert r.exit_code == 0, r.output
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("WARNING")]
    assert warnings and "random weights" in warnings[0] and "--weights" in warnings[0], r.stderr
    assert r.stderr.index("WARNING") < r.stderr.index("[1/2]")  # said before the work, not only at the end
    pages = _pages(out)
    assert len(pages) == 3
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert BANNER in html, page
        banner = html[html.index(BANNER):][:1200]
        assert "random weights" in banner and "--weights" in banner
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert "random weights" in data["model"]["untrained"]
    assert data["model"]["weights_source"].startswith("none: a random initialisation")


def test_a_model_that_only_looks_untrained_is_flagged_as_a_heuristic(tmp_path):
    f = tmp_path / "flat.py"
    f.write_text(FLAT)
    out = tmp_path / "out"
    r = _build(f"{f}:make", out, "--only", "card", "--max-images", "6", "--input-size", "28")
    assert r.exit_code == 0, r.output
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("WARNING")]
    assert len(warnings) == 1 and "looks untrained" in warnings[0] and "heuristic" in warnings[0], r.stderr
    html = (out / "index.html").read_text(encoding="utf-8")
    assert BANNER in html and "looks untrained" in html


def test_the_trained_demo_model_gets_no_banner(tmp_path):
    out = tmp_path / "out"
    r = _build("demo", out, "--only", "card", "--max-images", "20")
    assert r.exit_code == 0, r.output
    assert "WARNING" not in r.stderr
    assert all(BANNER not in p.read_text(encoding="utf-8") for p in _pages(out))
    assert json.loads((out / "report.json").read_text(encoding="utf-8"))["model"]["untrained"] is None


@pytest.mark.parametrize("case, probs, expect", [
    ("uniform over 1000 classes", np.full((8, 1000), 1e-3), "near chance"),
    ("confident and varied", np.eye(10)[np.arange(20) % 10] * 0.9 + 0.01, None),
    ("one class for every image", np.tile(np.r_[0.6, np.full(9, 0.4 / 9)], (20, 1)), "one class"),
    ("one class for a few images is no evidence", np.tile(np.r_[0.6, np.full(9, 0.4 / 9)], (5, 1)), None),
    ("two classes, confident", np.tile([0.9, 0.1], (12, 1)), None),
])
def test_untrained_evidence(case, probs, expect):
    got = untrained_evidence(probs)
    if expect is None:
        assert got is None, case
    else:
        assert got is not None and expect in got, (case, got)


def test_evidence_takes_probabilities_not_logits():
    with pytest.raises(ValueError):
        untrained_evidence(torch.randn(4, 10).numpy())


FLAT = ("import torch\nfrom torch import nn\n\n\ndef make():\n"
        "    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),\n"
        "                      nn.Linear(4, 10))\n"
        "    with torch.no_grad():\n        m[4].weight.zero_()\n        m[4].bias.zero_()\n    return m\n")


def test_compare_names_the_model_of_each_log_line_and_the_one_that_looks_untrained(tmp_path):
    f = tmp_path / "flat.py"
    f.write_text(FLAT)
    out = tmp_path / "cmp"
    r = CliRunner().invoke(main, ["compare", "--model", "demo", "--model", f"{f}:make", "--images",
                                  str(images_dir()), "--out", str(out), "--preset", "minimal", "--device", "cpu",
                                  "--no-cache", "--technique", "saliency", "--max-images", "4", "--input-size", "28",
                                  "--cka-images", "4", "--cka-layers", "2"], catch_exceptions=False)
    assert r.exit_code in (0, 1), r.output
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("WARNING")]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING: Model B: ") and "looks untrained" in warnings[0]
    counted = [ln for ln in r.stderr.splitlines() if re.search(r"\[\d+/\d+\]", ln)]  # item 6: which model
    assert counted and all(re.match(r"model [AB] \[\d+/\d+\]", ln) for ln in counted), counted
    assert any(ln.startswith("model A") for ln in counted) and any(ln.startswith("model B") for ln in counted)
    assert BANNER in (out / "index.html").read_text(encoding="utf-8")
