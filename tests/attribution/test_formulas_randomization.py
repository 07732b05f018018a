"""Model-parameter randomisation (Adebayo et al. 2018) and contrastive targets, checked against what their docstrings
promise in closed form: the U(-1/sqrt(fan_in), 1/sqrt(fan_in)) scale, the per-layer seed, the norm reset, the cascade
stages, the random-logit draw (Sixt et al. 2020, Quantus's RandomLogit), and S_P - S_T on a linear model."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch
from torch import nn

from conftest import make_tiny_cnn
from reportgen.attribution import contrast as C
from reportgen.attribution import randomization as R


def test_reinit_draws_uniform_in_the_fan_in_bound_for_weight_and_bias():
    conv = nn.Conv2d(6, 64, 3)  # fan-in 6 * 3 * 3 = 54
    R.reinit_(conv, 7)
    bound = 1.0 / math.sqrt(54)
    w, b = conv.weight.detach(), conv.bias.detach()
    assert w.abs().max() <= bound and w.abs().max() > 0.97 * bound  # fills the whole range, not a part of it
    assert w.min() < -0.9 * bound and w.max() > 0.9 * bound  # both signs: (rand * 2 - 1), not rand
    assert abs(float(w.mean())) < 0.05 * bound
    assert b.abs().max() <= bound and b.abs().max() > 0.5 * bound
    gen = torch.Generator().manual_seed(7)  # the draw order: weight first, then bias, from the one seeded stream
    want_w = (torch.rand(w.shape, generator=gen) * 2 - 1) * bound
    want_b = (torch.rand(b.shape, generator=gen) * 2 - 1) * bound
    torch.testing.assert_close(w, want_w)
    torch.testing.assert_close(b, want_b)


def test_reinit_of_a_linear_layer_and_of_a_bias_only_module():
    lin = nn.Linear(100, 30)
    R.reinit_(lin, 1)
    assert 0.9 / 10 < lin.weight.abs().max() <= 1 / 10
    vec = nn.Module()
    vec.weight = nn.Parameter(torch.zeros(400))  # 1-d weight: its fan-in is its size
    R.reinit_(vec, 2)
    assert 0.9 / 20 < vec.weight.abs().max() <= 1 / 20


def test_norm_layers_get_unit_gamma_zero_beta_and_fresh_statistics():
    for norm in (nn.BatchNorm2d(4), nn.LayerNorm(4), nn.GroupNorm(2, 4)):
        with torch.no_grad():
            for p in norm.parameters():
                p.fill_(3.0)
            if getattr(norm, "running_mean", None) is not None:
                norm.running_mean.fill_(5.0)
                norm.running_var.fill_(9.0)
        R.reinit_(norm, 0)
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0), type(norm)
        if getattr(norm, "running_mean", None) is not None:
            assert torch.all(norm.running_mean == 0) and torch.all(norm.running_var == 1)


def test_layer_seed_is_the_documented_hash():
    assert R.layer_seed(3, "features.6") == (3 * 1_000_003 + zlib.crc32(b"features.6")) % 2 ** 31
    assert R.layer_seed(3, "a") != R.layer_seed(4, "a") and R.layer_seed(3, "a") != R.layer_seed(3, "b")
    assert 0 <= R.layer_seed(10 ** 9, "x" * 50) < 2 ** 31
    raw = 1 * 1_000_003 + zlib.crc32(b"features.0")
    assert raw % 2 ** 32 >= 2 ** 31  # a case where the modulus matters
    assert R.layer_seed(1, "features.0") == raw % 2 ** 31


def test_randomized_copy_uses_each_layers_own_seed_under_a_root():
    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = make_tiny_cnn()

        def forward(self, x):
            return self.model(x)

    w = Wrap().train()
    twin = R.randomized_copy(w, ["classifier"], seed=5, root="model")
    ref = nn.Linear(w.model.classifier.in_features, w.model.classifier.out_features)
    R.reinit_(ref, R.layer_seed(5, "classifier"))
    torch.testing.assert_close(twin.model.classifier.weight, ref.weight)
    assert not twin.training and w.training  # the copy is in eval mode; the original keeps its flag
    assert torch.equal(twin.model.features[0].weight, w.model.features[0].weight)


def test_randomized_copy_of_a_plain_model_leaves_the_original_untouched():
    m = make_tiny_cnn()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    twin = R.randomized_copy(m, ["classifier", "features.3"], seed=2)  # no root: the names are the model's own
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k  # a deep copy: the user's layers are not re-initialised
    assert twin is not m and twin.classifier is not m.classifier
    assert not torch.equal(twin.classifier.weight, m.classifier.weight)
    assert not torch.equal(twin.features[3].weight, m.features[3].weight)
    assert torch.equal(twin.features[0].weight, m.features[0].weight)


def test_param_layers_lists_uncalled_owners_last():
    class Side(nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = nn.Linear(2, 2)
            self.b = nn.Conv2d(3, 2, 1)
            self.a = nn.Linear(2, 3)

        def forward(self, x):
            return self.a(self.b(x).mean((2, 3)))

    assert R.param_layers(Side(), torch.rand(2, 3, 4, 4)) == ["b", "a", "unused"]


def test_param_layers_lists_only_modules_with_their_own_parameters():
    """Containers (their parameters belong to children) and parameter-free modules (ReLU, pooling) are no layer."""
    m = nn.Sequential(nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU()), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    assert R.param_layers(m, torch.rand(1, 3, 4, 4)) == ["0.0", "2"]


@pytest.mark.parametrize("n,stages,want", [(10, 3, [3, 7, 10]), (7, 3, [2, 5, 7]), (4, 4, [1, 2, 3, 4]),
                                           (5, 1, [5]), (3, 9, [1, 2, 3]), (1, 3, [1]), (0, 3, []), (6, 0, [6])])
def test_cascade_stages(n, stages, want):
    assert R.cascade_stages(n, stages) == want


def test_random_other_classes_is_quantus_draw_and_never_the_target():
    t = np.array([0, 3, 9, 5, 5, 1, 9, 0] * 20)
    got = R.random_other_classes(t, 10, seed=42)
    r = np.random.RandomState(42).randint(0, 9, len(t))
    others = [[k for k in range(10) if k != ti] for ti in t]
    assert got.tolist() == [o[i] for o, i in zip(others, r)]
    assert (got != t).all() and got.min() >= 0 and got.max() <= 9
    assert set(got.tolist()) == set(range(10))  # every other class can be drawn, the last one included
    assert R.random_other_classes([1, 0], 2, seed=0).tolist() == [0, 1]
    with pytest.raises(ValueError, match="^the random-logit test needs at least two classes$"):
        R.random_other_classes([0], 1, seed=0)


def test_random_other_classes_seed_wraps_at_two_to_the_32_and_targets_may_be_a_column():
    t = np.array([[2], [0], [4], [1], [3]] * 8)  # a column of targets: one class per image all the same
    for seed, used in [(1000, 1000), (2 ** 32 + 5, 5)]:
        got = R.random_other_classes(t, 6, seed=seed)
        r = np.random.RandomState(used).randint(0, 5, len(t))
        assert got.shape == (len(t),) and got.dtype == np.int64
        assert got.tolist() == [ri + (ri >= ti) for ri, ti in zip(r, t[:, 0])]


class _Linear(nn.Module):
    """Logits ``z_k = sum_chw W_k x``: every gradient is a row of W."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(3, 2, 4, 4, generator=g))
        self.layer = nn.Identity()

    def forward(self, x):
        return (self.layer(x)[:, None] * self.w[None]).flatten(2).sum(2)


