"""The model card and the pages say only what is so (issue 31, item 3): the model's own trainable-parameter count
(not the count after reportgen froze them for the run), where the weights came from when no --weights was given,
no "true" numbers or colouring by true label on an unlabelled image set."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from reportgen import registry
from reportgen.build import run_technique
from reportgen.cli import main
from reportgen.demo import images_dir

FACTORY = '''
import torch
from torch import nn


def make():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
'''


def _card_pairs(sec) -> dict[str, str]:
    from reportgen.report import KeyValues

    kv = next(b for b in sec.blocks if isinstance(b, KeyValues))
    return dict(kv.pairs)


def test_parameter_count_is_the_models_own(make_ctx, image_dir):
    from tests.conftest import CLASSES, make_tiny_cnn

    model = make_tiny_cnn()
    model.features[0].weight.requires_grad_(False)  # frozen by its owner: 3*8*9 = 216 of them
    frozen_by_owner = model.features[0].weight.numel()
    total = sum(p.numel() for p in model.parameters())
    ctx = make_ctx(model, image_dir, class_names=CLASSES)
    sec = run_technique(ctx, registry.get("card"), strict=True)
    assert sec.results["parameters"] == total
    assert sec.results["trainable_parameters"] == total - frozen_by_owner
    assert _card_pairs(sec)["parameters"] == f"{total:,} ({total - frozen_by_owner:,} trainable)"
    assert [p.requires_grad for p in model.parameters()].count(False) == 1  # as the owner left it


def test_all_trainable_is_said_so(make_ctx, image_dir):
    from tests.conftest import CLASSES, make_tiny_cnn

    model = make_tiny_cnn()
    total = sum(p.numel() for p in model.parameters())
    sec = run_technique(make_ctx(model, image_dir, class_names=CLASSES), registry.get("card"), strict=True)
    assert sec.results["trainable_parameters"] == total
    assert _card_pairs(sec)["parameters"] == f"{total:,} (all trainable)"


def test_a_factory_without_weights_is_not_called_weightless(tmp_path, image_dir):
    f = tmp_path / "net.py"
    f.write_text(FACTORY)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["build", "--model", f"{f}:make", "--images", str(image_dir), "--out", str(out),
                                  "--preset", "minimal", "--only", "card", "--device", "cpu", "--no-cache",
                                  "--input-size", "32"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "none given" not in index
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert data["model"]["weights"] is None
    assert "factory" in data["model"]["weights_source"]
    assert data["model"]["weights_source"] in index


def test_archives_carry_their_own_weights(tmp_path):
    import torch

    from reportgen import loading
    from reportgen.display_paths import published_model_info

    scripted = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten()))
    torch.jit.save(scripted, tmp_path / "m.pt")
    info = published_model_info(loading.load_model(str(tmp_path / "m.pt")))
    assert "archive" in (info["weights"] or info["weights_source"])


@pytest.fixture(scope="module")
def unlabelled_report(tmp_path_factory) -> Path:
    """The demo model on 12 of its images copied into one flat folder: no labels."""
    root = tmp_path_factory.mktemp("unlabelled")
    flat = root / "imgs"
    flat.mkdir()
    for k, p in enumerate(sorted(images_dir().glob("*/*.png"))[::5][:12]):
        shutil.copy(p, flat / f"img_{k:02d}.png")
    out = root / "out"
    r = CliRunner().invoke(main, ["build", "--model", "demo", "--images", str(flat), "--out", str(out),
                                  "--preset", "minimal", "--only", "embedding,mistakes", "--device", "cpu",
                                  "--no-cache"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


def test_no_true_class_numbers_without_labels(unlabelled_report):
    data = json.loads((unlabelled_report / "report.json").read_text(encoding="utf-8"))
    mistakes = next(s for s in data["sections"] if s["id"] == "mistakes")
    text = json.dumps(mistakes["results"])
    assert mistakes["results"]["pairs"], mistakes["results"]
    assert "p_true" not in text and '"true"' not in text and "nearest_true" not in text
    assert "p_runner_up" in text
    pages = list((unlabelled_report / "images").glob("*.html"))
    assert pages
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert "p_true" not in html


def test_explorer_of_an_unlabelled_set_offers_no_true_label_colouring(unlabelled_report):
    html = (unlabelled_report / "explorer.html").read_text(encoding="utf-8")
    select = re.search(r"<select[^>]*>(.*?)</select>", html, re.S).group(1)
    assert "true label" not in select and "right or wrong" not in select
    assert 'value="pred"' in select


def test_explorer_of_a_labelled_set_keeps_every_colouring(tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["build", "--model", "demo", "--images", str(images_dir()), "--out", str(out),
                                  "--preset", "minimal", "--only", "embedding", "--device", "cpu", "--no-cache",
                                  "--max-images", "12"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    select = re.search(r"<select[^>]*>(.*?)</select>", (out / "explorer.html").read_text(), re.S).group(1)
    assert "true label" in select and "right or wrong" in select and 'value="pred"' in select


def test_mistakes_results_schema_names_the_runner_up_keys():
    from reportgen.results_schema import schema
    from reportgen.techniques import mistakes

    assert "pairs[].images[].p_runner_up" in schema(mistakes.RESULTS)
    assert np.isscalar(len(schema(mistakes.RESULTS)))
