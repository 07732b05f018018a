"""The faithfulness section through build_report on the tiny CNN, and the random-logit test of the sanity section on
the demo model."""

from __future__ import annotations

import json

import pytest

from conftest import CLASSES, make_tiny_cnn
from reportgen import registry
from reportgen.build import build_report

TINY = dict(preset="minimal", resize=None, input_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, device="cpu")


def test_faithfulness_section_ranks_the_enabled_methods(image_dir, tmp_path):
    res = build_report(make_tiny_cnn(), image_dir, tmp_path / "out", labels=CLASSES,
                       only=["saliency", "gradcam", "faithfulness"], **TINY)
    report = json.loads((res.out / "report.json").read_text())
    sec = next(s for s in report["sections"] if s["id"] == "faithfulness")
    r = sec["results"]
    names = [m["method"] for m in r["methods"]]
    # only the methods this run enabled (saliency, the three CAMs), plus the two baselines
    assert sorted(names) == sorted(["saliency", "Grad-CAM", "Grad-CAM++", "Guided Grad-CAM",
                                    "random map (baseline)", "centre Gaussian (baseline)"])
    assert r["methods_from_config"] is True
    assert [m["rank"] for m in r["methods"]] == list(range(1, len(names) + 1))
    scores = [m["score"] for m in r["methods"]]
    assert scores == sorted(scores, reverse=True)
    for m in r["methods"]:
        assert m["score"] == pytest.approx(m["insertion_auc"] - m["deletion_auc"], abs=2e-4)
        assert 0 <= m["deletion_auc"] <= 1 and 0 <= m["insertion_auc"] <= 1
    assert r["most_faithful"] is None or r["most_faithful"] not in r["no_better_than_random"]
    assert set(r["curves"]) == set(names) and len(r["curves"]["saliency"]["deletion"]) == r["steps"] + 1
    real = [m for m in r["methods"] if "baseline" not in m["method"]]
    assert all(m["sanity"] and m["road_morf"] is not None for m in real)
    # the "most faithful" note names a failed sanity check of the winner instead of praising it alone
    best = next((m for m in r["methods"] if m["method"] == r["most_faithful"]), None)
    if best is not None:
        html = (res.out / sec["page"]).read_text()
        said = f"But {best['method']} fails a sanity check" in html
        assert said == ("fails" in str(best["sanity"]) or "insensitive" in str(best["sanity"]))


@pytest.fixture()
def demo_ctx(make_ctx):
    from reportgen import demo
    from reportgen.preprocess import Preprocessing

    pre = Preprocessing(resize=None, input_size=demo.INPUT_SIZE, mean=demo.MEAN, std=demo.STD, source="demo")
    return make_ctx(demo.build_model(), demo.images_dir(), class_names=demo.labels(), pre=pre)


def test_random_logit_flags_guided_backprop_on_the_demo_model(demo_ctx):
    info = registry.get("sanity")
    opts = info.default_options("minimal")
    opts.max_images, opts.stages = 2, 2
    rl = info.fn(demo_ctx, opts).results["random_logit"]
    assert len(rl["classes"]) == 2 and set(rl["methods"]) == {"gradient", "guided backprop", "Grad-CAM",
                                                              "Integrated Gradients"}
    # Sixt et al. 2020: guided backprop barely depends on the class; the plain gradient does
    assert rl["methods"]["guided backprop"]["verdict"] == "fails"
    assert rl["methods"]["gradient"]["rank_corr"] < rl["methods"]["guided backprop"]["rank_corr"]