def test_logit_difference_and_contrastive_gradient_x_input_in_closed_form():
    m = _Linear()
    x = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    pos, neg = torch.tensor([2, 0]), torch.tensor([1, 2])
    z = m(x)
    diff = C.logit_difference(m, pos, neg)(x)
    torch.testing.assert_close(diff[:, 0], z[[0, 1], pos] - z[[0, 1], neg])
    got = C.contrastive_gradient_x_input(m, x, pos, neg)
    want = torch.stack([((m.w[p] - m.w[n]) * xi).sum(0) for xi, p, n in zip(x, pos, neg)]).detach()
    torch.testing.assert_close(got, want)
    gxi = C.gradient_x_input(m, x, 1)
    torch.testing.assert_close(gxi, (m.w[1][None] * x).sum(1).detach())


def test_contrastive_and_class_gradcam_in_closed_form():
    m = _Linear()
    x = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    wc = (m.w[0] - m.w[2]).mean((1, 2)).detach()  # Grad-CAM weights of S_0 - S_2 at the identity layer
    want = torch.relu((wc[:, None, None] * x[0]).sum(0))
    got = C.contrastive_gradcam(m, m.layer, x, 0, 2)
    torch.testing.assert_close(got[0], want)
    assert (want == 0).any() and (want > 0).any()
    up = C.contrastive_gradcam(m, m.layer, x, 0, 2, size=(8, 8))
    assert up.shape == (1, 8, 8)
    cls = C.class_gradcam(m, m.layer, x, 1, (8, 8))
    w1 = m.w[1].mean((1, 2)).detach()
    assert cls.shape == (1, 8, 8)
    base = torch.relu((w1[:, None, None] * x[0]).sum(0))
    torch.testing.assert_close(torch.nn.functional.interpolate(base[None, None], (8, 8), mode="bilinear",
                                                               align_corners=False)[0, 0], cls[0])
