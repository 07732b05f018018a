"""The attribution formulas themselves, on planted-evidence models whose gradients are known in closed form.

Each test is built so that a plausible wrong formula gives a different answer: the sign of the Grad-CAM weights,
its ReLU, mean gradient vs mean |gradient|, Grad-CAM++'s positive-gradient clipping, the integrated-gradients
path and baseline, SmoothGrad's noise scale and its averaging. References are written here in numpy from the
papers, independently of reportgen.attribution.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from reportgen import attribution as A
from reportgen.attribution.gradients import gradient, integrated_gradients, saliency, smoothgrad, to_map


class Planted(nn.Module):
    """``S_0(x) = sum_cij W_cij a_cij`` with ``a = layer(x) = x`` (``S_1 = -S_0``): the class score's gradient with
    respect to the layer is exactly ``W``, whatever the input, so the Grad-CAM weights are known in advance."""

    def __init__(self, w: np.ndarray):
        super().__init__()
        self.layer = nn.Identity()
        self.register_buffer("w", torch.as_tensor(w, dtype=torch.float32))

    def forward(self, x):
        s = (self.layer(x) * self.w).flatten(1).sum(1)
        return torch.stack([s, -s], 1)


def _cam(fn, acts: np.ndarray, w: np.ndarray) -> np.ndarray:
    m = Planted(w)
    return fn(m, m.layer, torch.as_tensor(acts, dtype=torch.float32)[None], 0)[0].numpy()


def _halves():
    """Channel 0 fires on the left half, channel 1 on the right half of a 4 x 4 layer."""
    acts = np.zeros((2, 4, 4), np.float32)
    acts[0, :, :2] = 1.0
    acts[1, :, 2:] = 1.0
    return acts


# ----- Grad-CAM (Selvaraju et al. 2017) ------------------------------------------------------------------
def test_gradcam_weights_by_the_signed_mean_gradient_then_clips():
    """Channel 0's gradient is +2 on the top rows and -3 on the bottom rows: mean -0.5 (it argues AGAINST the
    class), mean |gradient| 2.5. Channel 1's is +1 everywhere. Grad-CAM = relu(-0.5 A_0 + 1 A_1): the right half
    only. Weighting by mean |gradient| puts the peak on the left; no ReLU leaves -0.5 there; a flipped sign
    lights the left and clears the right."""
    acts = _halves()
    w = np.zeros((2, 4, 4), np.float32)
    w[0, :2], w[0, 2:] = 2.0, -3.0
    w[1] = 1.0
    cam = _cam(A.gradcam, acts, w)
    np.testing.assert_allclose(cam[:, 2:], 1.0, atol=1e-6)
    np.testing.assert_array_equal(cam[:, :2], 0.0)  # exactly zero: clipped, not just small


def test_gradcam_equals_the_paper_formula_on_mixed_activations():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(3, 5, 6)).astype(np.float32)  # negative activations too: the ReLU matters
    w = rng.normal(size=(3, 5, 6)).astype(np.float32)
    want = np.maximum((w.mean((1, 2))[:, None, None] * acts).sum(0), 0.0)
    got = _cam(A.gradcam, acts, w)
    assert (want == 0).any() and (want > 0).any()
    np.testing.assert_allclose(got, want, atol=1e-5)


# ----- Grad-CAM++ (Chattopadhay et al. 2018) -------------------------------------------------------------
def _gradcampp_reference(acts: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The paper's closed form for exp(S): alpha = g^2 / (2 g^2 + sum_ab A_ab g^3) (0 where the denominator is 0),
    w_c = sum_ij alpha_cij relu(g_cij), map = relu(sum_c w_c A_c)."""
    a64, g64 = acts.astype(np.float64), g.astype(np.float64)
    denom = 2 * g64 ** 2 + a64.sum((1, 2), keepdims=True) * g64 ** 3
    alpha = np.divide(g64 ** 2, denom, out=np.zeros_like(g64), where=denom != 0)
    wc = (alpha * np.maximum(g64, 0)).sum((1, 2))
    return np.maximum((wc[:, None, None] * a64).sum(0), 0.0)


