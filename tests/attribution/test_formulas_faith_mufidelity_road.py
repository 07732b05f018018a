"""MuFidelity (Bhatt, Weller & Moura, IJCAI 2020), ROAD (Rong et al., ICML 2022) and the baseline maps of
``attribution/faithfulness.py`` against written-out implementations: a loop over the subsets and their units, a dense
linear solve of the imputation, ``scipy.stats.pearsonr`` and the closed-form Gaussian; tiny linear models, small
non-square tensors (mutation testing, docs/mutation.md)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr
from conftest import imputation_dense
from torch import nn

from reportgen.attribution import faithfulness as FM

def linear_model(c: int, h: int, w: int, k: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, k))
    with torch.no_grad():
        m[1].weight.mul_(4.0)  # scores that move visibly when a few values change
    return m.eval()


def scores(model, x: torch.Tensor, t: int, output: str) -> float:
    with torch.no_grad():
        z = model(x[None]).double()[0]
    return float(torch.softmax(z, 0)[t] if output == "prob" else z[t])


def baseline_image(x: torch.Tensor, baseline) -> torch.Tensor:
    if baseline == "mean":
        return x.mean((1, 2), keepdim=True).expand_as(x)
    if baseline == "black":
        return torch.zeros_like(x)
    return torch.full_like(x, float(baseline))


def unit_cells(unit: str, patch: int, c: int, h: int, w: int) -> list[list[tuple]]:
    """Per unit index: the (channel slice, row, column) cells it covers."""
    if unit == "value":
        return [[(k // (h * w), (k % (h * w)) // w, k % w)] for k in range(c * h * w)]
    gh, gw = -(-h // patch), -(-w // patch)
    return [[(slice(None), y, x) for y in range(i * patch, min(h, (i + 1) * patch))
             for x in range(j * patch, min(w, (j + 1) * patch))] for i in range(gh) for j in range(gw)]


def mufidelity_loop(model, x, t, maps, subsets, baseline="mean", patch=1, unit="pixel", output="prob"):
    """Bhatt et al.: per image and subset, the attribution summed over the subset's units and the score drop when
    they are set to the baseline; then Pearson's r over the subsets (scipy)."""
    n, c, h, w = x.shape
    cells = unit_cells(unit, patch, c, h, w)
    sums = np.zeros(subsets.shape[:2])
    drops = np.zeros(subsets.shape[:2])
    for b in range(n):
        base = baseline_image(x[b], baseline)
        full = scores(model, x[b], int(t[b]), output)
        for r in range(subsets.shape[1]):
            xc = x[b].clone()
            for u in subsets[b, r].tolist():
                for ch, y, xx in cells[u]:
                    xc[ch, y, xx] = base[ch, y, xx]
                    sums[b, r] += float(maps[b, y, xx])
            drops[b, r] = full - scores(model, xc, int(t[b]), output)
    corr = np.array([pearsonr(sums[b], drops[b])[0] for b in range(n)])
    return corr, sums, drops


def draw_subsets(n: int, runs: int, units: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.stack([torch.randperm(units, generator=g)[:size] for _ in range(runs)])
                        for _ in range(n)])


