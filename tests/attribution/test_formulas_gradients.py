"""reportgen.attribution.gradients against closed forms on tiny models: SmoothGrad as the written-out loop over the
generator's draws (``S = sum w x^2``: each noisy gradient is ``2 w (x + sigma eps_n)``), the documented defaults,
the pass sizes, the float32 contract, the target checks, and integrated gradients on a score whose gradient is zero
everywhere (it never converges: the step schedule, the relative gap with its floor, ``tol`` itself, an empty batch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from reportgen.attribution.gradients import class_scores, gradient, integrated_gradients, smoothgrad, to_map

torch.set_num_threads(1)


class Quadratic(nn.Module):
    """``S_0 = sum w x^2`` (gradient ``2 w x``), ``S_1 = sum x`` (gradient 1)."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.register_buffer("w", w)
        self.sizes: list[int] = []

    def forward(self, x):
        self.sizes.append(len(x))
        if len(self.sizes) > 200:  # a loop that never stops fails, not hangs
            raise RuntimeError("more than 200 passes")
        return torch.stack([(self.w * x * x).flatten(1).sum(1), x.flatten(1).sum(1)], 1)


def _wx(seed=0, shape=(2, 3, 4, 4), lo=0.0, span=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape[1:], generator=g), lo + span * torch.rand(shape, generator=g)


def _smoothgrad_loop(w, x, n, noise, seed, squared=False):
    """Written out: sigma_b = noise * (max x_b - min x_b); sample k adds sigma eps_k, eps_k the k-th x-shaped float32
    draw of the generator; each noisy gradient of ``sum w x^2`` is ``2 w (x + sigma eps_k)``; the mean over k."""
    g = torch.Generator().manual_seed(seed)
    xd = x.double()
    sigma = torch.stack([noise * (xd[b].max() - xd[b].min()) for b in range(len(x))]).view(-1, 1, 1, 1)
    total = torch.zeros_like(xd)
    for _ in range(n):
        eps = torch.randn(x.shape, generator=g, dtype=torch.float32).double()
        a = 2 * w.double() * (xd + sigma * eps)
        total += a * a if squared else a
    return total / n


# ----- SmoothGrad (Smilkov et al. 2017) ------------------------------------------------------------------
def test_smoothgrad_equals_the_written_out_loop_over_the_generator_draws():
    """Images in [0.5, 1.5] and [2, 4] (a sigma from ``max + min`` or from another image's range misses); the noisy
    copies are ``x + sigma eps``, not ``x - sigma eps`` or ``x + eps / sigma``; several passes (chunk 3 of 7)."""
    w, x = _wx(1)
    x = torch.stack([0.5 + x[0], 2 + 2 * x[1]])
    for squared in (False, True):
        got = smoothgrad(Quadratic(w), x, 0, n_samples=7, noise=0.2, generator=torch.Generator().manual_seed(4),
                         squared=squared, chunk=3)
        want = _smoothgrad_loop(w, x, 7, 0.2, 4, squared)
        assert got.dtype == torch.float32 and got.shape == x.shape
        torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=1e-4)
    assert float((want - (2 * w * x) ** 2).abs().max()) > 0.1  # the noise is not negligible: the test has teeth


def test_smoothgrad_defaults_are_25_plain_samples_at_noise_0_15():
    """``n_samples=25``, ``noise=0.15``, ``squared=False`` by default."""
    w, x = _wx(2)
    got = smoothgrad(Quadratic(w), x, 0, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(got.double(), _smoothgrad_loop(w, x, 25, 0.15, 5), atol=1e-4, rtol=1e-4)


def test_smoothgrad_passes_hold_chunk_noisy_copies_of_the_batch_and_none_is_empty():
    """7 samples of a batch of 2 in chunks of 3: passes of 6, 6 and 2 copies (no empty pass after the last)."""
    w, x = _wx(3)
    m = Quadratic(w)
    smoothgrad(m, x, 0, n_samples=7, generator=torch.Generator().manual_seed(0), chunk=3)
    assert m.sizes == [6, 6, 2]


def test_smoothgrad_noise_does_not_depend_on_chunk_for_any_batch_shape():
    """A batch of 2 x 3 x 5 x 5 (150 values, not a multiple of the 16 normals torch fills at a time): chunks of 1, 3
    and 8 give the written-out loop's map, sample k's noise being the generator's k-th batch-shaped draw."""
    w, x = _wx(5, shape=(2, 3, 5, 5))
    want = _smoothgrad_loop(w, x, 7, 0.2, 9)
    for chunk in (1, 3, 8):
        got = smoothgrad(Quadratic(w), x, 0, n_samples=7, noise=0.2, generator=torch.Generator().manual_seed(9),
                         chunk=chunk)
        torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)


def test_smoothgrad_noise_does_not_depend_on_the_default_dtype():
    """The noise is drawn as float32 from the generator whatever ``torch.get_default_dtype()`` is, so a run repeats
    (float64 draws are a different stream)."""
    w, x = _wx(4)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got = smoothgrad(Quadratic(w), x, 0, n_samples=4, noise=0.3, generator=torch.Generator().manual_seed(6))
    finally:
        torch.set_default_dtype(old)
    torch.testing.assert_close(got.double(), _smoothgrad_loop(w, x, 4, 0.3, 6), atol=1e-4, rtol=1e-4)