def test_gradcam_plus_plus_counts_only_positive_gradients():
    """Channel 0 (left half, 8 active units) has gradient +1 at two places and -0.2 at the other fourteen;
    channel 1 (right half) a faint +0.01 everywhere. With relu(gradient) channel 0 gets weight 2/10 = 0.2 and
    channel 1 about 0.077: the peak is on the left. Without the clipping the fourteen negative entries (alpha
    2.5 each) give channel 0 a weight of -6.8 and the left half goes dark."""
    acts = _halves()
    w = np.full((2, 4, 4), -0.2, np.float32)
    w[0, 0, 0] = w[0, 3, 3] = 1.0
    w[1] = 0.01
    cam = _cam(A.gradcam_plus_plus, acts, w)
    np.testing.assert_allclose(cam, _gradcampp_reference(acts, w), rtol=1e-4, atol=1e-7)
    assert cam[:, :2].min() > 2 * cam[:, 2:].max() > 0


def test_gradcam_plus_plus_equals_the_paper_formula():
    rng = np.random.default_rng(1)
    acts = rng.normal(size=(3, 5, 5)).astype(np.float32)
    w = rng.normal(size=(3, 5, 5)).astype(np.float32)
    w[0, 0, :] = 0.0  # zero gradients: the 0/0 guard
    want = _gradcampp_reference(acts, w)
    assert (want == 0).any() and (want > 0).any()
    np.testing.assert_allclose(_cam(A.gradcam_plus_plus, acts, w), want, rtol=1e-4, atol=1e-6)


def test_cam_size_upsamples_the_same_map():
    acts, w = _halves(), np.ones((2, 4, 4), np.float32)
    m = Planted(w)
    x = torch.as_tensor(acts)[None]
    small = A.gradcam(m, m.layer, x, 0)
    big = A.gradcam(m, m.layer, x, 0, size=(8, 8))
    assert big.shape == (1, 8, 8)
    torch.testing.assert_close(big, A.upsample(small, (8, 8)))


