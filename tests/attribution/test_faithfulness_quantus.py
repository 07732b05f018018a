"""Cross-check of the faithfulness metrics and the random-logit draw against Quantus (Hedstroem et al. 2023) on the
same model, inputs, maps, perturbation and seed. Skipped where quantus is not installed (the bench extra)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from conftest import make_tiny_cnn
from reportgen import attribution as A
from reportgen.attribution import faithfulness as FM
from reportgen.attribution.randomization import random_other_classes

quantus = pytest.importorskip("quantus")
SIDE = 24  # 24 x 24 = 576 pixels: steps of 24 pixels (72 channel values) divide it, as Quantus requires
QUIET = dict(normalise=False, abs=False, disable_warnings=True)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = make_tiny_cnn()
    x = torch.rand(3, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1))
    maps = torch.rand(3, SIDE, SIDE, generator=torch.Generator().manual_seed(2))  # no ties
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y, maps


def test_deletion_curve_is_quantus_pixel_flipping(setup):
    model, x, y, maps = setup
    pf = quantus.PixelFlipping(features_in_step=3 * SIDE, perturb_baseline=0.0, **QUIET)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = np.asarray(pf(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps[:, None].numpy(),
                               device="cpu", softmax=True))
    ours = FM.deletion_curve(model, x, y, maps, steps=SIDE, fill=0.0)
    assert theirs.shape == (3, SIDE)
    np.testing.assert_allclose(ours.scores[:, 1:], theirs, atol=1e-5)  # Quantus's curve starts after step 1


@pytest.mark.parametrize("patch, order, regions", [(4, "morf", 20), (6, "lerf", 16), (7, "morf", 16)])
def test_region_perturbation_is_quantus_region_perturbation(setup, patch, order, regions):
    # patch 7 does not divide 24 px: Quantus centres its grid (1 px of padding above / left, 2 below / right)
    model, x, y, maps = setup
    rp = quantus.RegionPerturbation(patch_size=patch, order=order, regions_evaluation=regions, perturb_baseline=0.0,
                                    **QUIET)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = np.asarray(rp(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps[:, None].numpy(),
                               device="cpu", softmax=True))
    ours = FM.region_perturbation(model, x, y, maps, patch=patch, regions=regions, fill=0.0, order=order)
    assert theirs.shape == ours.drops.shape == (3, regions)
    np.testing.assert_allclose(ours.drops, theirs, rtol=1e-4, atol=1e-7)  # the untrained net's drops are ~1e-4
    assert np.abs(theirs).max() > 1e-4  # not vacuous: filling regions moved the score (1000 x the tolerance)
    np.testing.assert_allclose(ours.aopc, theirs.sum(1) / (regions + 1), rtol=1e-4, atol=1e-7)


def test_mufidelity_is_quantus_faithfulness_correlation(setup):
    model, x, y, maps = setup
    runs, size = 20, 60
    np.random.seed(7)  # Quantus draws with the global numpy generator: one subset per image, run by run
    subsets = np.stack([np.stack([np.random.choice(3 * SIDE * SIDE, size, replace=False) for _ in range(len(x))])
                        for _ in range(runs)], 1)
    fc = quantus.FaithfulnessCorrelation(nr_runs=runs, subset_size=size, perturb_baseline=0.0,
                                         return_aggregate=False, **QUIET)
    np.random.seed(7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = np.asarray(fc(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps[:, None].numpy(),
                               device="cpu", softmax=True))
    ours = FM.faithfulness_correlation(model, x, y, maps, size, baseline=0.0, unit="value",
                                       subsets=torch.from_numpy(subsets))
    np.testing.assert_allclose(ours.corr, theirs, atol=1e-4)


def test_road_is_quantus_road_on_a_greyscale_model():
    # Quantus 0.6's ROAD indexes the flattened C x H x W map into an H x W mask, so it only runs on one channel
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * SIDE * SIDE, 3)).eval()
    x = torch.rand(12, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(3))
    maps = torch.rand(12, SIDE, SIDE, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        y = model(x).argmax(1)
    pct = [10, 30, 50, 70, 90]
    road = quantus.ROAD(noise=0.0, percentages=pct, **QUIET)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        road(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps[:, None].numpy(), device="cpu")
    theirs = np.array([road.evaluation_scores[p] for p in pct])
    ours = FM.road_curve(model, x, y, maps, [p / 100 for p in pct], "morf", noise=0.0)
    np.testing.assert_allclose(ours.correct.mean(0), theirs, atol=1e-9)
    assert theirs.min() < 1.0  # the comparison is not vacuous: removal changed some predictions


def test_random_logit_is_quantus_random_logit(setup):
    model, x, y, _ = setup

    def explain(model, inputs, targets, **_):
        xt = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        return A.to_map(A.saliency(model, xt, torch.as_tensor(np.asarray(targets)))).numpy()[:, None]

    def spearman(a, b, batched=False, **_):
        return [A.rank_correlation(u, v) for u, v in zip(a, b)]

    a = explain(model, x.numpy(), y.numpy())
    rl = quantus.RandomLogit(num_classes=4, seed=42, similarity_func=spearman, **QUIET)
    theirs = np.asarray(rl(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a, explain_func=explain,
                           device="cpu"))
    other = random_other_classes(y.numpy(), 4, 42)
    ours = [A.rank_correlation(u, v) for u, v in zip(a, explain(model, x.numpy(), other))]
    np.testing.assert_allclose(ours, theirs, atol=1e-9)
