"""reportgen compare on two checkpoints of the demo model (the second fine-tuned here for a few steps)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reportgen import demo
from reportgen.compare import compare_reports
from reportgen.options import ModelOptions
from reportgen.compare.diff import calibration, confusion


def fine_tuned_demo(path, steps: int = 6, lr: float = 0.05, seed: int = 0):
    """The demo model after a few SGD steps on its own images with shuffled labels: a second checkpoint
    whose predictions differ on some images."""
    from reportgen.imageset import discover_images
    from reportgen.preprocess import Normalize, Preprocessing

    torch.manual_seed(seed)
    pre = Preprocessing(resize=None, input_size=demo.INPUT_SIZE, mean=demo.MEAN, std=demo.STD, source="demo")
    imgs = discover_images(demo.images_dir(), pre, demo.labels())
    x = Normalize(demo.MEAN, demo.STD)(imgs.batch(list(range(len(imgs)))))
    y = torch.as_tensor(imgs.labels)
    y = y[torch.randperm(len(y))]
    m = demo.build_model().train()
    opt = torch.optim.SGD(m.parameters(), lr=lr)
    for s in range(steps):
        b = torch.randint(0, len(x), (64,))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(x[b]), y[b]).backward()
        opt.step()
    torch.save(m.eval().state_dict(), path)
    return m


@pytest.mark.slow
def test_compare_two_demo_checkpoints_shows_flipped_predictions(tmp_path):
    run_compare(tmp_path)


def test_compare_two_demo_checkpoints_minimal(tmp_path):
    run_compare(tmp_path, techniques=("filters",), max_images=60)


def run_compare(tmp_path, techniques=("filters", "saliency", "class_visualization"), max_images=None):
    w = tmp_path / "b.pt"
    fine_tuned_demo(w)
    out = tmp_path / "cmp"
    res = compare_reports("demo", "demo", demo.images_dir(), out, model_b=ModelOptions(weights=w),
                          names=("shipped", "tuned"),
                          preset="minimal", techniques=techniques, cka_images=32, cka_layers=6, device="cpu",
                          max_images=max_images)
    data = json.loads((out / "report.json").read_text())
    secs = {s["id"]: s for s in data["sections"]}
    assert {"flipped", "per_class", "calibration", "cka"} <= set(secs)
    assert all(f"pair_{t}" in secs for t in techniques)
    # the flips in the report are exactly the images where the two checkpoints' top-1 classes differ
    from reportgen.build import make_context
    from reportgen.preprocess import Preprocessing

    pre = Preprocessing(resize=None, input_size=demo.INPUT_SIZE, mean=demo.MEAN, std=demo.STD, source="demo")
    b = demo.build_model()
    b.load_state_dict(torch.load(w, weights_only=True))
    preds = []
    for m in (demo.build_model(), b):
        from reportgen.config import make_config

        c = make_context(m, demo.images_dir(), class_names=demo.labels(), pre=pre,
                         config=make_config("minimal", general={"max_images": max_images}), device="cpu")
        preds.append(c.features().preds)
    names = [c.images.name(i) for i in np.flatnonzero(preds[0] != preds[1])]
    flips = secs["flipped"]["results"]
    assert flips["flipped"] == len(names) > 0
    assert sorted(flips["flipped_images"]) == sorted(names)
    assert flips["fixed"] + flips["broken"] <= flips["flipped"]
    html = (out / secs["flipped"]["page"]).read_text()
    assert names[0] in html and "shipped:" in html and "tuned:" in html
    cka = secs["cka"]["results"]
    aa = np.array(cka["cka_aa"])
    assert np.allclose(np.diag(aa), 1.0)
    assert all(0.0 <= v <= 1.0 + 1e-9 for row in cka["cka_ab"] for v in row)
    assert set(data["accuracy"]) == {"shipped", "tuned"}
    assert data["accuracy"]["shipped"] > data["accuracy"]["tuned"]  # shuffled labels hurt
    # the run keys (RunInfo.to_dict) are those report.json had when Report.meta was a dict
    assert set(data) == {"reportgen", "title", "kind", "model", "models", "accuracy", "num_classes", "images",
                         "command",
                         "config", "device", "versions", "theme", "generated", "total_time_s", "skipped_images",
                         "sections", "cache", "report_tree", "predictions", "review"}
    assert data["kind"] == "compare" and set(data["models"]) == {"shipped", "tuned"}


def test_calibration_and_confusion():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3]])
    cal = calibration(probs, labels, bins=10)
    # bins: 0.9 (right), 0.6 (right), 0.8 (right), 0.7 (wrong): ECE = (0.1 + 0.4 + 0.2 + 0.7) / 4
    assert cal.ece == pytest.approx((0.1 + 0.4 + 0.2 + 0.7) / 4)
    assert confusion(labels, probs.argmax(1), 2).tolist() == [[2, 0], [1, 1]]


def test_compare_across_architectures_matches_layers_by_cka(tmp_path):
    from torch import nn

    torch.manual_seed(0)
    other = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 12, 3),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 10)).eval()
    out = tmp_path / "x"
    compare_reports("demo", other, demo.images_dir(), out, names=("fashionnet", "seq"), techniques=(),
                    preset="minimal", cka_images=24, max_images=40, device="cpu", input_size=demo.INPUT_SIZE,
                    mean=demo.MEAN, std=demo.STD, labels=demo.labels())
    data = json.loads((out / "report.json").read_text())
    cka = next(s for s in data["sections"] if s["id"] == "cka")["results"]
    assert cka["layers_a"] == ["features.0", "features.4", "features.8", "classifier"]
    assert cka["layers_b"] == ["0", "3", "7"]
    ab = np.array(cka["cka_ab"])
    assert ab.shape == (4, 3) and np.allclose(np.diag(np.array(cka["cka_aa"])), 1.0)
    assert set(cka["matches"]) == set(cka["layers_a"]) and set(cka["matches"].values()) <= set(cka["layers_b"])
    assert [s["id"] for s in data["sections"]] == ["flipped", "per_class", "calibration", "cka", "concepts_match"]
