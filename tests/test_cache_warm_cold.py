"""A report is a function of its inputs and options, whatever the cache holds: build and compare give the same
results with an empty cache and with one warmed by an earlier build of other sections (issue 31.1: faithfulness
served from a build that enabled more attribution sections scored 10 methods in compare, 3 when cold)."""

from __future__ import annotations

import json

from conftest import CLASSES, make_tiny_cnn
from reportgen.build import build_report
from reportgen.compare import compare_reports

TINY = dict(preset="minimal", resize=None, input_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, device="cpu",
            labels=CLASSES, max_images=4)
ONLY = ["saliency", "faithfulness"]
TIMINGS = {"wall_time_s", "cached", "total_time_s", "generated", "time_s", "page"}


def _results(out) -> list:
    """(section id, results) of report.json, timings left out."""
    report = json.loads((out / "report.json").read_text())

    def clean(v):
        if isinstance(v, dict):
            return {k: clean(w) for k, w in v.items() if k not in TIMINGS}
        if isinstance(v, list):
            return [clean(w) for w in v]
        return v

    return [(s["id"], clean(s.get("results"))) for s in report["sections"]]


def _methods(results: list) -> list[str]:
    faith = dict(results)["faithfulness"]
    return sorted(m["method"] for m in faith["methods"])


def test_build_and_compare_equal_with_a_warm_and_a_cold_cache(image_dir, tmp_path):
    a, b = make_tiny_cnn(seed=0), make_tiny_cnn(seed=1)
    cold, warm = tmp_path / "cold", tmp_path / "warm"
    # the warm cache first holds a build that enables more attribution methods (gradcam) besides these two
    build_report(a, image_dir, tmp_path / "wide", cache_dir=warm, only=["saliency", "gradcam", "faithfulness"],
                 **TINY)
    outs = {}
    for name, cache in (("cold", cold), ("warm", warm)):
        outs[name, "build"] = _results(build_report(a, image_dir, tmp_path / f"b-{name}", cache_dir=cache,
                                                    only=ONLY, **TINY).out)
        outs[name, "compare"] = _results(compare_reports(a, b, images=image_dir, out=tmp_path / f"c-{name}",
                                                         cache_dir=cache, techniques=ONLY, cka_images=4,
                                                         **TINY).out)
    assert outs["cold", "build"] == outs["warm", "build"]
    assert outs["cold", "compare"] == outs["warm", "compare"]
    # only the methods this configuration enables (saliency) and the two baselines, for both models
    assert _methods(outs["warm", "build"]) == ["centre Gaussian (baseline)", "random map (baseline)", "saliency"]
