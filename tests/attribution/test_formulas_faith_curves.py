"""Deletion / insertion (Petsiuk, Das & Saenko, BMVC 2018, RISE) and region perturbation / AOPC (Samek et al., IEEE
TNNLS 2017) of reportgen.attribution.faithfulness against independent written-out implementations: loops over the
pixels and the units, one copy and one forward pass at a time, SciPy's Gaussian filter for the blur. A tiny
conv-tanh-dropout-linear model (given in train mode: the metrics must run it in eval mode), small tensors, seeded."""

from __future__ import annotations

import re
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d
from torch import nn

from reportgen.attribution import faithfulness as FM

torch.set_num_threads(1)


def tiny(c: int, h: int, w: int, k: int = 3, seed: int = 0) -> nn.Module:
    """Position-sensitive logits (a linear read-out of every pixel's conv feature), large enough to move the
    softmax; left in train mode on purpose (its dropout would randomise every score)."""
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(c, 4, 3, padding=1), nn.Tanh(), nn.Dropout(0.5), nn.Flatten(), nn.Linear(4 * h * w, k))
    with torch.no_grad():
        m[-1].weight.mul_(12.0 / np.sqrt(4 * h * w) / m[-1].weight.abs().mean())
    return m.train()


def images(n: int, c: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def score(model: nn.Module, img: torch.Tensor, t: int, output: str = "prob") -> float:
    """The reference score of one C x H x W image: one eval-mode forward pass, softmax in float64."""
    was = model.training
    model.eval()
    with torch.no_grad():
        z = model(img[None].float())[0].double()
    model.train(was)
    return float(torch.softmax(z, 0)[t] if output == "prob" else z[t])


def removal_order(values: np.ndarray, descending: bool = True, perm=None) -> list[int]:
    """Flat unit indices in the order they are changed: by value, ties by position in ``perm`` (else by index)."""
    pos = {int(p): i for i, p in enumerate(perm)} if perm is not None else {j: j for j in range(values.size)}
    v = values.ravel().astype(np.float64)
    return sorted(range(v.size), key=lambda j: (-v[j] if descending else v[j], pos[j]))


def ref_blur(x: torch.Tensor, sigma: float) -> np.ndarray:
    """Gaussian of std sigma truncated at radius min(ceil(3 sigma), min side - 1), mirror padding (SciPy)."""
    a = x.double().numpy()
    r = int(min(np.ceil(3 * sigma), min(a.shape[-2:]) - 1))
    if r < 1:
        return a.copy()
    a = gaussian_filter1d(a, sigma, axis=-1, mode="mirror", radius=r)
    return gaussian_filter1d(a, sigma, axis=-2, mode="mirror", radius=r)


def ref_fill(x: torch.Tensor, kind) -> np.ndarray:
    a = x.double().numpy()
    if kind == "mean":
        return np.broadcast_to(a.mean((2, 3), keepdims=True), a.shape)
    if kind == "black":
        return np.zeros_like(a)
    if kind == "blur":
        return ref_blur(x, max(1.0, x.shape[-1] / 16))
    return np.full_like(a, float(kind))


def unit_of(h: int, w: int, patch: int, offset=(0, 0), cols: int | None = None) -> np.ndarray:
    """H x W: the flat index of the unit (of a grid of ``patch`` squares, ``cols`` wide, starting ``offset`` px above
    / left of the image) that holds each pixel."""
    cols = cols or -(-(w + offset[1]) // patch)
    ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return (ii + offset[0]) // patch * cols + (jj + offset[1]) // patch


def unit_sums(m: np.ndarray, patch: int, offset=(0, 0), shape=None) -> np.ndarray:
    h, w = m.shape
    gh, gw = shape or (-(-(h + offset[0]) // patch), -(-(w + offset[1]) // patch))
    out = np.zeros((gh, gw))
    u = unit_of(h, w, patch, offset)
    for i in range(h):
        for j in range(w):
            out.flat[u[i, j]] += m[i, j]
    return out


def _tensor(a) -> torch.Tensor:
    return a.detach().float() if isinstance(a, torch.Tensor) else torch.from_numpy(np.array(a, dtype=np.float32))


def ref_curve(model, base, src, t, orders, counts, patch=1, offset=(0, 0), output="prob") -> np.ndarray:
    """Copy (b, k): base[b] with the pixels of its first counts[k] units (orders[b]) taken from src[b]."""
    base, src = _tensor(base), _tensor(src)
    h, w = base.shape[-2:]
    u = torch.as_tensor(unit_of(h, w, patch, offset))
    out = np.zeros((len(base), len(counts)))
    for b in range(len(base)):
        for s, k in enumerate(counts):
            m = torch.isin(u, torch.as_tensor(orders[b][:int(k)], dtype=torch.long))
            out[b, s] = score(model, torch.where(m, src[b], base[b]), int(t[b]), output)
    return out


def ref_counts(n: int, steps: int) -> list[int]:
    k = max(1, int(steps))
    return [round(Fraction(n * s, k)) for s in range(k + 1)]


# ---------------------------------------------------------------- fills, units, ranks


@pytest.mark.parametrize("shape, sigma", [((2, 2, 12, 15), 1.5), ((1, 3, 5, 7), 3.0), ((1, 1, 9, 6), 0.3),
                                          ((1, 2, 8, 9), 1.0), ((1, 2, 6, 20), 0.6)])
def test_blur_is_a_truncated_mirror_padded_gaussian(shape, sigma):
    x = images(*shape)
    out = FM.blur(x, sigma)
    assert out.shape == x.shape and out.dtype == torch.float32
    np.testing.assert_allclose(out.double().numpy(), ref_blur(x, sigma), atol=2e-6)
    assert (out - x).abs().max() > 1e-2  # it blurred
    x64 = x.double()  # a float64 batch blurs in float64
    out64 = FM.blur(x64, sigma)
    assert out64.dtype == torch.float64
    np.testing.assert_allclose(out64.numpy(), ref_blur(x, sigma), atol=1e-6)


def test_blur_without_a_radius_is_a_copy():
    x = images(1, 2, 6, 6)
    for y, sigma in ((x, 0.0), (x[:, :, :1], 2.0)):  # sigma 0, or a 1-px side leaves no radius
        out = FM.blur(y, sigma)
        assert torch.equal(out, y) and out.data_ptr() != y.data_ptr()


def test_fill_image_kinds():
    x = images(2, 3, 12, 40)
    for kind in ("mean", "black", "blur", 0.25, 1):
        out = FM.fill_image(x, kind)
        assert out.shape == x.shape
        np.testing.assert_allclose(out.double().numpy(), ref_fill(x, kind), atol=2e-6)
    small = images(1, 2, 10, 10)  # side / 16 < 1: sigma 1
    np.testing.assert_allclose(FM.fill_image(small, "blur").numpy(), ref_blur(small, 1.0), atol=2e-6)
    np.testing.assert_allclose(FM.fill_image(x, "blur", sigma=0.8).numpy(), ref_blur(x, 0.8), atol=2e-6)
    colour = torch.tensor([0.1, 0.5, 0.9]).view(1, 3, 1, 1)
    out = FM.fill_image(x.double(), colour)
    assert out.dtype == torch.float64 and out.shape == x.shape
    assert torch.equal(out[1, :, 4, 7], colour.view(3).double())
    with pytest.raises(ValueError, match=re.escape("unknown fill 'grey'; choose mean, blur or black")):
        FM.fill_image(x, "grey")


def test_unit_scores_sum_each_square_including_the_cut_edge_ones():
    maps = torch.randn(2, 7, 10, generator=torch.Generator().manual_seed(0))
    for patch in (2, 3, 4):
        got = FM.unit_scores(maps, patch)
        for b in range(2):
            np.testing.assert_allclose(got[b].numpy(), unit_sums(maps[b].double().numpy(), patch), atol=1e-5)
    ints = torch.arange(12).view(1, 3, 4)
    for patch in (0, 1):
        assert FM.unit_scores(ints, patch).dtype == torch.float32
        assert torch.equal(FM.unit_scores(ints, patch), ints.float())


def test_ranks_order_by_value_and_break_ties_in_the_seeded_order():
    maps = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(0))
    for desc in (True, False):
        r = FM.ranks(maps, descending=desc)
        for b in range(2):
            order = removal_order(maps[b].numpy(), desc)
            assert r[b].flatten()[order].tolist() == list(range(30))
    r2 = FM.ranks(maps, patch=2)  # 3 x 3 squares ranked by their sums
    assert r2.shape == (2, 3, 3)
    assert r2[1].flatten()[removal_order(unit_sums(maps[1].double().numpy(), 2))].tolist() == list(range(9))
    assert torch.equal(FM.ranks(maps), FM.ranks(maps, 1, None, True))  # defaults: pixels, largest first
    # ties: positional without a generator, else the order of the generator's permutation
    tied = torch.tensor([[[1.0, 2.0, 1.0], [2.0, 1.0, 0.0]], [[3.0, 3.0, 3.0], [3.0, 3.0, 3.0]]])
    plain = FM.order_ranks(tied)
    seeded = FM.order_ranks(tied, torch.Generator().manual_seed(5))
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(5)).tolist()
    for b in range(2):
        assert plain[b].flatten()[removal_order(tied[b].numpy())].tolist() == list(range(6))
        assert seeded[b].flatten()[removal_order(tied[b].numpy(), perm=perm)].tolist() == list(range(6))
    asc = FM.order_ranks(tied, torch.Generator().manual_seed(5), descending=False)
    assert asc[0].flatten()[removal_order(tied[0].numpy(), False, perm)].tolist() == list(range(6))
    assert seeded.dtype == torch.int64 and seeded.shape == (2, 2, 3)


def test_pixels_expand_a_unit_mask_with_the_grid_offset():
    units = torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(0)) < 0.5
    for patch, size, offset in ((3, (7, 8), (1, 2)), (3, (9, 15), (0, 0)), (2, (7, 9), (1, 0)), (1, (4, 5), (0, 0))):
        got = FM._pixels(units, patch, size, offset)
        u = unit_of(*size, patch, offset, units.shape[2])
        want = units.flatten(1)[:, torch.as_tensor(u)]
        assert got.shape == (3, *size) and torch.equal(got, want)
    assert torch.equal(FM._pixels(units, 2, (7, 9)), units.flatten(1)[:, torch.as_tensor(unit_of(7, 9, 2, cols=5))])


@torch.no_grad()
def test_class_scores_probability_or_logit_of_each_copys_class():
    model = tiny(2, 5, 6).eval()
    x = images(4, 2, 5, 6)
    t = torch.tensor([2, 0, 1, 2])
    for out in ("prob", "logit"):
        got = FM.class_scores(model, x, t, out)
        assert got.dtype == torch.float32
        np.testing.assert_allclose(got.numpy(), [score(model, x[b], int(t[b]), out) for b in range(4)], atol=1e-6)
    np.testing.assert_allclose(FM.class_scores(model, x, t).numpy(), FM.class_scores(model, x, t, "prob").numpy())

    class Half(nn.Module):  # a low-precision model: the softmax must still run in float32
        def forward(self, v):
            return model(v).to(torch.bfloat16)

    z = model(x).to(torch.bfloat16).double()
    want = torch.softmax(z, 1).gather(1, t[:, None])[:, 0]
    got = FM.class_scores(Half(), x, t)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6)


