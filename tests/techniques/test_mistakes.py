"""mistakes: the contrastive map of S_P - S_T peaks on the predicted class's planted pattern; pairs are counted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _planted import bar, bars_data, noise, train, write_folder

from reportgen import registry
from reportgen.attribution import contrast as C
from reportgen.build import run_technique
from reportgen.concepts.confusions import (
    confused_pairs,
    lowest_margin_pairs,
    nearest_of_class,
)
from reportgen.inspection.hooks import count_hooks, module_signature
from reportgen.preprocess import PixelModel, Preprocessing

PRE = Preprocessing(resize=None, input_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, source="test")


@pytest.fixture(scope="module")
def bars_model():
    a, y = bars_data()
    return train(a, y, 2)


def _both(rng, flip: bool):
    """An image with a horizontal bar in one quadrant and a vertical bar in the opposite one; boxes (y0,y1,x0,x1)."""
    a = noise(rng)[0]
    (hy, hx), (vy, vx) = ((3, 3), (19, 19)) if not flip else ((19, 19), (3, 3))
    bar(a, "h", hy, hx)
    bar(a, "v", vy, vx)
    return a, {0: (hy - 1, hy + 4, hx - 1, hx + 11), 1: (vy - 1, vy + 11, vx - 1, vx + 4)}


def test_contrastive_map_peaks_on_the_predicted_pattern(bars_model):
    rng = np.random.default_rng(1)
    pm = PixelModel(bars_model, PRE).eval()
    hits_cam = hits_gx = total = 0
    for k in range(6):
        a, boxes = _both(rng, flip=bool(k % 2))
        x = torch.as_tensor(a)[None, None].repeat(1, 3, 1, 1)
        with torch.no_grad():
            z = pm(x)[0]
        p, t = int(z.argmax()), int(z.argmin())
        cam = C.contrastive_gradcam(pm, bars_model.features, x, p, t, size=(32, 32))[0].numpy()
        gx = C.contrastive_gradient_x_input(pm, x, p, t)[0].clamp_min(0).numpy()

        def mass(m, box):
            y0, y1, x0, x1 = (max(0, v) for v in box)
            return float(m[y0:y1, x0:x1].sum())

        hits_cam += mass(cam, boxes[p]) > 2 * mass(cam, boxes[t])
        hits_gx += mass(gx, boxes[p]) > 2 * mass(gx, boxes[t])
        yy, xx = np.unravel_index(np.argmax(cam), cam.shape)
        y0, y1, x0, x1 = boxes[p]
        assert y0 - 4 <= yy <= y1 + 4 and x0 - 4 <= xx <= x1 + 4, (k, p, (yy, xx), boxes[p])
        total += 1
    assert hits_cam == total and hits_gx >= total - 1
    assert count_hooks(bars_model) == 0


def test_confused_pairs_and_margins():
    probs = np.array([[.9, .1, 0], [.2, .8, 0], [.3, .7, 0], [.1, .6, .3], [0, .4, .6], [.5, .5, 0]])
    labels = np.array([0, 0, 0, 2, 1, -1])
    pairs, wrong = confused_pairs(probs, labels, 5, 5)
    assert wrong == 4
    # ties: margin 0.3 > 0.2
    assert [(p.other, p.predicted, p.count) for p in pairs] == [(0, 1, 2), (2, 1, 1), (1, 2, 1)]
    assert pairs[0].images == [1, 2]  # most confident mistake first (0.8-0.2 > 0.7-0.3)
    low = lowest_margin_pairs(probs, 2)
    assert [i for p in low for i in p.images] == [5, 4]  # margins 0.0 then 0.2
    feats = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 1]], dtype=np.float32)
    nn, d = nearest_of_class(feats, [0], np.array([0, 1, 2, 3]), 2)
    assert nn[0, 0] == 1 and not np.isfinite(d[0, -1]) or nn[0, 1] in (2, 3)


def test_section_finds_the_planted_confusion(make_ctx, bars_model, tmp_path):
    a, y = bars_data(n=40, seed=3)
    lab = y.copy()
    lab[np.flatnonzero(y == 1)[:5]] = 0  # five vertical bars filed as "h": the (h -> v) confusion, five times
    write_folder(tmp_path, a, lab, ["h", "v"])
    ctx = make_ctx(bars_model, tmp_path, class_names=["h", "v"], pre=PRE)
    sig = module_signature(bars_model)
    sec = run_technique(ctx, registry.get("mistakes"), strict=True)
    r = sec.results
    preds = ctx.features().preds
    labels = ctx.images.labels
    hv = int(((labels == 0) & (preds == 1)).sum())
    assert hv >= 2 and r["mode"] == "confusions" and r["mistakes"] == int((labels != preds).sum())
    top = r["pairs"][0]
    assert (top["true"], top["predicted"], top["count"]) == ("h", "v", hv)
    for im in top["images"]:
        assert im["margin"] == pytest.approx(im["p_predicted"] - im["p_true"], abs=2e-4) and im["margin"] > 0
        assert im["nearest_predicted_distance"] is not None
    assert count_hooks(bars_model) == 0 and module_signature(bars_model) == sig
    from reportgen.results_schema import undeclared

    assert not undeclared("mistakes", r)


def test_without_labels_shows_lowest_margins(make_ctx, bars_model, tmp_path):
    a, _ = bars_data(n=12, seed=4)
    from PIL import Image

    for i, im in enumerate(a):
        Image.fromarray((im * 255).astype(np.uint8)).convert("RGB").save(tmp_path / f"x{i}.png")
    ctx = make_ctx(bars_model, tmp_path, class_names=["h", "v"], pre=PRE)
    sec = run_technique(ctx, registry.get("mistakes"), strict=True)
    assert sec.results["mode"] == "lowest_margin" and sec.results["labelled_images"] == 0
    ms = [im["margin"] for p in sec.results["pairs"] for im in p["images"]]
    allp = torch.softmax(torch.as_tensor(ctx.features().logits), 1).numpy()
    assert min(ms) == pytest.approx(float(np.min(np.abs(allp[:, 0] - allp[:, 1]))), abs=1e-3)


def test_mistakes_results_schema_names_the_runner_up_keys():
    from reportgen.results_schema import schema
    from reportgen.techniques import mistakes

    assert "pairs[].images[].p_runner_up" in schema(mistakes.RESULTS)
    assert np.isscalar(len(schema(mistakes.RESULTS)))
