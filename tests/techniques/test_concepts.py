"""concepts (CRAFT): on the demo model the crops of a concept are more alike than crops of different concepts;
importance is gradient x coefficient (checked against autograd); the three set-level sections build with no hook
left."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reportgen import demo, registry
from reportgen.build import build_report, run_technique
from reportgen.concepts.craft import (
    crop_boxes,
    crops_of,
    factorise,
    importance_and_maps,
    layer_and_grad,
    shared_groups,
)
from reportgen.inspection.hooks import count_hooks, module_signature
from reportgen.preprocess import Preprocessing
from reportgen.results_schema import undeclared

DEMO_PRE = Preprocessing(resize=None, input_size=28, mean=demo.MEAN, std=demo.STD, source="demo")


@pytest.fixture(scope="module")
def demo_model():
    return demo.build_model()


def test_demo_concepts_are_distinct(make_ctx, demo_model):
    ctx = make_ctx(demo_model, demo.images_dir(), preset="standard", class_names=demo.labels(), pre=DEMO_PRE,
                   general={"max_images": 60},
                   overrides={"concepts": {"max_classes": 2, "per_class": 12, "concepts": 4, "examples": 1}})
    sig = module_signature(demo_model)
    sec = run_technique(ctx, registry.get("concepts"), strict=True)
    assert count_hooks(demo_model) == 0 and module_signature(demo_model) == sig
    r = sec.results
    assert not undeclared("concepts", r)
    assert len(r["classes"]) == 2
    for c in r["classes"]:
        assert c["within_similarity"] > c["across_similarity"] + 0.05, c
        assert len(c["concepts"]) == 4 and c["reconstruction_error"] < 0.6
        imp = [k["importance"] for k in c["concepts"]]
        assert imp == sorted(imp, reverse=True)


def test_importance_is_gradient_times_coefficient(demo_model):
    """sum_k I_k equals the first-order term <dS/dA, UW> of the reconstruction (an independent computation)."""
    from reportgen.preprocess import PixelModel

    pm = PixelModel(demo_model, DEMO_PRE).eval()
    torch.manual_seed(0)
    x = torch.rand(3, 3, 28, 28)
    layer = demo_model.features
    boxes = crop_boxes(28, 0.5, 3)
    with torch.inference_mode():
        from reportgen.concepts.craft import pooled

        acts = pooled(pm, demo_model, "features", crops_of(x, boxes))
    con = factorise(acts, 3, seed=0)
    a, g = layer_and_grad(pm, layer, x, 2)
    imp, maps = importance_and_maps(con, a, g)
    recon = np.einsum("bkhw,kc->bchw", maps, con.basis)
    assert imp.sum(1) == pytest.approx((g * recon).sum((1, 2, 3)), rel=1e-4, abs=1e-5)
    assert (maps >= 0).all() and maps.shape == (3, 3, a.shape[2], a.shape[3])
    assert count_hooks(demo_model) == 0


def test_shared_groups_join_similar_bases():
    b1 = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    b2 = np.array([[0.99, 0.1, 0], [0, 0, 1.0]])
    groups, _ = shared_groups([b1, b2], 0.9)
    assert groups == [[(0, 0), (1, 0)]]


def test_build_runs_the_three_sections_with_no_hook_left(tmp_path, demo_model):
    res = build_report(demo_model, demo.images_dir(), tmp_path / "r", labels=demo.labels(), preset="minimal",
                          only=["mistakes", "shortcuts", "concepts"], input_size=28, resize=None, mean=demo.MEAN,
                          std=demo.STD, device="cpu", max_images=40)
    secs = {s.id: s for s in res.report.sections}
    assert set(secs) >= {"mistakes", "shortcuts", "concepts"}
    assert all(secs[i].error is None for i in ("mistakes", "shortcuts", "concepts")), \
        {i: secs[i].error for i in secs}
    assert count_hooks(demo_model) == 0
    html = res.index.read_text(encoding="utf-8")
    assert "Shortcut scan" in html and "Concepts per class" in html and "Mistakes" in html


def test_concepts_without_enough_images_per_class_are_unsupported(make_ctx, tiny_model, image_dir):
    ctx = make_ctx(tiny_model, image_dir, overrides={"concepts": {"min_images": 50}})
    sec = run_technique(ctx, registry.get("concepts"), strict=True)
    why = sec.results.get("unsupported", "")
    assert set(sec.results) == {"unsupported"}, sec.results
    assert "at least 50 images of one class" in why and "the largest class here has 3" in why
    assert len(sec.blocks) == 1 and sec.blocks[0].text == why
