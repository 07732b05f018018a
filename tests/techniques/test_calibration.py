"""calibration: ECE (equal-width, equal-mass), NLL and Brier equal written-out loops; temperature scaling finds
the factor an over-confident model was sharpened by and lowers its held-out ECE; the section fills its RESULTS on
the demo model and is unsupported without labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from reportgen import demo
from reportgen.build import run_technique
from reportgen.calibration.metrics import brier, calibration, ece, fit_temperature, nll, softmax
from reportgen.preprocess import Preprocessing
from reportgen.registry import get
from reportgen.report import Figure, Table
from reportgen.results_schema import missing, undeclared


def _softmax_row(z):
    m = max(z)
    e = [math.exp(v - m) for v in z]
    return [v / sum(e) for v in e]


def _ece_loops(probs, labels, bins, mass=False):
    """ECE written out: top-1 confidence and correctness per image, bins as lists, sum of n_b/N |acc - conf|."""
    conf = [max(row) for row in probs]
    ok = [float(row.index(max(row)) == y) for row, y in zip(probs, labels)]
    n = len(conf)
    members: list[list[int]] = [[] for _ in range(bins)]
    if mass:  # sorted by confidence, consecutive runs of sizes differing by at most one (larger runs first)
        order = sorted(range(n), key=lambda i: conf[i])
        start = 0
        for b in range(bins):
            size = n // bins + (1 if b < n % bins else 0)
            members[b] = order[start:start + size]
            start += size
    else:  # (lo, hi]; the first bin includes 0
        for i, c in enumerate(conf):
            b = next(b for b in range(bins) if c <= (b + 1) / bins or b == bins - 1)
            members[b].append(i)
    total = 0.0
    for m in members:
        if m:
            total += len(m) / n * abs(sum(ok[i] for i in m) / len(m) - sum(conf[i] for i in m) / len(m))
    return total


@pytest.fixture(scope="module")
def random_data():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2.0, size=(157, 6))
    labels = rng.integers(0, 6, size=157)
    logits[np.arange(157), labels] += 2.5 * (rng.random(157) < 0.7)  # some signal: a finite temperature
    return logits, labels


@pytest.mark.parametrize("bins", [5, 15])
def test_ece_nll_brier_equal_written_out_loops(random_data, bins):
    logits, labels = random_data
    probs = softmax(logits)
    rows = [_softmax_row(list(z)) for z in logits]
    assert np.allclose(probs, rows)
    assert ece(probs, labels, bins) == pytest.approx(_ece_loops(rows, list(labels), bins), abs=1e-12)
    assert ece(probs, labels, bins, "mass") == pytest.approx(_ece_loops(rows, list(labels), bins, mass=True), abs=1e-12)
    assert nll(logits, labels) == pytest.approx(-sum(math.log(r[y]) for r, y in zip(rows, labels)) / len(rows))
    t = 1.7
    rows_t = [_softmax_row([v / t for v in z]) for z in logits]
    assert nll(logits, labels, t) == pytest.approx(-sum(math.log(r[y]) for r, y in zip(rows_t, labels)) / len(rows))
    assert brier(probs, labels) == pytest.approx(
        sum(sum((p - (k == y)) ** 2 for k, p in enumerate(r)) for r, y in zip(rows, labels)) / len(rows))
    cal = calibration(probs, labels, bins)
    assert cal.counts.sum() == len(labels) and cal.bins == bins


def test_fit_temperature_is_the_nll_minimum(random_data):
    logits, labels = random_data
    fit = fit_temperature(logits, labels)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 4001))
    best = grid[np.argmin([nll(logits, labels, t) for t in grid])]
    assert fit.temperature == pytest.approx(best, rel=0.01)
    assert fit.nll_after <= fit.nll_before + 1e-12 and not fit.at_bound


def _calibrated(n=3000, k=10, seed=0):
    """Logits of a perfectly calibrated model: labels drawn from softmax(z) itself."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.0, size=(n, k))
    z[np.arange(n), rng.integers(0, k, n)] += 3.0  # a decent classifier: one class clearly ahead
    p = softmax(z)
    y = np.array([rng.choice(k, p=row) for row in p])
    return z, y


