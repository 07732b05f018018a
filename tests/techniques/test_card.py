"""The card technique (reportgen/techniques/card.py): its own tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ColourMeans

from reportgen import registry
from reportgen.build import run_technique
from reportgen.report import Table


def test_card_accuracy_and_confusion_on_a_tiny_model(make_ctx, image_dir, identity_pre):
    c = make_ctx(ColourMeans(), image_dir, class_names=["red", "green", "blue"], pre=identity_pre)
    sec = run_technique(c, registry.get("card"), strict=True)
    labels = c.images.labels
    with torch.no_grad():
        preds = c.pixel_model(c.images.batch(list(range(len(c.images))))).argmax(1).numpy()
    known = labels >= 0
    assert sec.results["labelled_images"] == int(known.sum()) == 9  # "white" is not a class
    assert sec.results["top1_accuracy"] == pytest.approx(float((preds[known] == labels[known]).mean()), abs=1e-4)
    names = ["red", "green", "blue"]
    expect = {}
    for t, p in zip(labels[known], preds[known]):
        expect[(names[t], names[p])] = expect.get((names[t], names[p]), 0) + 1
    assert {(t, p): n for t, p, n in sec.results["confusion"]} == expect
    assert sec.results["top5_accuracy"] == 1.0  # 3 classes: always in the top 5


def test_confusion_table_does_not_rank_ties():
    """With too many classes for a matrix, confusions that each occur once are not called "most frequent"."""
    from types import SimpleNamespace

    from reportgen.report import Section
    from reportgen.techniques.card import CardOptions, _confusion

    ctx = SimpleNamespace(class_name=lambda k: f"class {k}")
    opts = CardOptions(max_confusion_classes=2)
    sec = Section(id="card", title="card")
    _confusion(sec, ctx, np.array([0, 1, 2, 3]), np.array([1, 2, 3, 0]), opts)
    table = next(b for b in sec.blocks if isinstance(b, Table))
    assert table.title == "Confusions" and "not a ranking" in table.caption
    sec = Section(id="card", title="card")
    _confusion(sec, ctx, np.array([0, 0, 1, 2]), np.array([1, 1, 2, 0]), opts)
    table = next(b for b in sec.blocks if isinstance(b, Table))
    assert table.title == "Most frequent confusions" and "not a ranking" not in table.caption
    assert table.rows[0] == ["class 0", "class 1", 2]


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
