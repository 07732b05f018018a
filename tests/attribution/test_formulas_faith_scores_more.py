"""reportgen.techniques._faith_scores.run_stream on its own: every part's copies, asked for in order and in full
batches that cross the parts' edges, scored as the softmax probability of their class written out in NumPy; with no
progress callback; for a model without parameters; float32 whatever torch's default dtype (kills the mutants the
mutation run left, docs/mutation.md)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from conftest import make_tiny_cnn
from reportgen import sampling
from reportgen.attribution import faithfulness as FM
from reportgen.techniques import _faith_scores as S

torch.set_num_threads(1)


class _Pick(nn.Module):
    """No parameters: the logits are the first three pixel values times 4."""

    def forward(self, x):
        return x.flatten(1)[:, :3] * 4


def _want(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    z = x.reshape(len(x), -1)[:, :3].astype(np.float64) * 4
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return p[np.arange(len(x)), t]


def _parts(calls):
    g = torch.Generator().manual_seed(0)
    xs = [torch.rand(n, 1, 2, 2, generator=g) for n in (5, 3, 4)]
    ts = [torch.tensor([0, 2, 1, 1, 0]), torch.tensor([2, 2, 0]), torch.tensor([1, 0, 2, 1])]

    def make(j):
        def f(p):
            calls.append((j, p.tolist()))
            return xs[j][p], ts[j][p]
        return f

    return xs, ts, [S.Part(len(x), make(j)) for j, x in enumerate(xs)]


def test_run_stream_scores_every_copy_of_every_part_in_order():
    calls = []
    xs, ts, parts = _parts(calls)
    got = S.run_stream(_Pick(), parts, 5)  # 12 copies: 3 batches of 4, across the parts' edges; no progress
    assert [len(g) for g in got] == [5, 3, 4]
    for g, x, t in zip(got, xs, ts):
        assert g.dtype == torch.float32
        np.testing.assert_allclose(g.numpy(), _want(x.numpy(), t.numpy()), rtol=1e-5)
    assert calls == [(0, [0, 1, 2, 3]), (0, [4]), (1, [0, 1, 2]), (2, [0, 1, 2, 3])]


def test_run_stream_is_float32_under_a_float64_default_dtype():
    """The scores are float32 (the section's MuFidelity drops are float32 differences, as the metric's), even
    where the caller made float64 torch's default."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        _, _, parts = _parts([])
        got = S.run_stream(_Pick(), parts, 64, lambda it, k: it)
    finally:
        torch.set_default_dtype(old)
    assert all(g.dtype == torch.float32 for g in got)


class _Ctx:
    seed = 5

    def generator(self, name):
        return sampling.torch_generator(self.seed, name)

    def rng(self, name):
        return sampling.numpy_rng(self.seed, name)

    def progress(self, it, desc, total=None):
        return it


def test_two_steps_one_inner_copy_per_image_keeps_each_images_class():
    """``steps=2``: one inner deletion / insertion copy per image and method, scored for that image's own class:
    the AUCs equal deletion_curve / insertion_curve's method by method."""
    torch.manual_seed(0)
    model = make_tiny_cnn().eval()
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    t = np.array([3, 0, 1])
    g = torch.Generator().manual_seed(2)
    maps = {"a": torch.rand(3, 16, 16, generator=g).numpy(), "b": torch.rand(3, 16, 16, generator=g).numpy()}
    s = S.Setup(patch=4, sigma=1.5, fill=FM.fill_image(x, "mean"), start=FM.blur(x, 1.5), subset=3, runs=4, steps=2,
                road_n=0, road_fractions=[0.5], road_noise=0.05, batch=7, model=model)
    out = S.score_maps(_Ctx(), x, t, maps, s)
    ref = _Ctx()
    for m, v in maps.items():
        mt = torch.from_numpy(v)
        d = FM.deletion_curve(model, x, t, mt, 2, s.fill, 4, 7, generator=ref.generator(f"faithfulness/ties/{m}"))
        i = FM.insertion_curve(model, x, t, mt, 2, s.start, 4, 7, generator=ref.generator(f"faithfulness/ties/{m}"))
        assert d.scores.shape == (3, 3)
        np.testing.assert_allclose(out.deletion[m], d.auc, atol=1e-6)
        np.testing.assert_allclose(out.insertion[m], i.auc, atol=1e-6)


def test_uint8_and_int32_targets_score_like_int64_ones():
    """The classes may come as any integer array (a dataset's uint8 or int32 labels): they are cast to int64 indices."""
    torch.manual_seed(0)
    model = make_tiny_cnn().eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    maps = {"a": torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(4)).numpy()}
    s = S.Setup(patch=4, sigma=1.5, fill=FM.fill_image(x, "mean"), start=FM.blur(x, 1.5), subset=3, runs=4, steps=3,
                road_n=1, road_fractions=[0.5], road_noise=0.05, batch=16, model=model)
    b = S.score_maps(_Ctx(), x, np.array([2, 1], dtype=np.int64), maps, s)
    for dt in (np.uint8, np.int32):
        a = S.score_maps(_Ctx(), x, np.array([2, 1], dtype=dt), maps, s)
        for k in ("deletion", "insertion", "mufidelity", "road_morf", "road_lerf"):
            np.testing.assert_array_equal(getattr(a, k)["a"], getattr(b, k)["a"])
        assert a.curves == b.curves
