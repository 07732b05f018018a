"""reportgen.attribution on tiny models: finite differences, completeness, where CAMs peak, no hooks left."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from reportgen import attribution as A
from reportgen.inspection.hooks import count_hooks, module_signature

from conftest import make_tiny_cnn


def _x(n=3, seed=0, size=32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 3, size, size), generator=g)


def test_gradient_matches_finite_differences():
    m = make_tiny_cnn().double()
    x = _x(2).double()
    g = A.gradient(m, x, [1, 2])
    for b, k, (c, i, j) in [(0, 1, (0, 5, 7)), (1, 2, (2, 20, 11))]:
        e = torch.zeros_like(x[b:b + 1])
        e[0, c, i, j] = 1e-6
        with torch.no_grad():
            fd = (m(x[b:b + 1] + e)[0, k] - m(x[b:b + 1] - e)[0, k]) / 2e-6
        assert abs(float(fd) - float(g[b, c, i, j])) < 1e-6 + 1e-4 * abs(float(fd))
    assert torch.equal(A.saliency(m, x, [1, 2]), g.abs())


def test_batched_equals_one_by_one():
    m = make_tiny_cnn()
    x = _x(3)
    both = A.gradient(m, x, [0, 1, 3])
    for b, k in enumerate([0, 1, 3]):
        assert torch.allclose(both[b], A.gradient(m, x[b:b + 1], k)[0], atol=1e-6)


def test_integrated_gradients_completeness_and_step_raise():
    m = make_tiny_cnn()
    x = _x(3, seed=1)
    res = A.integrated_gradients(m, x, [0, 1, 2], baseline=0.0, steps=2, tol=0.01)
    assert res.converged and (res.gap <= 0.01).all()
    assert res.steps >= 2 and res.tried[0][0] == 2
    if len(res.tried) > 1:  # raised because the coarse rule missed
        assert res.tried[0][1] > 0.01
    s = A.class_scores(m, x, [0, 1, 2]) - A.class_scores(m, torch.zeros_like(x), [0, 1, 2])
    assert np.allclose(res.attributions.flatten(1).sum(1).numpy(), s.numpy(), rtol=0.011, atol=1e-3)


def test_integrated_gradients_refines_only_the_images_that_need_it():
    m = make_tiny_cnn().double()
    x = _x(4, seed=3).double()
    t = [0, 1, 2, 3]
    res = A.integrated_gradients(m, x, t, baseline=0.0, steps=2, tol=0.01, max_steps=256)
    # each image's map is exactly what the fixed rule gives alone at that image's own step count
    for k in range(len(x)):
        alone = A.integrated_gradients(m, x[k:k + 1], t[k], baseline=0.0, steps=int(res.steps_per_image[k]),
                                       tol=1e9, max_steps=int(res.steps_per_image[k]))
        assert torch.allclose(res.attributions[k:k + 1].double(), alone.attributions.double(), atol=1e-6)
    # an image within tolerance stops: it is never recomputed at a higher count
    for k in range(len(x)):
        if res.steps_per_image[k] < res.steps:
            assert res.gap[k] <= 0.01
    assert res.steps == int(res.steps_per_image.max())


class LinearModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Linear(3 * 8 * 8, 2)

    def forward(self, x):
        return self.w(x.flatten(1))


def test_ig_on_linear_model_is_weight_times_input():
    torch.manual_seed(0)
    m = LinearModel()
    x = torch.rand(2, 3, 8, 8)
    r = A.integrated_gradients(m, x, 1, steps=1)
    assert r.steps == 1 and r.converged
    want = (m.w.weight[1].view(3, 8, 8) * x).detach()
    assert torch.allclose(r.attributions, want, atol=1e-5)


class Blob(nn.Module):
    """Channel 0 detects red, channel 1 blue; class k = mean of channel k over the whole map."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 1.0
            self.conv.weight[1, 2] = 1.0
            self.conv.bias.fill_(-0.1)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv(x)).mean((2, 3))


@pytest.mark.parametrize("fn", [A.gradcam, A.gradcam_plus_plus])
def test_cam_peaks_where_the_evidence_is(fn):
    m = Blob()
    x = torch.zeros(1, 3, 16, 16)
    x[:, 0, 2:6, 2:6] = 1.0  # red square top-left
    x[:, 2, 10:14, 10:14] = 1.0  # blue square bottom-right
    for k, (lo, hi) in [(0, (0, 8)), (1, (8, 16))]:
        cam = fn(m, m.relu, x, k)[0]
        inside = cam[lo:hi, lo:hi].sum()
        assert inside > 0.99 * cam.sum() > 0


def test_guided_gradcam_and_no_hooks_left():
    m = make_tiny_cnn()
    before, sig = count_hooks(m), module_signature(m)
    x = _x(2)
    gg = A.guided_gradcam(m, m.features, x, [0, 1])
    assert gg.shape == x.shape
    assert A.gradcam(m, m.features, x, [0, 1], size=(32, 32)).shape == (2, 32, 32)
    A.smoothgrad(m, x, [0, 1], n_samples=3, generator=torch.Generator().manual_seed(0))
    assert count_hooks(m) == before and module_signature(m) == sig
    assert all(p.requires_grad for p in m.parameters())


def test_smoothgrad_is_seeded_and_averages():
    m = make_tiny_cnn()
    x = _x(2)
    a = A.smoothgrad(m, x, 0, n_samples=4, generator=torch.Generator().manual_seed(3))
    b = A.smoothgrad(m, x, 0, n_samples=4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    z = A.smoothgrad(m, x, 0, n_samples=2, noise=0.0)
    assert torch.allclose(z, A.gradient(m, x, 0), atol=1e-6)


def test_last_spatial_block(tiny_model):
    assert A.last_spatial_block(tiny_model, _x(1)) == "features"


def test_similarity_metrics():
    rng = np.random.default_rng(0)
    a = rng.random((16, 16))
    assert A.rank_correlation(a, a) == pytest.approx(1.0)
    assert A.rank_correlation(a, 2 * a + 1) == pytest.approx(1.0)
    assert abs(A.rank_correlation(a, rng.random((16, 16)))) < 0.2
    assert A.ssim(a, a) == pytest.approx(1.0)
    assert A.ssim(a, rng.random((16, 16))) < 0.3