def test_smoothgrad_of_a_bfloat16_model_feeds_it_bfloat16_copies():
    """The noisy copies keep the input's dtype (a bfloat16 ``nn.Linear`` refuses float32 input); the gradient of a
    linear score is its weight row at every copy, so SmoothGrad returns that row (as float32)."""
    lin = nn.Linear(12, 2).to(torch.bfloat16)
    m = nn.Sequential(nn.Flatten(), lin)
    x = torch.rand((2, 3, 2, 2), generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    got = smoothgrad(m, x, [1, 0], n_samples=3, noise=0.2, generator=torch.Generator().manual_seed(0))
    assert got.dtype == torch.float32
    want = lin.weight.detach()[[1, 0]].float().view(2, 3, 2, 2)
    torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_smoothgrad_and_integrated_gradients_are_float32_for_a_float64_model():
    """Both accumulate in float32: a float64 model still gives float32 maps (as the float32 report arrays)."""
    w, x = _wx(5)
    m = Quadratic(w.double())
    sg = smoothgrad(m, x.double(), 0, n_samples=3, noise=0.1, generator=torch.Generator().manual_seed(1))
    ig = integrated_gradients(m, x.double(), 0, steps=2)
    assert sg.dtype == torch.float32 and ig.attributions.dtype == torch.float32
    torch.testing.assert_close(ig.attributions, (w * x * x).float(), atol=1e-5, rtol=1e-4)


# ----- targets and maps ----------------------------------------------------------------------------------
def test_target_count_must_match_the_batch():
    """One target for every image or exactly one per image; anything else is a ValueError saying the counts."""
    w, x = _wx(6)
    m = Quadratic(w)
    for fn in (gradient, class_scores):
        with pytest.raises(ValueError, match=r"^got 3 targets for a batch of 2$"):
            fn(m, x, [0, 1, 1])
    torch.testing.assert_close(class_scores(m, x[:1], [1]), x[:1].flatten(1).sum(1))
    torch.testing.assert_close(class_scores(m, x, 1), x.flatten(1).sum(1))


def test_uint8_labels_are_class_indices():
    """Labels stored as uint8 (as in the CIFAR and MNIST arrays) index classes like int64 ones."""
    w, x = _wx(8)
    m = Quadratic(w)
    labels = np.array([1, 0], dtype=np.uint8)
    torch.testing.assert_close(gradient(m, x, labels), torch.stack([torch.ones_like(x[0]), 2 * w * x[1]]))
    torch.testing.assert_close(class_scores(m, x, torch.as_tensor(labels)),
                               torch.stack([x[0].sum(), (w * x[1] * x[1]).sum()]))


def test_to_map_defaults_to_the_channel_absmax():
    a = torch.randn((2, 3, 4, 5), generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(to_map(a), a.abs().amax(1))


# ----- integrated gradients (Sundararajan et al. 2017) ---------------------------------------------------
class Stairs(nn.Module):
    """``S_0 = 0.5 floor(sum x)``, ``S_1 = 1e-4 floor(sum x)``: the gradient is zero everywhere, so integrated
    gradients sum to 0 while ``S(x) - S(0)`` is 0.5 (or 1e-4) for an image with ``sum x`` in [1, 2): the
    completeness gap never closes."""

    def __init__(self, budget: int = 10_000):
        super().__init__()
        self.budget = budget  # images the model agrees to see: a schedule that never stops fails, not hangs
        self.seen = 0

    def forward(self, x):
        self.seen += len(x)
        if self.seen > self.budget:
            raise RuntimeError(f"{self.seen} images evaluated, more than {self.budget}")
        f = torch.floor(x.flatten(1).sum(1))
        return torch.stack([0.5 * f, 1e-4 * f], 1)


def _stairs_x():
    return torch.full((2, 1, 2, 2), 0.375)  # sum 1.5


def test_integrated_gradients_defaults_never_converging():
    """Defaults: 32 nodes, doubled up to 512, tol 0.01, floor 1e-3. The gap is ``|total - delta| / max(|delta|,
    1e-3)``: 1 for delta 0.5 and 1e-4 / 1e-3 = 0.1 for delta 1e-4 (under the floor)."""
    m = Stairs()
    r = integrated_gradients(m, _stairs_x(), [0, 1])
    assert [s for s, _ in r.tried] == [32, 64, 128, 256, 512]
    assert m.seen == 2 * 2 + 2 * (32 + 64 + 128 + 256 + 512)  # S(x), S(x') and every node once; stops at 512
    assert r.steps == 512 and r.steps_per_image.tolist() == [512, 512] and r.steps_per_image.dtype.kind == "i"
    assert r.tol == 0.01 and not r.converged
    np.testing.assert_allclose(r.delta, [0.5, 1e-4], rtol=1e-6)
    np.testing.assert_array_equal(r.total, [0.0, 0.0])
    assert r.gap.dtype == np.float64
    np.testing.assert_allclose(r.gap, [1.0, 0.1], rtol=1e-5)
    assert [g for _, g in r.tried] == pytest.approx([1.0] * 5)
    assert torch.equal(r.attributions, torch.zeros(2, 1, 2, 2))


def test_integrated_gradients_a_gap_equal_to_tol_is_within_it():
    """Gap exactly 1 with ``tol=1``: converged at the first count, nothing refined."""
    r = integrated_gradients(Stairs(), _stairs_x(), 0, steps=2, tol=1.0, max_steps=8)
    assert r.tried == [(2, 1.0)] and r.converged and r.steps == 2
    r = integrated_gradients(Stairs(), _stairs_x(), 0, steps=2, tol=0.999, max_steps=8)
    assert [s for s, _ in r.tried] == [2, 4, 8] and not r.converged and r.tol == 0.999


def test_integrated_gradients_of_an_empty_batch():
    """No image: nothing computed, zero steps, trivially converged."""
    r = integrated_gradients(Stairs(), _stairs_x()[:0], 0)
    assert r.attributions.shape == (0, 1, 2, 2) and r.steps == 0 and r.converged and r.tried == []
    assert len(r.gap) == len(r.delta) == len(r.total) == len(r.steps_per_image) == 0
