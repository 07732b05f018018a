"""Failure slices: a planted sub-population the model gets wrong is found as one slice; random errors give none."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_image_folder

from reportgen.build import run_technique
from reportgen.failures.slices import auto_clusters, find_slices
from reportgen.features.records import FeatureStore
from reportgen.registry import get

CLASSES, PER, SUB, D = 4, 60, 30, 32


def planted(seed: int, noise: float = 0.05):
    """Features of 4 classes (Gaussian blobs) plus a sub-population of class 2 (a nearby blob) that the model gets
    wrong 85% of the time; elsewhere 5% random errors. Returns features, labels, correct, confidence, planted rows."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (CLASSES, D))
    x = np.vstack([c + rng.normal(0, 1, (PER, D)) for c in centres] + [centres[2] + rng.normal(0, 1.5, D)
                                                                         + rng.normal(0, 0.6, (SUB, D))])
    y = np.concatenate([np.repeat(np.arange(CLASSES), PER), np.full(SUB, 2)])
    correct = rng.random(len(y)) > noise
    correct[-SUB:] = rng.random(SUB) < 0.15
    conf = np.where(correct, rng.uniform(0.6, 1, len(y)), rng.uniform(0.1, 0.5, len(y)))
    return x.astype(np.float32), y, correct, conf, np.arange(len(y) - SUB, len(y))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_slice_is_one_slice_with_most_of_its_members(seed):
    x, _, correct, conf, members = planted(seed)
    res = find_slices(x, conf, correct, k=auto_clusters(len(x), 5), seed=0)
    assert res.slices and res.labelled
    best = res.slices[0]  # the most errors first
    assert len(np.intersect1d(best.members, members)) >= 0.8 * len(members)
    assert len(np.intersect1d(best.members, members)) >= 0.8 * best.size  # and little else
    assert best.p_value < 0.05 and best.accuracy < best.rest_accuracy


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_errors_give_no_slice(seed):
    x, _, _, _, _ = planted(seed)
    x = x[:CLASSES * PER]
    rng = np.random.default_rng(50 + seed)
    correct = rng.random(len(x)) > 0.12
    conf = np.where(correct, rng.uniform(0.6, 1, len(x)), rng.uniform(0.1, 0.5, len(x)))
    res = find_slices(x, conf, correct, k=auto_clusters(len(x), 5), seed=0)
    assert res.candidates >= 2 and res.slices == []


def test_confidence_as_a_clustering_dimension_makes_slices_of_random_errors():
    """Why the default confidence weight is 0: with it, scattered errors gather into 'significant' slices."""
    x, _, _, _, _ = planted(0)
    x = x[:CLASSES * PER]
    rng = np.random.default_rng(7)
    correct = rng.random(len(x)) > 0.12
    conf = np.where(correct, rng.uniform(0.6, 1, len(x)), rng.uniform(0.1, 0.5, len(x)))
    assert find_slices(x, conf, correct, k=auto_clusters(len(x), 5), seed=0).slices == []
    assert find_slices(x, conf, correct, k=auto_clusters(len(x), 5), seed=0, confidence_weight=1.0).slices


def _planted_ctx(make_ctx, tiny_model, tmp_path, labelled=True):
    """A tiny image set whose feature pass is replaced by the planted features (and logits that make the planted
    rows wrong), so the section itself is tested end to end on known evidence."""
    n_per = (CLASSES * PER + SUB) // CLASSES + 1
    folder = write_image_folder(tmp_path / "imgs", per_class=n_per, size=16)
    ctx = make_ctx(tiny_model, folder, general={"max_images": CLASSES * PER + SUB})
    n = len(ctx.images)
    labels = ctx.images.labels if labelled else np.full(n, -1)
    x, _, correct, _, members = planted(0)
    x, correct = x[:n], correct[:n]
    members = members[members < n]
    given = labels if labelled else np.zeros(n, np.int64)
    pred = np.where(correct, given, (given + 1) % CLASSES)
    logits = np.full((n, CLASSES), -2.0, np.float32)
    logits[np.arange(n), pred] = np.where(correct, 3.0, 0.5)
    ctx.feature_store = FeatureStore(logits=logits, penultimate=x.astype(np.float16), penultimate_source="planted",
                                     pixels=np.zeros((n, 3 * 32 * 32), np.float16), mean_rgb=np.zeros(3, np.float32))
    return ctx, members


def test_section_shows_the_planted_slice_with_its_classes_and_image_links(make_ctx, tiny_model, tmp_path):
    ctx, members = _planted_ctx(make_ctx, tiny_model, tmp_path)
    sec = run_technique(ctx, get("slices"))
    assert sec.error is None, sec.error
    res = sec.results
    assert res["labelled"] and res["candidates"] >= 2 and res["slices"]
    top = res["slices"][0]
    names = {ctx.images.name(int(i)) for i in members}
    assert len(names & set(top["images"])) >= 0.8 * len(names)
    assert top["accuracy"] < top["rest_accuracy"] and top["p_value"] < 0.05
    majority = ctx.class_name(int(np.bincount(ctx.images.labels[members]).argmax()))
    assert top["top_true_classes"][0][0] == majority
    ids = {ctx.images.image_id(int(i)) for i in members}
    from reportgen.report import Grid

    grids = [b for g in sec.blocks for b in getattr(g, "blocks", []) if isinstance(b, Grid)]
    assert grids and all(it.image.image_id in ids for it in grids[0].items[:3])


def test_unlabelled_slices_are_tested_on_confidence(make_ctx, tiny_model, tmp_path):
    ctx, members = _planted_ctx(make_ctx, tiny_model, tmp_path, labelled=False)
    ctx.images.records[:] = [r.__class__(**{**r.__dict__, "label": None}) for r in ctx.images.records]
    sec = run_technique(ctx, get("slices"))
    assert sec.error is None, sec.error
    assert sec.results["labelled"] is False
    top = sec.results["slices"][0]
    assert top["accuracy"] is None and top["top_true_classes"] == []
    names = {ctx.images.name(int(i)) for i in members}
    assert len(names & set(top["images"])) >= 0.8 * len(names)
