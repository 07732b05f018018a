"""reportgen.techniques._faith_scores (the faithfulness section's scores, all methods' perturbed copies run together)
equals the metric functions of reportgen.attribution.faithfulness called method by method with the same random
streams: deletion / insertion AUC and mean curves, MuFidelity, ROAD MoRF and LeRF. Fast (a tiny CNN on 16-px images
and a stand-in context) so the mutation run can use it (docs/mutation.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_tiny_cnn
from reportgen import sampling
from reportgen.attribution import faithfulness as FM
from reportgen.techniques import _faith_scores as S


class _Ctx:
    seed = 11

    def __init__(self):
        self.progress_calls = []

    def generator(self, name):
        return sampling.torch_generator(self.seed, name)

    def rng(self, name):
        return sampling.numpy_rng(self.seed, name)

    def progress(self, it, desc, total=None):
        self.progress_calls.append((desc, total))
        return it


def _setup(road_n=2):
    torch.manual_seed(0)
    model = make_tiny_cnn().eval()
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    t = np.array([1, 3, 0])
    g = torch.Generator().manual_seed(2)
    ramp = torch.linspace(0, 1, 16)[None, :, None].expand(3, 16, 16)
    maps = {"ramp": ramp.numpy().copy(),
            "noise": torch.rand(3, 16, 16, generator=g).numpy(),
            "ties": (torch.rand(3, 16, 16, generator=g) > 0.7).float().numpy()}  # mostly ties: the seeded order
    s = S.Setup(patch=2, sigma=1.5, fill=FM.fill_image(x, "mean"), start=FM.blur(x, 1.5), subset=9, runs=7, steps=5,
                road_n=road_n, road_fractions=[0.2, 0.5, 0.8], road_noise=0.05, batch=10, model=model)
    return model, x, t, maps, s


def test_scores_equal_the_metric_functions_method_by_method():
    model, x, t, maps, s = _setup()
    ctx = _Ctx()
    out = S.score_maps(ctx, x, t, maps, s)
    assert ctx.progress_calls == [("Faithfulness: perturbed copies", 14)]  # the one stream's batches
    ref = _Ctx()
    for m, v in maps.items():
        mt = torch.from_numpy(v)
        d = FM.deletion_curve(model, x, t, mt, s.steps, s.fill, s.patch, s.batch,
                              generator=ref.generator(f"faithfulness/ties/{m}"))
        i = FM.insertion_curve(model, x, t, mt, s.steps, s.start, s.patch, s.batch,
                               generator=ref.generator(f"faithfulness/ties/{m}"))
        np.testing.assert_allclose(out.fractions, d.fractions)
        np.testing.assert_allclose(out.deletion[m], d.auc, atol=1e-6)
        np.testing.assert_allclose(out.insertion[m], i.auc, atol=1e-6)
        np.testing.assert_allclose(out.per_image(m), i.auc - d.auc, atol=1e-6)
        assert out.curves[m]["deletion"] == [round(float(v), 4) for v in d.scores.mean(0)]
        assert out.curves[m]["insertion"] == [round(float(v), 4) for v in i.scores.mean(0)]
        fc = FM.faithfulness_correlation(model, x, t, mt, s.subset, s.runs, s.fill, s.patch, batch=s.batch,
                                         generator=ref.generator("faithfulness/subsets"))
        np.testing.assert_allclose(out.mufidelity[m], fc.corr, atol=1e-6)
        rng = ref.rng(f"faithfulness/road/{m}")  # MoRF then LeRF draw from the one stream
        morf = FM.road_curve(model, x[:2], t[:2], mt[:2], s.road_fractions, "morf", s.road_noise, rng, s.batch,
                             ref.generator(f"faithfulness/ties/{m}"))
        lerf = FM.road_curve(model, x[:2], t[:2], mt[:2], s.road_fractions, "lerf", s.road_noise, rng, s.batch,
                             ref.generator(f"faithfulness/ties/{m}"))
        np.testing.assert_allclose(out.road_morf[m], morf.area, atol=1e-6)
        np.testing.assert_allclose(out.road_lerf[m], lerf.area, atol=1e-6)
        assert out.road_morf[m].shape == (2,)
    # the methods are told apart: the ramp and the noise map score differently
    assert not np.allclose(out.deletion["ramp"], out.deletion["noise"])
    assert not np.allclose(out.mufidelity["ramp"], out.mufidelity["noise"])
    assert not np.allclose(out.road_morf["ramp"], out.road_lerf["ramp"])
    np.testing.assert_allclose(out.fractions, np.round(np.linspace(0, 64, 6)) / 64)


def test_a_single_image_is_scored_like_the_first_of_a_batch():
    _, x, t, maps, s = _setup(road_n=0)
    one = {m: v[:1] for m, v in maps.items()}
    s1 = S.Setup(**{**s.__dict__, "fill": s.fill[:1], "start": s.start[:1]})
    out = S.score_maps(_Ctx(), x[:1], t[:1], one, s1)
    full = S.score_maps(_Ctx(), x, t, maps, s)
    for m in maps:
        np.testing.assert_allclose(out.deletion[m], full.deletion[m][:1], atol=1e-6)
        np.testing.assert_allclose(out.insertion[m], full.insertion[m][:1], atol=1e-6)


def test_without_road_images_road_is_skipped():
    _, x, t, maps, s = _setup(road_n=0)
    ctx = _Ctx()
    out = S.score_maps(ctx, x, t, {"ramp": maps["ramp"]}, s)
    assert ctx.progress_calls == [("Faithfulness: perturbed copies", 6)]
    assert out.road_morf == {} and out.road_lerf == {} and set(out.deletion) == {"ramp"}


def test_tensor_helper_keeps_values_and_device():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)[:, ::2]  # not contiguous, float64
    t = S._tensor(a, torch.device("cpu"))
    assert t.dtype == torch.float32 and t.is_contiguous()
    torch.testing.assert_close(t, torch.tensor([[0.0, 2.0], [3.0, 5.0]]))


@pytest.mark.parametrize("m", ["ramp"])
def test_per_image_score_is_insertion_minus_deletion(m):
    sc = S.Scores(np.zeros(1), deletion={m: np.array([0.2, 0.5])}, insertion={m: np.array([0.7, 0.1])})
    np.testing.assert_allclose(sc.per_image(m), [0.5, -0.4])
