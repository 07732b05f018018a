"""The faithfulness technique (reportgen/techniques/faithfulness.py). It scores the maps the report already has
(issue 28.1): with the attribution sections and sanity run first, it computes none of the maps they computed (a
spy on the map functions), and its scores are the metric functions' on those very maps; through build_report it
ranks the methods the run enabled."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import CLASSES, make_tiny_cnn

from reportgen import attribution as A
from reportgen import registry
from reportgen.attribution import faithfulness as FM
from reportgen.build import build_report, run_technique
from reportgen.device import device_batch_size, inference_model
from reportgen.techniques._explain import explain_batch
from reportgen.techniques._faith_maps import method_functions
from reportgen.techniques._map_store import MapKey, run_store
from reportgen.techniques._sanity_checks import protocol

SECTIONS = ["saliency", "smoothgrad", "integrated_gradients", "gradcam", "occlusion", "sanity"]
SPIED = ["saliency", "smoothgrad", "integrated_gradients", "gradcam", "gradcam_plus_plus", "guided_gradcam",
         "guided_backprop", "occlusion_grid"]


@pytest.fixture(scope="module")
def run(tiny_pre, tiny_model, image_dir):
    """The attribution sections and sanity, then faithfulness with a spy on the map functions: (ctx, its section,
    the calls: (function, model, classes))."""
    from reportgen.build import make_context
    from reportgen.config import make_config

    # occlusion shows 1 image in the minimal preset, faithfulness scores 2: here it shows both
    cfg = make_config("minimal", technique_overrides={"occlusion": {"max_images": 2}}, only=SECTIONS + ["faithfulness"])
    ctx = make_context(tiny_model, image_dir, class_names=CLASSES, pre=tiny_pre, config=cfg, device="cpu")
    for tid in SECTIONS:
        assert run_technique(ctx, registry.get(tid), strict=True).error is None
    calls: list[tuple[str, object, list[int]]] = []

    def spy(name):
        real = getattr(A, name)

        def wrapped(model, *args, **kw):
            x, t = args[1:3] if name in ("gradcam", "gradcam_plus_plus", "guided_gradcam") else args[:2]
            calls.append((name, model, np.asarray(t).reshape(len(x), -1)[:, 0].tolist()))
            return real(model, *args, **kw)

        return wrapped

    with pytest.MonkeyPatch.context() as mp:
        for name in SPIED:
            mp.setattr(A, name, spy(name))
        sec = run_technique(ctx, registry.get("faithfulness"), strict=True)
    return ctx, sec, calls


def test_faithfulness_computes_no_map_its_sections_computed(run):
    ctx, sec, calls = run
    assert sec.error is None
    r = sec.results
    n = len(r["images"])
    # every scored map of every method came from the section that shows it
    assert r["maps_reused"] == {m: n for m in r["maps_reused"]} and len(r["maps_reused"]) >= 7
    # the only maps computed here are sanity checks sanity did not run (its four methods it did): on randomised
    # copies, or on the trained model for the random other class; never the explained class on the trained model
    p = protocol(ctx, ctx.config.options("sanity"))
    trained = (ctx.pixel_model, ctx.output_model, inference_model(ctx))
    assert {c[0] for c in calls} >= {"smoothgrad", "gradcam_plus_plus", "occlusion_grid"}  # the spy sees the calls
    for name, model, targets in calls:
        assert name not in ("saliency", "integrated_gradients", "gradcam"), name  # sanity's own methods
        if any(model is m for m in trained):
            assert targets == p.other.tolist(), (name, targets)


def test_scores_equal_the_metric_functions_on_the_same_maps(run):
    ctx, sec, _ = run
    o = ctx.config.options("faithfulness")
    b = explain_batch(ctx, o.max_images)
    x, t = b.x.float(), b.targets
    size = ctx.pre.size
    patch, sigma = max(1, round(size / 56)), max(1.0, size / 16)
    fill, start = FM.fill_image(x, o.deletion_fill, sigma), FM.blur(x, sigma)
    pm, batch = inference_model(ctx), device_batch_size(ctx)
    subset = max(1, round(o.mufidelity_subset * FM.unit_scores(torch.zeros(1, size, size), patch)[0].numel()))
    rows = {m["method"]: m for m in sec.results["methods"]}
    store = run_store(ctx)
    fns, _ = method_functions(ctx)
    for m, f in fns.items():
        maps = np.stack([store.maps[MapKey(f.spec, i, int(k))] for i, k in zip(b.idx, t)])
        mt = torch.from_numpy(maps)
        d = FM.deletion_curve(pm, x, t, mt, o.steps, fill, patch, batch,
                              generator=ctx.generator(f"faithfulness/ties/{m}"))
        i = FM.insertion_curve(pm, x, t, mt, o.steps, start, patch, batch,
                               generator=ctx.generator(f"faithfulness/ties/{m}"))
        fc = FM.faithfulness_correlation(pm, x, t, mt, subset, o.mufidelity_runs, fill, patch, batch=batch,
                                         generator=ctx.generator("faithfulness/subsets"))
        assert rows[m]["deletion_auc"] == round(float(d.auc.mean()), 4), m
        assert rows[m]["insertion_auc"] == round(float(i.auc.mean()), 4), m
        assert rows[m]["score"] == round(float((i.auc - d.auc).mean()), 4), m
        assert rows[m]["mufidelity"] == round(float(fc.corr.mean()), 4), m


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