@pytest.mark.parametrize("unit, patch, c, baseline, output", [
    ("pixel", 1, 3, "mean", "prob"),
    ("pixel", 2, 3, 0.3, "logit"),   # a 3 x 4 grid of 2-px squares over 5 x 7: the last row / column overhang
    ("value", 1, 4, "black", "logit"),  # four channels: value indices past the third channel
    ("value", 1, 2, "mean", "prob"),
])
def test_mufidelity_equals_a_written_out_loop(unit, patch, c, baseline, output):
    h, w = 5, 7
    model = linear_model(c, h, w)
    x = torch.rand(2, c, h, w, generator=torch.Generator().manual_seed(1))
    maps = torch.rand(2, h, w, generator=torch.Generator().manual_seed(2)) - 0.3
    t = torch.tensor([0, 2])
    units = c * h * w if unit == "value" else (-(-h // patch)) * (-(-w // patch))
    subsets = draw_subsets(2, 6, units, 4, seed=3)
    ours = FM.faithfulness_correlation(model, x, t, maps, 4, baseline=baseline, patch=patch, unit=unit,
                                       subsets=subsets, batch=5, output=output)
    corr, sums, drops = mufidelity_loop(model, x, t, maps, subsets, baseline, patch, unit, output)
    np.testing.assert_allclose(ours.sums, sums, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.drops, drops, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours.corr, corr, atol=1e-4)
    assert ours.defined.all() and np.abs(drops).min() > 0  # not vacuous: every subset moved the score
    # the map-only half: the same drops scored for another map
    again = FM.subset_correlation(-maps, subsets, ours.drops, patch, unit, c)
    np.testing.assert_allclose(again.sums, -sums, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(again.corr, -corr, atol=1e-4)


def test_mufidelity_defaults_are_64_runs_of_pixels_against_the_mean_image_in_probability():
    c, h, w = 3, 4, 6
    model = linear_model(c, h, w, seed=1)
    x = torch.rand(2, c, h, w, generator=torch.Generator().manual_seed(4))
    maps = torch.rand(2, h, w, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([1, 0])
    ours = FM.faithfulness_correlation(model, x, t, maps, 3, generator=torch.Generator().manual_seed(6))
    assert ours.drops.shape == ours.sums.shape == (2, 64)
    subsets = FM.random_subsets(2, 64, h * w, 3, torch.Generator().manual_seed(6))  # the same seeded draw
    corr, sums, drops = mufidelity_loop(model, x, t, maps, subsets)
    np.testing.assert_allclose(ours.sums, sums, rtol=1e-5)
    np.testing.assert_allclose(ours.drops, drops, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(ours.corr, corr, atol=1e-4)
    again = FM.subset_correlation(maps, subsets, ours.drops)  # its defaults: single pixels
    np.testing.assert_allclose(again.sums, sums, rtol=1e-5)
    np.testing.assert_allclose(again.corr, ours.corr, atol=1e-12)


def test_subset_copies_defaults_to_single_pixels():
    x = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(7))
    base = torch.full_like(x, -1.0)
    subsets = torch.tensor([[[0, 19], [7, 8], [3, 12]], [[1, 2], [18, 5], [10, 0]]])  # B x R=3 x S=2
    pair = torch.tensor([5, 0, 3, 2])
    out = FM.subset_copies(x, base, subsets, pair, (4, 5))
    for k, p in enumerate(pair.tolist()):
        b, r = divmod(p, 3)
        ref = x[b].clone()
        for u in subsets[b, r].tolist():
            ref[:, u // 5, u % 5] = -1.0
        assert torch.equal(out[k], ref)


@pytest.mark.parametrize("unit", ["pixels", "channel", ""])
def test_an_unknown_unit_is_refused_not_read_as_pixels(unit):
    x, maps = torch.rand(1, 3, 4, 4), torch.rand(1, 4, 4)
    subsets = torch.tensor([[[0, 1], [2, 3]]])
    with pytest.raises(ValueError, match="unit must be one of pixel, value"):
        FM.faithfulness_correlation(torch.nn.Flatten(), x, 0, maps, 2, runs=2, unit=unit)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unit must be one of"):
        FM.subset_copies(x, torch.zeros_like(x), subsets, torch.tensor([0]), (4, 4), unit=unit)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unit must be one of"):
        FM.subset_correlation(maps, subsets, np.zeros((1, 2)), unit=unit)  # type: ignore[arg-type]


def test_pearson_is_scipy_row_by_row_and_rows_are_independent():
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 10)), rng.random((3, 10))
    a[1] = 3 + 5 * a[1]  # other means and scales per row
    b[2] = -2 + 0.1 * b[2] + 0.5 * a[2]
    corr, ok = FM.pearson(a, b)
    np.testing.assert_allclose(corr, [pearsonr(a[i], b[i])[0] for i in range(3)], atol=1e-12)
    assert ok.all() and corr.dtype == np.float64
    # one image's verdict does not depend on the others' scale: a huge row beside a tiny one (1e-5 x 1e-4)
    big, small = np.stack([a[0] * 1e9, b[0] * 1e9]), np.stack([a[1] * 1e-5, b[1] * 1e-4])
    big2 = np.stack([a[0], b[0] * 1e9])
    for rows in ((big, small), (small, big), (big2, small)):
        c2, ok2 = FM.pearson(np.stack([rows[0][0], rows[1][0]]), np.stack([rows[0][1], rows[1][1]]))
        c1 = [FM.pearson(r[:1], r[1:]) for r in rows]
        np.testing.assert_allclose(c2, [c[0][0] for c in c1], atol=1e-9)
        assert ok2.all() and all(c[1][0] for c in c1)
    # small values (a map in [0, 1e-3], drops in [0, 1e-2]) and opposite scales are still correlations
    np.testing.assert_allclose(FM.pearson(a * 1e-3, b * 1e-2)[0], corr, atol=1e-9)
    np.testing.assert_allclose(FM.pearson(a * 1e7, b * 1e-7)[0], corr, atol=1e-9)


def test_pearson_constant_rows_are_undefined_and_zero():
    rng = np.random.default_rng(1)
    a, b = rng.random((3, 6)), rng.random((3, 6))
    a[0] = 2.5  # a constant map sum
    b[2] = -1.0  # no drop moved
    corr, ok = FM.pearson(a, b)
    assert ok.tolist() == [False, True, False] and corr.dtype == np.float64
    assert corr[0] == 0.0 and corr[2] == 0.0
    assert corr[1] == pytest.approx(pearsonr(a[1], b[1])[0], abs=1e-12)
    # the test is per row and relative to the row's magnitude: scaling a row never changes the verdict
    one = np.array([[-1.0, 1.0]])
    for s in (1e-300, 1e-14, 1.0, 1e14, 1e300):
        c, o = FM.pearson(one * s, one)
        assert bool(o[0]) and c[0] == pytest.approx(1.0)
        c, o = FM.pearson(one, one * -s)
        assert bool(o[0]) and c[0] == pytest.approx(-1.0)
    # a spread at the rounding of the mean is constant; one of 1e-9 of the values is not
    ramp = np.array([[0.0, 1.0, 2.0]])
    for base, spread, defined in ((0.1, 0.0, False), (1e6, 1e-11, False), (1e6, 1e-3, True), (1.0, 1e-9, True)):
        row = np.array([[base, base, base + spread]])
        for s in (1e-8, 1.0, 1e8):
            c, o = FM.pearson(row * s, ramp)
            assert bool(o[0]) is defined and bool(c[0] != 0.0) is defined
    # the spread is the root-mean-square deviation: 99 equal values and one 5e-12 above (RMS 5e-13) are constant
    for delta, defined in ((5e-12, False), (5e-10, True)):
        row = np.ones((1, 100))
        row[0, -1] += delta
        assert bool(FM.pearson(row, np.arange(100.0)[None])[1][0]) is defined
        assert bool(FM.pearson(np.arange(100.0)[None], row)[1][0]) is defined
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an all-zero row is undefined without a 0 / 0 on the way
        c, o = FM.pearson(np.zeros((2, 4)), np.arange(8.0).reshape(2, 4))
    assert not o.any() and not c.any()


def test_pearson_of_float32_rows_is_computed_in_float64():
    rng = np.random.default_rng(2)
    a, b = rng.random((2, 50)).astype(np.float32), rng.random((2, 50)).astype(np.float32)
    a[1] = 1000 + a[1] * 1e-3  # a small spread on a large value: float32 arithmetic would lose digits
    corr, ok = FM.pearson(a, b)
    assert corr.dtype == np.float64 and ok.all()
    want = [pearsonr(a[i].astype(np.float64), b[i].astype(np.float64))[0] for i in range(2)]
    np.testing.assert_allclose(corr, want, atol=1e-12)
    corr2, _ = FM.pearson(b, a)
    np.testing.assert_allclose(corr2, want, atol=1e-12)


def test_removed_count_is_quantus_percentages():
    # Quantus's ROAD removes int(n * percent / 100) pixels; fractions p / 100 must give the same counts
    for n in (10, 30, 576, 1000):
        assert [FM.removed_count(n, p / 100) for p in range(101)] == [n * p // 100 for p in range(101)]
    assert FM.removed_count(7, 0.5) == 3 and FM.removed_count(20, 0.0) == 0


def ordered(v: torch.Tensor, descending: bool, perm: torch.Tensor) -> list[int]:
    """Pixel indices most (``descending``) or least relevant first, ties in the order of ``perm``."""
    vals = v.flatten().tolist()
    return [int(perm[k]) for k in sorted(range(len(vals)), key=lambda k: -vals[perm[k]] if descending
                                         else vals[perm[k]])]


def road_reference(model, x, t, maps, fractions, order, noise, seed, gen_seed):
    """Per image and fraction: the first floor(n f) pixels in ``order`` imputed (dense solve) plus ``noise`` x the
    rng's normals (image-major, C x removed each), then softmax probability of the target and whether it is the
    argmax."""
    n, c, h, w = x.shape
    perm = (torch.randperm(h * w, generator=torch.Generator().manual_seed(gen_seed)) if gen_seed is not None
            else torch.arange(h * w))
    rng = np.random.default_rng(seed)
    probs, correct, copies = np.zeros((n, len(fractions))), np.zeros((n, len(fractions)), bool), []
    for b in range(n):
        first = ordered(maps[b], order == "morf", perm)
        for k, f in enumerate(fractions):
            removed = np.zeros(h * w, bool)
            removed[first[:int(h * w * f + 1e-9)]] = True
            removed = removed.reshape(h, w)
            img = imputation_dense(x[b].double().numpy(), removed)
            img[:, removed] += noise * rng.standard_normal((c, int(removed.sum())))
            copies.append(img)
            with torch.no_grad():
                z = model(torch.from_numpy(img).float()[None])[0].double()
            probs[b, k] = float(torch.softmax(z, 0)[t[b]])
            correct[b, k] = int(z.argmax()) == int(t[b])
    return probs, correct, np.stack(copies)


@pytest.fixture(scope="module")
def road_setup():
    c, h, w = 3, 5, 6
    model = linear_model(c, h, w, k=3, seed=2)
    x = torch.rand(2, c, h, w, generator=torch.Generator().manual_seed(8))
    maps = torch.randint(0, 4, (2, h, w), generator=torch.Generator().manual_seed(9)).float()  # many ties
    with torch.no_grad():
        t = model(x).argmax(1)
    return model, x, t, maps


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_road_curve_equals_dense_imputation_and_a_seeded_tie_order(road_setup, order):
    model, x, t, maps = road_setup
    fr = (0.1, 0.5, 0.7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. no deprecated implicit softmax dimension
        ours = FM.road_curve(model, x, t, maps, fr, order, noise=0.05, rng=np.random.default_rng(3), batch=4,
                             generator=torch.Generator().manual_seed(11))
    probs, correct, _ = road_reference(model, x, t, maps, fr, order, 0.05, 3, 11)
    np.testing.assert_allclose(ours.probs, probs, atol=1e-5)
    assert np.array_equal(ours.correct, correct) and ours.order == order
    assert ours.fractions.dtype == np.float64 and ours.fractions.tolist() == list(fr)
    np.testing.assert_allclose(ours.area, probs.mean(1), atol=1e-5)


def test_road_curve_defaults_morf_noise_001_and_float64_fractions(road_setup):
    model, x, t, maps = road_setup
    fr = np.array([0.2, 0.4], dtype=np.float32)
    ours = FM.road_curve(model, x, t, maps, fr, rng=np.random.default_rng(4))
    assert ours.order == "morf" and ours.fractions.dtype == np.float64
    np.testing.assert_allclose(ours.fractions, fr.astype(np.float64))
    probs, correct, _ = road_reference(model, x, t, maps, [float(f) for f in fr], "morf", 0.01, 4, None)
    np.testing.assert_allclose(ours.probs, probs, atol=1e-5)
    assert np.array_equal(ours.correct, correct)
    # the default five fractions
    assert FM.road_curve(model, x, t, maps, rng=np.random.default_rng(4)).probs.shape == (2, 5)


def test_road_copies_defaults_and_dtype(road_setup):
    model, x, t, maps = road_setup
    xd = x.double()
    out = FM.road_copies(xd, maps, (0.3, 0.6), "morf", rng=np.random.default_rng(5))
    assert out.dtype == torch.float64 and out.shape == (4, *x.shape[1:])
    _, _, ref = road_reference(model, x, t, maps, (0.3, 0.6), "morf", 0.01, 5, None)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)
    lerf = FM.road_copies(x, maps, (0.3,), "lerf", noise=0.0, generator=torch.Generator().manual_seed(2))
    _, _, ref = road_reference(model, x, t, maps, (0.3,), "lerf", 0.0, 0, 2)
    assert lerf.dtype == torch.float32
    np.testing.assert_allclose(lerf.numpy(), ref, atol=1e-5)


def test_centre_map_is_the_gaussian_closed_form():
    for n, h, w, sigma in ((2, 5, 8, 0.3), (1, 6, 6, None), (1, 7, 3, 0.1)):
        got = FM.centre_map(n, h, w) if sigma is None else FM.centre_map(n, h, w, sigma)
        s = 0.25 if sigma is None else sigma
        yy = (np.arange(h) - (h - 1) / 2) / (s * h)
        xx = (np.arange(w) - (w - 1) / 2) / (s * w)
        ref = np.exp(-0.5 * (yy[:, None] ** 2 + xx[None] ** 2))
        assert got.shape == (n, h, w) and got.dtype == torch.float32
        np.testing.assert_allclose(got.numpy(), np.broadcast_to(ref, (n, h, w)), rtol=1e-6)