@pytest.mark.parametrize("factor", [5.0, 0.4])
def test_temperature_scaling_recovers_the_factor_and_lowers_heldout_ece(factor):
    z, y = _calibrated()
    sharp = z * factor  # x 5: over-confident; x 0.4: under-confident
    fit_half, held = slice(0, 1500), slice(1500, None)
    fit = fit_temperature(sharp[fit_half], y[fit_half])
    assert fit.temperature == pytest.approx(factor, rel=0.15)
    before = ece(softmax(sharp[held]), y[held])
    after = ece(softmax(sharp[held], fit.temperature), y[held])
    assert before > 0.1 and after < before / 3, (before, after)
    assert (softmax(sharp[held], fit.temperature).argmax(1) == sharp[held].argmax(1)).all()  # accuracy unchanged


def test_fit_temperature_says_when_it_hits_the_bound():
    z = np.array([[5.0, 0.0], [0.0, 5.0], [4.0, 1.0], [1.0, 6.0]])
    fit = fit_temperature(z, np.array([0, 1, 0, 1]))  # all right with a margin: sharper is always better
    assert fit.at_bound and fit.temperature == pytest.approx(0.01)


DEMO_PRE = Preprocessing(resize=None, input_size=demo.INPUT_SIZE, mean=demo.MEAN, std=demo.STD, source="demo")


def test_section_on_the_demo_model_fills_its_results(make_ctx):
    ctx = make_ctx(demo.build_model(), demo.images_dir(), class_names=demo.labels(), pre=DEMO_PRE,
                   general={"max_images": 60}, overrides={"calibration": {"min_class_images": 5, "bins": 10}})
    sec = run_technique(ctx, get("calibration"))
    assert sec.error is None, sec.error
    r = sec.results
    assert undeclared("calibration", r) == set() and missing("calibration", r) == set()
    y = ctx.images.labels
    z = ctx.features().logits.astype(np.float64)
    assert r["labelled_images"] == len(y) == 60 and r["bins"] == 10 and not r["weak"]
    assert r["ece"] == pytest.approx(ece(softmax(z), y, 10), abs=1e-5)
    assert r["ece_equal_mass"] == pytest.approx(ece(softmax(z), y, 10, "mass"), abs=1e-5)
    assert r["nll"] == pytest.approx(nll(z, y), abs=1e-5)
    assert r["brier"] == pytest.approx(brier(softmax(z), y), abs=1e-5)
    assert r["fit_images"] + r["heldout_images"] == 60 and r["temperature"] > 0
    assert r["ece_before_temperature_heldout"] is not None and r["ece_after_temperature"] is not None
    counts = np.bincount(y, minlength=10)
    per_class = r["per_class_ece"]  # the classes with at least 5 of the 60 images
    assert {row["class"]: row["n"] for row in per_class} == {ctx.class_name(c): int(n) for c, n in enumerate(counts)
                                                              if n >= 5}
    worst = per_class[0]
    m = y == ctx.class_names.index(worst["class"])
    assert worst["ece"] == pytest.approx(ece(softmax(z[m]), y[m], 10), abs=1e-5)
    assert [row["ece"] for row in per_class] == sorted((row["ece"] for row in per_class), reverse=True)
    assert any(isinstance(b, Figure) for b in sec.blocks) and any(isinstance(b, Table) for b in sec.blocks)
    assert run_technique(ctx, get("calibration")).results == r  # the seeded split: the same numbers again


def test_unlabelled_images_make_the_section_unsupported(make_ctx, tiny_model, tmp_path):
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / f"photo_{i}.png")
    ctx = make_ctx(tiny_model, tmp_path)
    sec = run_technique(ctx, get("calibration"))
    assert sec.error is None
    assert sec.results == {"unsupported": "calibration needs true labels; none of the 5 images has one (put the "
                                          "images in class sub-folders, or name the files by class)"}


def test_few_labelled_images_are_called_weak(make_ctx, tiny_model, image_dir):
    ctx = make_ctx(tiny_model, image_dir, class_names=["red", "green", "blue", "white"])  # 12 images
    sec = run_technique(ctx, get("calibration"))
    assert sec.error is None and sec.results["weak"] and sec.results["labelled_images"] == 12
    assert "weak" in sec.blocks[0].text
