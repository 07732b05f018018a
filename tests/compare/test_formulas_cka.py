"""reportgen.compare.cka around the HSIC formulas (test_cka_formula.py, test_compare_cka.py pin those): the pooling of
feature maps to at most 8 x 8 positions, the Gram matrices of hooked layers against activations taken by hand, the
evenly spread layer pick, the zero-variance and small-sample cases and the error texts (kills the mutants the
mutation run left, docs/mutation.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reportgen.compare import cka as K


def test_pooled_averages_maps_above_eight_by_eight_and_keeps_smaller_ones():
    t = torch.arange(2 * 3 * 16 * 12, dtype=torch.float64).view(2, 3, 16, 12)
    got = K.pooled(t)
    want = F.adaptive_avg_pool2d(t, (8, 8)).flatten(1).float()
    assert got.shape == (2, 3 * 64) and got.dtype == torch.float32
    torch.testing.assert_close(got, want)
    tall = torch.rand(2, 3, 20, 3)  # 60 positions: not pooled (<= 64)
    torch.testing.assert_close(K.pooled(tall), tall.flatten(1))
    wide = torch.rand(2, 3, 5, 13)  # 65 positions: pooled, the short side kept
    torch.testing.assert_close(K.pooled(wide), F.adaptive_avg_pool2d(wide, (5, 8)).flatten(1))
    exact = torch.rand(2, 3, 4, 16)  # exactly 64 positions: kept as is (not pooled to 4 x 8)
    torch.testing.assert_close(K.pooled(exact), exact.flatten(1))
    narrow = torch.rand(2, 3, 30, 3)  # 90 positions, though the width alone is small: pooled to 8 x 3
    torch.testing.assert_close(K.pooled(narrow), F.adaptive_avg_pool2d(narrow, (8, 3)).flatten(1))
    tokens = torch.rand(2, 50, 7)  # not a 4-d map: flattened
    torch.testing.assert_close(K.pooled(tokens), tokens.flatten(1))


class _Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 10 * 10, 4)
        self.unused = nn.Linear(1, 1)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_layer_grams_equal_the_gram_matrices_of_the_activations_taken_by_hand():
    torch.manual_seed(0)
    m = _Two().train()
    xs = [torch.rand(3, 3, 10, 10), torch.rand(2, 3, 10, 10)]
    grams = K.layer_grams(m, {"conv": m.conv, "logits": m}, iter(xs), "cpu")
    assert m.training  # restored
    x = torch.cat(xs)
    with torch.no_grad():
        m.eval()
        conv = F.adaptive_avg_pool2d(m.conv(x), (8, 8)).flatten(1).double()
        logits = m(x).double()
    np.testing.assert_allclose(grams["conv"], (conv @ conv.T).numpy(), rtol=1e-5)
    np.testing.assert_allclose(grams["logits"], (logits @ logits.T).numpy(), rtol=1e-5)
    assert grams["conv"].shape == (5, 5)
    with pytest.raises(RuntimeError, match="^layer 'unused' was not called in the forward pass$"):
        K.layer_grams(m, {"unused": m.unused}, iter(xs), "cpu")


def test_layer_grams_logits_key_without_a_module_uses_the_logits():
    m = _Two().eval()
    x = torch.rand(4, 3, 10, 10)
    grams = K.layer_grams(m, {"logits": nn.Identity()}, [x], "cpu")  # the Identity is never called
    with torch.no_grad():
        z = m(x).double()
    np.testing.assert_allclose(grams["logits"], (z @ z.T).numpy(), rtol=1e-5)


@pytest.mark.parametrize("n,k,want", [(10, 4, [0, 3, 6, 9]), (5, 5, [0, 1, 2, 3, 4]), (3, 8, [0, 1, 2]),
                                      (9, 2, [0, 8]), (7, 3, [0, 3, 6])])
def test_pick_layers_spreads_evenly_and_keeps_first_and_last(n, k, want):
    names = [f"l{i}" for i in range(n)]
    assert K.pick_layers(names, k) == [f"l{i}" for i in want]


def test_a_representation_without_variance_scores_zero():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 5))
    zero, const = np.zeros((8, 5)), np.ones((8, 5))
    for est in K.ESTIMATORS:
        assert K.linear_cka(x, zero, est) == 0.0  # HSIC(L, L) = 0: the guard, not a 0 / 0
        assert K.linear_cka(zero, x, est) == 0.0
        assert K.linear_cka(x, const, est) == pytest.approx(0.0, abs=1e-6)  # rounding may leave HSIC(L, L) > 0


def test_hsic_unbiased_needs_four_examples_and_says_so():
    k = np.eye(3)
    with pytest.raises(ValueError, match="^the unbiased HSIC estimator needs at least 4 examples, got 3$"):
        K.hsic_unbiased(k, k)
    assert np.isfinite(K.hsic_unbiased(np.eye(4) + 1, np.eye(4) * 2))


def test_inputs_are_not_modified_and_the_default_estimator_is_unbiased():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(9, 4)), rng.normal(size=(9, 6))
    k, l = K.gram(x), K.gram(y)
    k0, l0 = k.copy(), l.copy()
    assert K.cka_from_grams(k, l) == K.cka_from_grams(k, l, "unbiased") != K.cka_from_grams(k, l, "biased")
    assert K.linear_cka(x, y) == K.cka_from_grams(k0, l0, "unbiased")
    assert K.cka_matrix([k], [l])[0, 0] == K.cka_from_grams(k0, l0, "unbiased")
    np.testing.assert_array_equal(k, k0)  # the diagonal zeroing works on a copy
    np.testing.assert_array_equal(l, l0)
    with pytest.raises(ValueError, match=r"^unknown HSIC estimator 'x'; choose one of unbiased, biased$"):
        K.cka_from_grams(k, l, "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^CKA needs the same examples: 4 vs 5 rows$"):
        K.linear_cka(np.ones((4, 2)), np.ones((5, 2)))


def test_unbiased_hsic_of_float32_grams_is_accumulated_in_float64():
    """Gram matrices handed over as float32 (entries ~1e8 with a common offset) are summed in float64: in float32 the
    centred part, a small difference of large sums, is lost."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 6)) + 3000.0
    y = x @ rng.normal(size=(6, 5)) + rng.normal(size=(30, 5)) + 2000.0
    k32, l32 = K.gram(x).astype(np.float32), K.gram(y).astype(np.float32)
    k64, l64 = k32.astype(np.float64), l32.astype(np.float64)
    assert K.hsic_unbiased(k32, l32) == pytest.approx(K.hsic_unbiased(k64, l64), rel=1e-9)
    assert K.hsic_unbiased(k32, k32) == pytest.approx(K.hsic_unbiased(k64, k64), rel=1e-9)
    assert K.hsic_unbiased(l32, l32) == pytest.approx(K.hsic_unbiased(l64, l64), rel=1e-9)
