"""summary.md stays under 60 KB whatever the model or image set; card.png and the step summary are written."""

from __future__ import annotations

import json

import numpy as np

from reportgen.review import ReviewPlan, write_review
from reportgen.review.baseline import Baseline
from reportgen.review.summary import LIMIT


def _report(classes: int, images: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    names = [f"class | {k} " + "x" * 150 for k in range(classes)]  # long names with table pipes
    label = np.random.default_rng(7).integers(0, classes, images)  # the same images and labels in both runs
    pred = np.where(rng.random(images) < (0.8 if seed == 0 else 0.5), label, rng.integers(0, classes, images))
    methods = [f"method {m} " + "y" * 100 for m in range(60)]
    faith = {"images": [f"img{i}.png" for i in range(8)], "most_faithful": methods[0],
             "per_image_score": {m: rng.random(8).tolist() for m in methods + ["random map (baseline)"]},
             "methods": [{"method": m, "score": float(rng.random()), "vs_random_ci95": [0.1, 0.3]}
                         for m in methods + ["random map (baseline)"]]}
    drift = {"methods": [{"method": m, "images": 100, "mean_rank_correlation": 0.5, "mean_topk_overlap": 0.4}
                         for m in methods],
             "changed_images": [{"image": f"{'d' * 100}/{i}.png", "method": methods[0], "rank_correlation": 0.1,
                                 "topk_overlap": 0.2, "prediction_same": True} for i in range(images)],
             "drifted_classes": [{"class": n, "mean_rank_correlation": 0.2, "images": 10} for n in names]}
    cal = {"ece": 0.05 + 0.05 * seed, "nll": 1.0, "brier": 0.3, "per_class_ece":
           [{"class": n, "ece": 0.1, "n": 10} for n in names]}
    return {"title": "big " * 100, "images": {"count": images}, "sections": [
        {"id": "card", "page": "sections/card.html", "results": {}, "figures": []},
        {"id": "faithfulness", "page": "sections/faithfulness.html", "results": faith, "figures": []},
        {"id": "sanity", "page": "sections/sanity.html", "figures": [],
         "results": {"verdict": {m: "passes" if seed == 0 else "fails" for m in methods}}},
        {"id": "calibration", "page": "sections/calibration.html", "results": cal, "figures": []},
        {"id": "drift", "page": "sections/drift.html", "results": drift, "figures": []}],
        "predictions": {"sha256": [f"{i:016x}" for i in range(images)], "label": label.tolist(),
                        "pred": pred.tolist(), "top5": [0] * images, "class_names": names}}


def test_summary_stays_under_60kb_for_1000_classes_and_10000_images(tmp_path, monkeypatch):
    new, old = _report(1000, 10_000, 1), _report(1000, 10_000, 0)
    (tmp_path / "report.json").write_text(json.dumps(new))
    step = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    plan = ReviewPlan(Baseline(old, None, "main"), None, "https://example.org/r/")
    review = write_review(tmp_path, plan)
    text = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) < LIMIT
    assert text.splitlines()[2].startswith("**Regressed**: top-1 accuracy")
    assert "paired on 10000 images" in text and "more" in text and "data:image" not in text
    assert "https://example.org/r/sections/drift.html" in text
    assert review.failed and step.read_text(encoding="utf-8").strip() == text.strip()
    assert (tmp_path / "card.png").read_bytes()[:4] == b"\x89PNG"
    stored = json.loads((tmp_path / "report.json").read_text())["review"]
    assert stored["passed"] is False and any("sanity" in f for f in stored["failures"])
    # no baseline: no verdict against anything, no rules, still small
    (tmp_path / "report.json").write_text(json.dumps(new))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    review = write_review(tmp_path, None)
    text = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert text.splitlines()[2].startswith("**No baseline**") and not review.outcomes
    assert len(text.encode("utf-8")) < LIMIT


def test_the_example_review_is_whole():
    """example_reports/review: a one-epoch demo checkpoint reviewed against the shipped model."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "example_reports" / "review"
    text = (root / "child" / "summary.md").read_text(encoding="utf-8")
    assert text.splitlines()[2].startswith("**Regressed**: top-1 accuracy") and len(text.encode()) < LIMIT
    assert (root / "child" / "card.png").read_bytes()[:4] == b"\x89PNG"
    review = json.loads((root / "child" / "report.json").read_text())["review"]
    assert not review["passed"] and review["pairing"] == "paired on 300 images"


def test_sections_the_budget_left_out_are_named_as_not_judged(tmp_path):
    new, old = _report(3, 40, 0), _report(3, 40, 0)
    new["sections"] = [s for s in new["sections"] if s["id"] != "faithfulness"]
    new["plan"] = {"left_out": [{"section": "faithfulness", "role": "review", "estimate_s": 148.0}]}
    (tmp_path / "report.json").write_text(json.dumps(new))
    write_review(tmp_path, ReviewPlan(Baseline(old, None, "main"), None, None))
    text = (tmp_path / "summary.md").read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith("Left out by --budget"))
    assert "faithfulness" in line and "not judged" in line
    # without a plan (or with nothing left out) there is no such line
    (tmp_path / "report.json").write_text(json.dumps(_report(3, 40, 0)))
    write_review(tmp_path, ReviewPlan(Baseline(old, None, "main"), None, None))
    assert "Left out by --budget" not in (tmp_path / "summary.md").read_text(encoding="utf-8")
