"""compare takes build's options (one shared set), per model where two models differ; an honest page."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from reportgen.cli import main
from reportgen.compare.paired import method_rows, side_by_side_table

# A model whose answer depends only on the normalised brightness: logits (m, -m) for the mean m of the
# normalised input, so class 0 ("bright", sorted first) iff the image is brighter than the --mean given.
# Calling the factory leaves a marker file, so a test can tell whether any model was loaded.
FACTORY = '''
from pathlib import Path
import torch
from torch import nn


class Brightness(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1, bias=False)
        self.fc = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1 / 3)
            self.fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def build():
    (Path(__file__).parent / "loaded.txt").write_text("yes")
    return Brightness().eval()
'''


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A factory file and a bright/dark image folder under the current folder, given by absolute paths."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "bright.py").write_text(FACTORY)
    rng = np.random.default_rng(0)
    for cls, level in (("bright", 0.7), ("dark", 0.3)):
        d = tmp_path / "imgs" / cls
        d.mkdir(parents=True)
        for k in range(6):
            a = np.clip(level + rng.normal(0, 0.03, (16, 16, 3)), 0, 1)
            Image.fromarray((a * 255).astype(np.uint8)).save(d / f"{cls}_{k}.png")
    spec = f"{tmp_path / 'models' / 'bright.py'}:build"
    base = ["compare", "--model", spec, "--model", spec, "--images", str(tmp_path / "imgs"), "--device", "cpu",
            "--cache-dir", str(tmp_path / "cache"), "--input-size", "16", "--resize", "16", "--only", "filters",
            "--preset", "minimal", "--cka-images", "8", "--name", "right", "--name", "wrong"]
    return tmp_path, base


def test_mean_and_std_twice_give_each_model_its_own(setup):
    tmp, base = setup
    out = tmp / "cmp"
    r = CliRunner().invoke(main, base + ["--out", str(out), "--mean", "0.5,0.5,0.5", "--mean", "0.9,0.9,0.9",
                                         "--std", "0.25,0.25,0.25", "--std", "0.1,0.1,0.1"])
    assert r.exit_code == 0, r.output
    data = json.loads((out / "report.json").read_text())
    pre = {n: m["preprocessing"] for n, m in data["models"].items()}
    assert pre["right"]["mean"] == [0.5] * 3 and pre["right"]["std"] == [0.25] * 3
    assert pre["wrong"]["mean"] == [0.9] * 3 and pre["wrong"]["std"] == [0.1] * 3
    assert pre["right"]["input_size"] == pre["wrong"]["input_size"] == 16  # given once: both
    # under its own mean (0.5) model "right" separates bright (0.7) from dark (0.3); under 0.9 all look dark
    assert data["accuracy"] == {"right": 1.0, "wrong": 0.5}
    assert "right 100.0% | wrong 50.0%" in r.output
    html = (out / "index.html").read_text()
    assert "Model right" in html and "Model wrong" in html and "100.0% (top-1" in html and "50.0% (top-1" in html
    # every comparison section says what it shows on the overview
    summaries = re.findall(r'<td class="toc-summary">(.*?)</td>', html)
    na = re.findall(r'<li><a href="[^"]+">[^<]+</a> — (.+?)</li>', html)  # "Not applicable": why, in one line
    assert len(summaries) + len(na) == len(data["sections"]) == 6 and all(len(s) > 40 for s in summaries + na)
    assert "The images on which right and wrong give different top-1 classes" in summaries[0]
    # honest title and header: no absolute path of the author's machine anywhere on the page or in report.json
    assert str(tmp) not in html and str(tmp) not in (out / "report.json").read_text()
    assert data["title"] == "right (Brightness) vs wrong (Brightness) — comparison"
    assert data["models"]["right"]["spec"] == "models/bright.py:build"
    cka = next(s for s in data["sections"] if s["id"] == "cka")
    assert cka["results"]["images"] == 8 and cka["results"]["estimator"] == "unbiased"
    page = (out / cka["page"]).read_text()
    assert "Only 8 images: below 50 the estimate is unreliable" in page


def test_model_tables_in_the_toml_file(setup):
    tmp, base = setup
    (tmp / "cmp.toml").write_text('[model]\nstd = [0.25, 0.25, 0.25]\n[model_a]\nmean = [0.5, 0.5, 0.5]\n'
                                  '[model_b]\nmean = [0.1, 0.1, 0.1]\n')
    out = tmp / "cmp.html"  # one self-contained file, like build's --out NAME.html
    r = CliRunner().invoke(main, base + ["--out", str(out), "--config", str(tmp / "cmp.toml"), "--std",
                                         "0.2,0.2,0.2"])
    assert r.exit_code == 0, r.output
    assert out.is_file() and "right 100.0% | wrong 50.0%" in r.output
    blob = re.search(r'<script type="application/json" id="reportgen-report">\n(.*)\n</script>', out.read_text(), re.S)
    pre = {n: m["preprocessing"] for n, m in json.loads(blob.group(1))["models"].items()}
    assert pre["right"]["mean"] == [0.5] * 3 and pre["wrong"]["mean"] == [0.1] * 3  # [model_a] / [model_b]
    assert pre["right"]["std"] == pre["wrong"]["std"] == [0.2] * 3  # the flag given once wins over [model]


@pytest.mark.parametrize("extra, message", [
    (["--mean", "0.5,0.5,0.5", "--mean", "0.5,0.5,0.5", "--mean", "0.1,0.1,0.1"], "--mean was given 3 times"),
    (["--mean", "0.5,0.5"], "three"),
    (["--set", "nosuch.window=3"], "nosuch"),
    (["--cka-estimator", "debiased"], "debiased"),
    (["--only", "nosuch"], "nosuch"),
    (["--theme", "nosuch"], "nosuch"),
    (["--cache-size", "lots"], "cache-size"),
])
def test_bad_flags_exit_2_before_any_model_is_loaded(setup, extra, message):
    tmp, base = setup
    r = CliRunner().invoke(main, base + ["--out", str(tmp / "cmp")] + extra)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert not (tmp / "models" / "loaded.txt").exists() and not (tmp / "cmp").exists()


def test_build_refuses_per_model_values(setup):
    tmp, base = setup
    spec = base[2]
    r = CliRunner().invoke(main, ["build", "--model", spec, "--images", str(tmp / "imgs"), "--out", str(tmp / "b"),
                                  "--mean", "0.5,0.5,0.5", "--mean", "0.1,0.1,0.1"])
    assert r.exit_code == 2 and "given 2 times; give it once" in r.output
    (tmp / "b.toml").write_text('[model_b]\nmean = [0.1, 0.1, 0.1]\n')
    r = CliRunner().invoke(main, ["build", "--model", spec, "--images", str(tmp / "imgs"), "--out", str(tmp / "b"),
                                  "--config", str(tmp / "b.toml")])
    assert r.exit_code == 2 and "model_b values are for `reportgen compare`" in r.output
    assert not (tmp / "models" / "loaded.txt").exists()


def test_compare_and_build_share_one_option_set():
    build = {p.name for p in main.commands["build"].params}
    compare = {p.name for p in main.commands["compare"].params}
    # compare: --model twice (models_); --budget / --plan plan one model's build (reportgen/planning/)
    assert build - compare == {"model", "budget", "plan_only"}
    for flag in ("resize", "mean", "std", "channels", "config", "set_options", "cache_dir", "no_cache",
                 "single_file", "wait", "debug", "threads", "title"):
        assert flag in compare


def test_faithfulness_rankings_side_by_side_tolerant_reader():
    a = {"ranking": [{"method": "saliency", "deletion_auc": 0.2, "insertion_auc": 0.6, "rank": 2},
                     {"method": "gradcam", "deletion_auc": 0.1, "insertion_auc": 0.7, "rank": 1}], "images": 8}
    b = {"ranking": [{"method": "gradcam", "deletion_auc": 0.3, "insertion_auc": 0.5, "rank": 1},
                     {"method": "occlusion", "deletion_auc": 0.25, "insertion_auc": 0.55, "rank": 2}]}
    t = side_by_side_table(("A", "B"), a, b)
    assert t is not None
    assert t.columns[:5] == ["method", "deletion_auc (A)", "deletion_auc (B)", "insertion_auc (A)",
                             "insertion_auc (B)"]
    rows = {r[0]: r for r in t.rows}
    assert set(rows) == {"saliency", "gradcam", "occlusion"}
    assert rows["gradcam"][1:3] == [0.1, 0.3] and rows["saliency"][2] == "-" and rows["occlusion"][1] == "-"
    # a dict keyed by method works too; results without per-method rows give no table
    assert method_rows({"methods": {"ig": {"auc": 0.4}}}) == {"ig": {"auc": 0.4}}
    assert side_by_side_table(("A", "B"), {"images": 8, "verdict": "ok"}, b) is None
    assert side_by_side_table(("A", "B"), {"rows": [{"method": "x", "note": "text only"}]}, b) is None
    assert re.search("side by side", t.caption)
