"""Faithfulness metrics (deletion/insertion, MuFidelity, ROAD) on a tiny model trained in the test to read a planted
bright patch: the true evidence must score better than a random map, a constant map like a random one, and ROAD's
imputation must leave no mask-shaped edge."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from reportgen.attribution import faithfulness as FM
from reportgen.attribution._imputation import neighbour_mean, noisy_linear_imputation
from reportgen.attribution.randomization import random_other_classes

SIDE, PATCH = 16, 4


def planted(n: int, seed: int):
    """Dim noise; class 1 images carry a bright 4x4 patch at a random place. Returns x, y and the patch masks."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, SIDE, SIDE, generator=g) * 0.3
    y = torch.arange(n) % 2
    masks = torch.zeros(n, SIDE, SIDE)
    pos = torch.randint(0, SIDE - PATCH + 1, (n, 2), generator=g)
    for i in range(n):
        if y[i] == 1:
            r, c = pos[i].tolist()
            x[i, :, r:r + PATCH, c:c + PATCH] = 0.9 + 0.1 * torch.rand(3, PATCH, PATCH, generator=g)
            masks[i, r:r + PATCH, c:c + PATCH] = 1
    return x, y, masks


@pytest.fixture(scope="module")
def patch_model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                      nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    x, y, _ = planted(96, 0)
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    m.eval()
    xt, yt, _ = planted(64, 1)
    with torch.no_grad():
        assert (m(xt).argmax(1) == yt).float().mean() > 0.95  # the model reads the patch
    return m


@pytest.fixture(scope="module")
def evidence(patch_model):
    x, y, masks = planted(12, 2)
    keep = y == 1
    x, masks = x[keep], masks[keep]
    truth = masks + 1e-3 * torch.rand(masks.shape, generator=torch.Generator().manual_seed(3))
    rnd = FM.random_map(tuple(masks.shape), torch.Generator().manual_seed(4))
    return x, torch.ones(len(x), dtype=torch.long), truth, rnd


def test_true_evidence_deletes_faster_and_inserts_faster_than_a_random_map(patch_model, evidence):
    x, t, truth, rnd = evidence
    kw = dict(steps=16, batch=32)
    d_true = FM.deletion_curve(patch_model, x, t, truth, fill="black", **kw)
    d_rand = FM.deletion_curve(patch_model, x, t, rnd, fill="black", **kw)
    start = FM.blur(x, 4.0)  # blurred until the patch no longer reads as one
    i_true = FM.insertion_curve(patch_model, x, t, truth, start=start, **kw)
    i_rand = FM.insertion_curve(patch_model, x, t, rnd, start=start, **kw)
    assert d_true.scores.shape == (len(x), 17) and d_true.fractions[0] == 0 and d_true.fractions[-1] == 1
    assert np.allclose(d_true.scores[:, 0], i_true.scores[:, -1], atol=1e-5)  # both ends are the image itself
    assert d_true.auc.mean() < d_rand.auc.mean() - 0.2
    assert i_true.auc.mean() > i_rand.auc.mean() + 0.2
    # patches of 2 px rank by the map's sum over each square and give the same verdict
    assert (FM.deletion_curve(patch_model, x, t, truth, fill="black", patch=2, **kw).auc.mean()
            < FM.deletion_curve(patch_model, x, t, rnd, fill="black", patch=2, **kw).auc.mean())


def test_curve_matches_one_copy_at_a_time(patch_model, evidence):
    x, t, truth, _ = evidence
    c = FM.deletion_curve(patch_model, x[:2], t[:2], truth[:2], steps=4, fill="mean", batch=3)
    order = truth[:2].flatten(1).argsort(1, descending=True)
    for b in range(2):
        for s, k in enumerate(FM.step_counts(SIDE * SIDE, 4)):
            xi = x[b].clone().view(3, -1)
            xi[:, order[b, :k]] = x[b].mean((1, 2))[:, None]
            with torch.no_grad():
                p = torch.softmax(patch_model(xi.view(1, 3, SIDE, SIDE)), 1)[0, 1]
            assert c.scores[b, s] == pytest.approx(float(p), abs=1e-5)


def test_mufidelity_ranks_evidence_and_scores_a_constant_map_like_a_random_one(patch_model, evidence):
    x, t, truth, rnd = evidence
    kw = dict(subset_size=24, runs=48, baseline="black", generator=torch.Generator().manual_seed(0))
    f_true = FM.faithfulness_correlation(patch_model, x, t, truth, **kw)
    f_rand = FM.faithfulness_correlation(patch_model, x, t, rnd, **kw)
    f_const = FM.faithfulness_correlation(patch_model, x, t, torch.ones_like(truth), **kw)
    assert f_true.corr.mean() > 0.5
    assert abs(f_rand.corr.mean()) < 0.25
    assert not f_const.defined.any() and np.all(f_const.corr == 0)  # undefined correlation -> 0, like chance
    assert abs(f_const.corr.mean() - f_rand.corr.mean()) < 0.25


def test_road_imputation_is_the_neighbour_average_and_keeps_the_rest():
    rng = np.random.default_rng(0)
    img = rng.random((3, 20, 24))
    removed = np.zeros((20, 24), dtype=bool)
    removed[4:12, 6:15] = True
    removed[0, :5] = True  # touching the border
    removed[rng.random((20, 24)) < 0.2] = True
    out = noisy_linear_imputation(img, removed, noise=0.0)
    assert np.allclose(out[:, ~removed], img[:, ~removed])
    assert np.allclose(out[:, removed], neighbour_mean(out)[:, removed], atol=1e-9)
    # no mask-shaped edge: across the square's outline the imputed image is as smooth as the mean filter
    noisy = noisy_linear_imputation(img, removed, noise=0.05, rng=np.random.default_rng(1))
    assert np.std(noisy[:, removed] - out[:, removed]) == pytest.approx(0.05, rel=0.1)


def test_road_morf_hurts_more_for_the_evidence_than_lerf(patch_model, evidence):
    x, t, truth, rnd = evidence
    kw = dict(fractions=(0.1, 0.3), noise=0.01, rng=np.random.default_rng(0))
    morf = FM.road_curve(patch_model, x[:4], t[:4], truth[:4], order="morf", **kw)
    lerf = FM.road_curve(patch_model, x[:4], t[:4], truth[:4], order="lerf", **kw)
    rmorf = FM.road_curve(patch_model, x[:4], t[:4], rnd[:4], order="morf", **kw)
    assert morf.area.mean() < rmorf.area.mean() - 0.2
    assert lerf.area.mean() > morf.area.mean() + 0.3
    assert morf.correct.shape == (4, 2)


def test_random_other_class_is_never_the_target_and_repeats_with_the_seed():
    t = np.arange(200) % 5
    a = random_other_classes(t, 5, 42)
    assert np.all(a != t) and np.all((a >= 0) & (a < 5))
    assert np.array_equal(a, random_other_classes(t, 5, 42))
    assert len(set(a[t == 0].tolist())) == 4  # every other class can be drawn


def test_baseline_maps():
    c = FM.centre_map(2, 9, 9)
    assert c.shape == (2, 9, 9) and int(c[0].argmax()) == 40
    g = torch.Generator().manual_seed(0)
    assert torch.equal(FM.random_map((1, 4, 4), g), FM.random_map((1, 4, 4), torch.Generator().manual_seed(0)))
