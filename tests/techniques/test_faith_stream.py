"""The faithfulness section's perturbation passes (issue 28.4): every method's deletion, insertion, MuFidelity and
ROAD copies run as one stream of full batches, the copies all methods share (the image, the fill, the blurred start)
once per image, and the scores equal the metric functions called method by method."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reportgen.attribution import faithfulness as FM
from reportgen.techniques._faith_scores import Setup, score_maps

STEPS, RUNS, ROAD_N, FRACTIONS, PATCH, SIGMA, SUBSET, BATCH = 6, 10, 2, [0.3, 0.7], 2, 2.0, 12, 16


class Counting(torch.nn.Module):
    """The model, with the batch size of every forward pass it ran."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.sizes = model, []

    def forward(self, x):
        self.sizes.append(len(x))
        return self.model(x)


@pytest.fixture()
def scored(ctx, tiny_model):
    x = ctx.images.batch([0, 4, 8]).float()
    with torch.no_grad():
        t = tiny_model(x).argmax(1).numpy()
    g = torch.Generator().manual_seed(1)
    maps = {"a": torch.rand(3, 32, 32, generator=g).numpy(), "b": torch.rand(3, 32, 32, generator=g).numpy(),
            "flat": np.zeros((3, 32, 32), np.float32)}  # all ties: the seeded tie order alone ranks it
    model = Counting(tiny_model)
    s = Setup(patch=PATCH, sigma=SIGMA, fill=FM.fill_image(x, "mean"), start=FM.blur(x, SIGMA), subset=SUBSET,
              runs=RUNS, steps=STEPS, road_n=ROAD_N, road_fractions=FRACTIONS, road_noise=0.01, batch=BATCH,
              model=model)
    return ctx, x, t, maps, s, score_maps(ctx, x, t, maps, s), model


def test_one_stream_of_full_batches_with_the_shared_copies_once(scored):
    _, x, _, maps, _, _, model = scored
    n, k = len(x), len(maps)
    # per image: image + fill + start once; per method the inner steps of both curves; the subsets once; ROAD
    total = 3 * n + 2 * k * n * (STEPS - 1) + n * RUNS + 2 * k * ROAD_N * len(FRACTIONS)
    assert sum(model.sizes) == total
    assert len(model.sizes) == math.ceil(total / BATCH)  # the fewest passes: no partial batch per method or metric
    assert max(model.sizes) <= BATCH and max(model.sizes) - min(model.sizes) <= 1


def test_scores_equal_the_metric_functions_method_by_method(scored):
    ctx, x, t, maps, s, sc, _ = scored
    model = s.model.model
    for m, mp in maps.items():
        mt = torch.from_numpy(mp)
        d = FM.deletion_curve(model, x, t, mt, STEPS, s.fill, PATCH, 5,
                              generator=ctx.generator(f"faithfulness/ties/{m}"))
        i = FM.insertion_curve(model, x, t, mt, STEPS, s.start, PATCH, 7,
                               generator=ctx.generator(f"faithfulness/ties/{m}"))
        fc = FM.faithfulness_correlation(model, x, t, mt, SUBSET, RUNS, s.fill, PATCH, batch=9,
                                         generator=ctx.generator("faithfulness/subsets"))
        rng = ctx.rng(f"faithfulness/road/{m}")
        morf = FM.road_curve(model, x[:ROAD_N], t[:ROAD_N], mt[:ROAD_N], FRACTIONS, "morf", 0.01, rng, 3,
                             ctx.generator(f"faithfulness/ties/{m}"))
        lerf = FM.road_curve(model, x[:ROAD_N], t[:ROAD_N], mt[:ROAD_N], FRACTIONS, "lerf", 0.01, rng, 3,
                             ctx.generator(f"faithfulness/ties/{m}"))
        np.testing.assert_allclose(sc.deletion[m], d.auc, atol=1e-6)
        np.testing.assert_allclose(sc.insertion[m], i.auc, atol=1e-6)
        np.testing.assert_allclose(sc.curves[m]["deletion"], np.round(d.scores.mean(0), 4), atol=1e-4)
        np.testing.assert_allclose(sc.mufidelity[m], fc.corr, atol=1e-5)
        np.testing.assert_allclose(sc.road_morf[m], morf.area, atol=1e-6)
        np.testing.assert_allclose(sc.road_lerf[m], lerf.area, atol=1e-6)
    np.testing.assert_allclose(sc.fractions, d.fractions)