def test_step_counts_and_chunks():
    for n, steps in ((36, 32), (10, 4), (10, 3), (7, 1), (100, 7), (5, 8)):
        assert FM.step_counts(n, steps).tolist() == ref_counts(n, steps)
    assert FM.step_counts(9, 0).tolist() == [0, 9] and FM.step_counts(9, 2.9).tolist() == [0, 4, 9]
    assert FM.step_counts(10, 4).dtype == np.int64
    assert FM.chunks(100, 64) == [range(0, 50), range(50, 100)]
    assert FM.chunks(0, 8) == [] and FM.chunks(3, 0) == [range(0, 1), range(1, 2), range(2, 3)]
    for total, batch in ((1, 1), (7, 3), (10, 4), (64, 64), (65, 64), (9, 100), (23, 5), (12, 2.5)):
        parts = FM.chunks(total, batch)
        assert [i for p in parts for i in p] == list(range(total))
        sizes = [len(p) for p in parts]
        assert len(parts) == -(-total // int(batch)) and max(sizes) <= batch and max(sizes) - min(sizes) <= 1
        assert all(type(p.start) is int and type(p.stop) is int for p in parts)


# ---------------------------------------------------------------- blending, deletion, insertion


def test_blend_curve_and_copies_take_the_first_units_from_the_source():
    model = tiny(2, 7, 8)
    base, src = images(3, 2, 7, 8, 1), images(3, 2, 7, 8, 2) + 1.0
    maps = torch.randn(3, 7, 8, generator=torch.Generator().manual_seed(3))
    patch, offset = 3, (1, 2)
    rank = FM.order_ranks(torch.as_tensor(np.stack([unit_sums(maps[b].numpy(), patch, offset) for b in range(3)])))
    counts = [0, 1, 4, 9, 12]
    t = [2, 0, 1]
    for output, batch in (("prob", 4), ("logit", 64)):
        got = FM.blend_curve(model, base, src, rank, counts, t, patch, batch, output, offset)
        orders = [removal_order(unit_sums(maps[b].numpy(), patch, offset)) for b in range(3)]
        assert got.shape == (3, 5) and got.dtype == np.float32
        np.testing.assert_allclose(got, ref_curve(model, base, src, t, orders, counts, patch, offset, output),
                                   atol=2e-5)
        assert np.ptp(got) > 0.05  # the copies moved the score
    assert model.training  # run in eval mode, left in train mode
    # defaults: pixels, probabilities, no offset; one target for the batch
    r1 = FM.order_ranks(maps)
    got = FM.blend_curve(model, base, src, r1, np.array([0, 3, 56]), 1)
    orders = [removal_order(maps[b].numpy()) for b in range(3)]
    np.testing.assert_allclose(got, ref_curve(model, base, src, [1, 1, 1], orders, [0, 3, 56]), atol=2e-5)
    cnt = torch.tensor([0, 2, 12])
    pair = torch.tensor([7, 0, 5, 3])  # (b, s) = (2, 1), (0, 0), (1, 2), (1, 0)
    copies = FM.blend_copies(base, src, rank, cnt, pair, patch, offset)
    u = torch.as_tensor(unit_of(7, 8, patch, offset))
    for i, (b, s) in enumerate(((2, 1), (0, 0), (1, 2), (1, 0))):
        m = rank[b].flatten()[u] < cnt[s]
        assert torch.equal(copies[i], torch.where(m, src[b], base[b]))
    assert torch.equal(FM.blend_copies(base, src, r1, cnt, pair), torch.stack(
        [torch.where(r1[b] < cnt[s], src[b], base[b]) for b, s in ((2, 1), (0, 0), (1, 2), (1, 0))]))


def petsiuk(model, x, t, maps, steps, start, insertion, patch=1, output="prob", perm=None):
    """RISE deletion / insertion written out: units by summed saliency, most first; ``steps`` equal steps."""
    h, w = x.shape[-2:]
    sums = [unit_sums(m.double().numpy(), patch) for m in maps]
    orders = [removal_order(s, True, perm) for s in sums]
    counts = ref_counts(sums[0].size, steps)
    other = ref_fill(x, start) if isinstance(start, (str, int, float)) else start
    base, src = (other, x.numpy()) if insertion else (x.numpy(), other)
    return np.array(counts) / counts[-1], ref_curve(model, base, src, t, orders, counts, patch, (0, 0), output)


def test_deletion_curve_is_petsiuk_deletion():
    model = tiny(3, 6, 6)
    x = images(2, 3, 6, 6)
    maps = torch.randn(2, 6, 6, generator=torch.Generator().manual_seed(4))
    t = [1, 2]
    c = FM.deletion_curve(model, x, t, maps)  # defaults: 32 steps of pixels to the image's mean colour, probability
    fr, want = petsiuk(model, x, t, maps, 32, "mean", False)
    assert c.scores.shape == (2, 33) and np.array_equal(c.fractions, fr)
    np.testing.assert_allclose(c.scores, want, atol=2e-5)
    np.testing.assert_allclose(c.auc, [np.trapezoid(want[b], fr) for b in range(2)], atol=2e-5)
    assert np.ptp(want) > 0.1
    c = FM.deletion_curve(model, x, t, maps, steps=4, fill="black", patch=4, batch=3, output="logit")
    fr, want = petsiuk(model, x, t, maps, 4, "black", False, patch=4, output="logit")
    assert np.array_equal(c.fractions, fr) and c.scores.shape == (2, 5)
    np.testing.assert_allclose(c.scores, want, atol=2e-5)


def test_insertion_curve_is_petsiuk_insertion():
    model = tiny(3, 6, 7)
    x = images(2, 3, 6, 7, 5)
    maps = torch.randn(2, 6, 7, generator=torch.Generator().manual_seed(6))
    t = [0, 2]
    c = FM.insertion_curve(model, x, t, maps)  # defaults: 32 steps of pixels onto a blurred copy, probability
    fr, want = petsiuk(model, x, t, maps, 32, "blur", True)
    assert c.scores.shape == (2, 33) and np.array_equal(c.fractions, fr)
    np.testing.assert_allclose(c.scores, want, atol=2e-5)
    np.testing.assert_allclose(c.auc, [np.trapezoid(want[b], fr) for b in range(2)], atol=2e-5)
    assert np.ptp(want) > 0.1
    c = FM.insertion_curve(model, x, t, maps, steps=3, start=0.5, patch=3, batch=2, output="logit")
    fr, want = petsiuk(model, x, t, maps, 3, 0.5, True, patch=3, output="logit")
    assert np.array_equal(c.fractions, fr) and c.scores.shape == (2, 4)
    np.testing.assert_allclose(c.scores, want, atol=2e-5)


def test_curves_of_a_one_image_batch():
    model = tiny(3, 5, 5)
    x = images(1, 3, 5, 5, 8)
    maps = torch.randn(1, 5, 5, generator=torch.Generator().manual_seed(9))
    for fn, start, ins in ((FM.deletion_curve, 0.0, False), (FM.insertion_curve, "mean", True)):
        c = fn(model, x, 2, maps, 5, start)
        fr, want = petsiuk(model, x, [2], maps, 5, start, ins)
        assert np.array_equal(c.fractions, fr)
        np.testing.assert_allclose(c.scores, want, atol=2e-5)


def test_tied_maps_follow_the_generator():
    model = tiny(3, 6, 6)
    x = images(2, 3, 6, 6, 7)
    flat = torch.zeros(2, 6, 6)  # every pixel tied: the removal order is the seeded permutation
    perm = torch.randperm(36, generator=torch.Generator().manual_seed(9)).tolist()
    for fn, start, ins in ((FM.deletion_curve, "mean", False), (FM.insertion_curve, "blur", True)):
        c = fn(model, x, 0, flat, 6, start, generator=torch.Generator().manual_seed(9))
        _, want = petsiuk(model, x, [0, 0], flat, 6, start, ins, perm=perm)
        np.testing.assert_allclose(c.scores, want, atol=2e-5)


# ---------------------------------------------------------------- region perturbation (AOPC)


def samek(model, x, t, maps, patch, regions, fill, order, output="prob", perm=None):
    """Samek et al.'s region perturbation written out: a patch grid centred on the image (the shortfall split
    floor-first above / left), squares ranked by summed relevance, the first k = 0..L filled, one at a time."""
    h, w = x.shape[-2:]
    off = (((-h) % patch) // 2, ((-w) % patch) // 2)
    sums = [unit_sums(m.double().numpy(), patch, off, (-(-h // patch), -(-w // patch))) for m in maps]
    orders = [removal_order(s, order == "morf", perm) for s in sums]
    counts = list(range(min(regions, sums[0].size) + 1))
    fillv = ref_fill(x, fill)
    return ref_curve(model, x, fillv, t, orders, counts, patch, off, output)


def test_grid_offset_and_region_scores_centre_the_grid():
    assert [FM.grid_offset(s, p) for s, p in ((24, 7), (25, 7), (7, 7), (8, 3), (10, 4), (13, 8))] == [2, 1, 0, 0, 1, 1]
    maps = torch.randn(2, 10, 13, generator=torch.Generator().manual_seed(0))
    for patch in (3, 4, 5, 8):
        got = FM.region_scores(maps, patch)
        off = (((-10) % patch) // 2, ((-13) % patch) // 2)
        for b in range(2):
            np.testing.assert_allclose(got[b].numpy(), unit_sums(maps[b].double().numpy(), patch, off,
                                                                 (-(-10 // patch), -(-13 // patch))), atol=1e-5)


@pytest.mark.parametrize("patch, regions, fill, order, output", [
    (3, 7, 0.0, "morf", "prob"), (4, 99, "mean", "lerf", "logit"), (3, 12, "black", "lerf", "prob")])
def test_region_perturbation_is_samek_aopc(patch, regions, fill, order, output):
    model = tiny(3, 8, 10)
    x = images(2, 3, 8, 10, 3)
    maps = torch.randn(2, 8, 10, generator=torch.Generator().manual_seed(8))
    t = [2, 1]
    rc = FM.region_perturbation(model, x, t, maps, patch, regions, fill, order, batch=5, output=output)
    want = samek(model, x, t, maps, patch, regions, fill, order, output)
    assert rc.scores.shape == want.shape and rc.order == order
    np.testing.assert_allclose(rc.scores, want, atol=2e-5)
    np.testing.assert_allclose(rc.drops, want[:, :1] - want[:, 1:], atol=4e-5)
    # AOPC = 1/(L+1) sum_{k=0..L} (f(x) - f(x^(k))), the k = 0 term being 0
    np.testing.assert_allclose(rc.aopc, (want[:, :1] - want).mean(1), atol=4e-5)
    assert np.ptp(want) > 0.05


def test_region_perturbation_defaults_and_ties():
    model = tiny(3, 88, 88)  # 11 x 11 = 121 squares of 8 px: more than the default 100 regions
    x = images(1, 3, 88, 88, 4)
    maps = torch.randn(1, 88, 88, generator=torch.Generator().manual_seed(5))
    rc = FM.region_perturbation(model, x, 1, maps)  # defaults: 8 px, 100 regions, fill 0, MoRF, probability
    want = samek(model, x, [1], maps, 8, 100, 0.0, "morf")
    assert rc.scores.shape == (1, 101) and rc.order == "morf"
    np.testing.assert_allclose(rc.scores, want, atol=2e-5)
    assert np.ptp(want) > 0.05
    model = tiny(3, 8, 12)
    x = images(2, 3, 8, 12, 6)
    flat = torch.ones(2, 8, 12)  # every square tied: the order is the seeded permutation
    rc = FM.region_perturbation(model, x, [0, 1], flat, 4, 5, "mean", generator=torch.Generator().manual_seed(3))
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(3)).tolist()
    want = samek(model, x, [0, 1], flat, 4, 5, "mean", "morf", perm=perm)
    np.testing.assert_allclose(rc.scores, want, atol=2e-5)
