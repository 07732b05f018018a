"""One verdict per check in a report (issue 31.2): the sanity section owns the randomisation checks and the
faithfulness table shows the same verdicts and numbers for every method both show."""

from __future__ import annotations

import json

import pytest

from conftest import CLASSES, make_tiny_cnn
from reportgen.build import build_report

TINY = dict(preset="minimal", resize=None, input_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, device="cpu",
            labels=CLASSES)
# the sanity section's name -> the faithfulness table's
METHODS = {"gradient": "saliency", "guided backprop": "guided backprop", "Grad-CAM": "Grad-CAM",
           "Integrated Gradients": "Integrated Gradients"}


@pytest.fixture(scope="module")
def sections(image_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("verdicts") / "out"
    # a module fixture runs before the per-test private cache folder is set: a folder of its own
    only = ["saliency", "integrated_gradients", "gradcam", "guided_backprop", "sanity", "faithfulness"]
    build_report(make_tiny_cnn(), image_dir, out, cache_dir=tmp_path_factory.mktemp("verdict-cache"), only=only,
                 set_options=["sanity.max_images=2"], **TINY)
    report = json.loads((out / "report.json").read_text())
    return {s["id"]: s["results"] for s in report["sections"]}


@pytest.mark.parametrize("sanity_name", list(METHODS))
def test_every_verdict_of_a_method_is_the_same_in_sanity_and_faithfulness(sections, sanity_name):
    san, faith = sections["sanity"], sections["faithfulness"]
    row = next(m for m in faith["methods"] if m["method"] == METHODS[sanity_name])
    check = san["checks"][sanity_name]
    rl = san["random_logit"]["methods"][sanity_name]
    assert check["weights"] == san["verdict"][sanity_name]
    assert check["random_class"] == rl["verdict"]
    assert row["sanity"].startswith(f"weights {check['weights']} (")
    assert f"class {rl['verdict']} (" in row["sanity"]
    assert row["weights_rho"] == check["weights_rho_all_random"]["mean"]
    assert row["random_class_rho"] == rl["rank_corr"] == check["random_class_rho"]["mean"]
    assert san["cascade_rank_corr"][sanity_name][-1] == check["weights_rho_all_random"]["mean"]
    assert len(faith["sanity_images"]) == 2  # the sanity section's images (sanity.max_images)
