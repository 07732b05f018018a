"""End to end: a demo checkpoint with perturbed weights fails the default rules against its parent (exit 1,
the accuracy rule named); the parent against itself passes; baselines load from every report form."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from reportgen.cli import main
from reportgen.demo import images_dir
from reportgen.errors import ReportgenError
from reportgen.review.baseline import load_baseline

ROOT_WEIGHTS = images_dir().parent / "weights.pt"


def _build(out, cache, *extra):
    args = ["build", "--model", "demo", "--images", str(images_dir()), "--out", str(out), "--preset", "minimal",
            "--only", "card", "--max-images", "60", "--cache-dir", str(cache), *map(str, extra)]
    return CliRunner().invoke(main, args)


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    root = tmp_path_factory.mktemp("review")
    r = _build(root / "parent", root / "cache")
    assert r.exit_code == 0, r.output
    return root


def test_perturbed_weights_fail_the_default_rules_and_the_parent_passes(parent, monkeypatch):
    torch.manual_seed(0)
    sd = torch.load(ROOT_WEIGHTS, weights_only=True)
    noisy = {k: v + 0.5 * v.std() * torch.randn_like(v) if k.endswith("weight") and v.numel() > 1 else v
             for k, v in sd.items()}
    torch.save(noisy, parent / "noisy.pt")
    step = parent / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    r = _build(parent / "child", parent / "cache", "--weights", parent / "noisy.pt", "--baseline",
               parent / "parent", "--link-base", "https://example.org/pr-1/")
    assert r.exit_code == 1, r.output
    fail = [ln for ln in r.output.splitlines() if ln.startswith("FAIL")]
    assert any("top1: no drop beyond noise" in ln and "McNemar" in ln and "paired on 60 images" in ln for ln in fail)
    summary = (parent / "child" / "summary.md").read_text()
    assert summary.splitlines()[2].startswith("**Regressed**") and "top-1 accuracy" in summary.splitlines()[2]
    assert "https://example.org/pr-1/index.html" in summary and step.read_text().strip() == summary.strip()
    data = json.loads((parent / "child" / "report.json").read_text())
    assert data["review"]["passed"] is False and len(data["predictions"]["sha256"]) == 60
    assert (parent / "child" / "card.png").read_bytes()[:4] == b"\x89PNG"
    # the parent against itself: exit 0 (a rebuild and `check`)
    r = _build(parent / "again", parent / "cache", "--baseline", parent / "parent" / "report.json")
    assert r.exit_code == 0, r.output
    assert "No change beyond noise" in (parent / "again" / "summary.md").read_text()
    r = CliRunner().invoke(main, ["check", str(parent / "parent"), "--baseline", str(parent / "parent")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["check", str(parent / "child"), "--baseline", str(parent / "parent")])
    assert r.exit_code == 1 and "top1" in r.output
    rules = parent / "rules.toml"
    rules.write_text('[[rule]]\nmetric = "top1"\nmin = 0.99\n')
    r = CliRunner().invoke(main, ["check", str(parent / "parent"), "--rules", str(rules)])
    assert r.exit_code == 1 and "top1 >= 0.99" in r.output


def test_a_baseline_loads_from_a_folder_a_json_and_a_single_file(parent, tmp_path):
    from reportgen.publish.atomic import embed_json

    folder = load_baseline(parent / "parent")
    page = tmp_path / "old.html"
    page.write_text("<html><body><p>report</p></body></html>")
    embed_json(page, parent / "parent" / "report.json")
    for src in (parent / "parent" / "report.json", page):
        b = load_baseline(src)
        assert b.report["predictions"] == folder.report["predictions"]
    assert folder.folder == parent / "parent" and load_baseline(page).folder is None
    for bad in (tmp_path / "missing", tmp_path):
        with pytest.raises(ReportgenError, match="baseline"):
            load_baseline(bad)


def test_a_rerender_keeps_the_review(parent):
    import shutil

    copy = parent / "rerendered"
    shutil.copytree(parent / "child" if (parent / "child").exists() else parent / "parent", copy)
    before = json.loads((copy / "report.json").read_text())["review"]
    summary = (copy / "summary.md").read_text()
    r = CliRunner().invoke(main, ["render", str(copy), "--theme", "dark", "--cache-dir", str(parent / "cache")])
    assert r.exit_code == 0, r.output
    assert json.loads((copy / "report.json").read_text())["review"] == before
    assert (copy / "summary.md").read_text() == summary and (copy / "card.png").is_file()