# ----- gradients, saliency (Simonyan et al. 2014) --------------------------------------------------------
class Quadratic(nn.Module):
    """``S_0(x) = sum w x^2`` (``S_1 = sum x``): gradient ``2 w x``, integrated gradients ``w (x^2 - x'^2)``."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.register_buffer("w", w)

    def forward(self, x):
        return torch.stack([(self.w * x * x).flatten(1).sum(1), x.flatten(1).sum(1)], 1)


def _wx(seed=0, shape=(2, 3, 4, 4)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape[1:], generator=g), torch.rand(shape, generator=g)


def test_gradient_and_saliency_signs():
    w, x = _wx()
    m = Quadratic(w)
    g = gradient(m, x, 0)
    torch.testing.assert_close(g, 2 * w * x)
    assert (g < 0).any()  # the plain gradient keeps its sign
    torch.testing.assert_close(saliency(m, x, 0), (2 * w * x).abs())
    torch.testing.assert_close(gradient(m, x, [1, 0]), torch.stack([torch.ones_like(x[0]), 2 * w * x[1]]))


def test_to_map_reduces_over_the_colour_channels_only():
    a = torch.randn((2, 3, 4, 5), generator=torch.Generator().manual_seed(7))
    n = a.numpy()
    for how, want in (("absmax", np.abs(n).max(1)), ("abssum", np.abs(n).sum(1)), ("sum", n.sum(1))):
        got = to_map(a, how)
        assert got.shape == (2, 4, 5), how
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="unknown reduction 'max'"):
        to_map(a, "max")


# ----- integrated gradients (Sundararajan et al. 2017) ---------------------------------------------------
@pytest.mark.parametrize("baseline", [0.0, 0.5])
def test_integrated_gradients_follow_the_straight_path_from_the_baseline(baseline):
    """IG of ``sum w x^2`` from ``x'`` is ``w (x^2 - x'^2)`` exactly (the integrand is linear in alpha, so the
    quadrature is exact at any node count); a path from 0 instead of ``x'``, or a missing ``(x - x')`` factor,
    gives another answer (at baseline 0.5 the two differ by ``w x'^2``)."""
    w, x = _wx(1)
    r = integrated_gradients(Quadratic(w), x, 0, baseline=baseline, steps=2, tol=1e-6)
    torch.testing.assert_close(r.attributions, w * (x * x - baseline ** 2), atol=1e-5, rtol=1e-4)
    want_delta = (w * (x * x - baseline ** 2)).flatten(1).sum(1).numpy()
    np.testing.assert_allclose(r.delta, want_delta, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r.total, want_delta, rtol=1e-4, atol=1e-5)
    assert r.converged and r.steps == 2 and (r.gap <= 1e-4).all()


def test_integrated_gradients_raise_the_steps_only_for_images_that_need_them():
    """A steep sigmoid makes the integrand far from polynomial; the completeness gap shrinks as nodes double,
    and an easy image (a linear score, exact at any node count) keeps its first result."""

    class Mixed(nn.Module):
        def forward(self, x):
            s = torch.sigmoid(40 * (x.flatten(1).mean(1) - 0.5)) * 10
            lin = x.flatten(1).sum(1)
            return torch.stack([s, lin], 1)

    g = torch.Generator().manual_seed(3)
    x = torch.rand((2, 1, 4, 4), generator=g) * 0.2 + 0.6
    r = integrated_gradients(Mixed(), x, [0, 1], steps=2, tol=0.01, max_steps=64)
    assert r.converged and r.steps > 2
    assert r.steps_per_image[1] == 2 and r.steps_per_image[0] == r.steps
    assert [s for s, _ in r.tried] == [2 * 2 ** k for k in range(len(r.tried))]
    np.testing.assert_allclose(r.total, r.delta, rtol=0.01)
    coarse = integrated_gradients(Mixed(), x, [0, 1], steps=2, tol=10.0)
    assert coarse.steps == 2 and coarse.gap[0] > 0.01 and coarse.converged  # tol decides, not the step count


# ----- SmoothGrad (Smilkov et al. 2017) ------------------------------------------------------------------
class Cubic(nn.Module):
    """``S_0 = sum x^3 / 3``: gradient ``x^2``, so E[gradient at x + eps] = x^2 + sigma^2."""

    def forward(self, x):
        s = (x ** 3).flatten(1).sum(1) / 3
        return torch.stack([s, -s], 1)


def test_smoothgrad_is_the_mean_over_noise_with_sigma_from_the_input_range():
    """sigma = noise * (max x - min x) per image: the two images span [0, 1] and [0, 2], so sigma is 0.2 and
    0.4 and the average gradient exceeds x^2 by 0.04 and 0.16 (a sum instead of a mean, a sigma from another
    image's range or from the raw ``noise`` all miss these)."""
    x = torch.stack([torch.linspace(0, 1, 48).reshape(3, 4, 4), torch.linspace(0, 2, 48).reshape(3, 4, 4)])
    sg = smoothgrad(Cubic(), x, 0, n_samples=400, noise=0.2, generator=torch.Generator().manual_seed(0), chunk=7)
    excess = (sg - x ** 2).flatten(1).mean(1).numpy()
    np.testing.assert_allclose(excess, [0.04, 0.16], rtol=0.08)
    sq = smoothgrad(Cubic(), x, 0, n_samples=400, noise=0.2, generator=torch.Generator().manual_seed(0),
                    squared=True, chunk=400)
    assert (sq >= 0).all() and float((sq - sg ** 2).mean()) > 0  # E[g^2] >= E[g]^2, strictly with noise


def test_smoothgrad_of_a_linear_score_is_its_gradient_for_any_sample_count():
    w, x = _wx(2)

    class Linear(nn.Module):
        def forward(self, x):
            s = (w * x).flatten(1).sum(1)
            return torch.stack([s, -s], 1)

    for n, chunk in ((1, 8), (5, 2), (9, 4)):
        sg = smoothgrad(Linear(), x, 0, n_samples=n, noise=0.3, generator=torch.Generator().manual_seed(n),
                        chunk=chunk)
        torch.testing.assert_close(sg, w.expand_as(x), atol=1e-5, rtol=1e-5)
    sq = smoothgrad(Linear(), x, 1, n_samples=3, noise=0.3, generator=torch.Generator().manual_seed(0), squared=True)
    torch.testing.assert_close(sq, (w * w).expand_as(x), atol=1e-5, rtol=1e-5)
