"""reportgen.attribution.occlusion against written-out Zeiler & Fergus occlusion: window positions in closed form,
the occlusion grid one copy at a time (colour baselines, several classes per image, both the batched and the
incremental path), the coverage average pixel by pixel, pass sizes, progress labels and the float32 contract."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from torch import nn

from reportgen.attribution.incremental import IncrementalOccluder

from conftest import make_tiny_cnn

O = importlib.import_module("reportgen.attribution.occlusion")  # the module, not its function
COLOUR = (0.1, 0.7, -0.3)  # a per-channel baseline: a channel mix-up changes the copies


def _model():
    """The tiny CNN with its convolutions x3 and classifier x10: occluding moves p by 0.05-0.2, not 1e-3."""
    m = make_tiny_cnn()
    with torch.no_grad():
        for mod in m.features:
            if isinstance(mod, nn.Conv2d):
                mod.weight.mul_(3)
        m.classifier.weight.mul_(10)
    return m


def _positions(size, window, stride):
    """Written out: every multiple of the stride whose window fits, then one flush with the far edge."""
    w, s = min(window, size), max(stride, 1)
    out = [k * s for k in range(size + 1) if k * s + w <= size]
    return out if out[-1] == size - w else out + [size - w]


def _naive_grid(model, x, targets, window, stride, fill):
    """p_t(x with the window filled at (y0, x0)), one copy at a time: n x K x ny x nx (float64)."""
    n, c, h, w = x.shape
    ys, xs = _positions(h, window, stride), _positions(w, window, stride)
    wy, wx = min(window, h), min(window, w)
    fill = [float(v) for v in np.broadcast_to(np.asarray(fill, dtype=np.float64), (c,))]
    out = torch.empty(n, len(targets[0]), len(ys), len(xs), dtype=torch.float64)
    with torch.no_grad():
        for b in range(n):
            for i, y0 in enumerate(ys):
                for j, x0 in enumerate(xs):
                    copy = x[b:b + 1].clone()
                    for ch in range(c):
                        copy[0, ch, y0:y0 + wy, x0:x0 + wx] = fill[ch]
                    p = torch.softmax(model(copy).double(), 1)[0]
                    for k, t in enumerate(targets[b]):
                        out[b, k, i, j] = p[t]
    return out


def _naive_cover(grid, h, w, window, stride, uncovered):
    """Each pixel's mean over the windows covering it; ``uncovered[b]`` where none does (float64)."""
    g = np.asarray(grid, dtype=np.float64)
    ys, xs = _positions(h, window, stride), _positions(w, window, stride)
    wy, wx = min(window, h), min(window, w)
    out = np.empty((len(g), h, w))
    for b in range(len(g)):
        for r in range(h):
            for col in range(w):
                vals = [g[b, i, j] for i, y0 in enumerate(ys) for j, x0 in enumerate(xs)
                        if y0 <= r < y0 + wy and x0 <= col < x0 + wx]
                out[b, r, col] = np.mean(vals) if vals else uncovered[b]
    return out


def _images(n=2, h=13, w=11, seed=3):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


class Recorder(nn.Module):
    """The tiny CNN, recording the size of every batch it is given."""

    def __init__(self):
        super().__init__()
        self.net = _model()
        self.sizes: list[int] = []

    def forward(self, x):
        self.sizes.append(len(x))
        return self.net(x)


class Progress:
    def __init__(self):
        self.calls: list[tuple[str, int]] = []
        self.items = 0

    def __call__(self, it, desc, total):
        self.calls.append((desc, total))
        for v in it:
            self.items += 1
            yield v


@pytest.fixture()
def spy(monkeypatch):
    """Counts the incremental passes (``occlusion_logits`` calls) and still runs them."""
    calls = []
    real = O.occlusion_logits

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(O, "occlusion_logits", counted)
    return calls


@pytest.mark.parametrize("size, window, stride, want", [
    (5, 2, 1, [0, 1, 2, 3]),    # stride 1: every row
    (10, 2, 4, [0, 4, 8]),      # the last multiple is already flush: nothing appended
    (10, 4, 4, [0, 4, 6]),      # one flush window appended
    (7, 9, 3, [0]),             # a window larger than the image: the whole image, once
    (6, 2, 0, [0, 1, 2, 3, 4]),  # stride 0 counts as 1
    (8, 3, 10, [0, 5]),         # a stride past the image: the first and the flush window
])
def test_window_positions_closed_form(size, window, stride, want):
    assert O.window_positions(size, window, stride) == want == _positions(size, window, stride)


def test_batched_grid_equals_the_written_out_loop_with_a_colour_baseline():
    x = _images()  # 13 x 11: 4 x 3 positions for window 5, stride 3 -> 24 copies
    ref = _naive_grid(_model(), x, [[1], [3]], 5, 3, COLOUR)[:, 0]
    for batch in (23, 8, 5):  # 24 = 23 + 1 (a last pass of one), 3 full passes, 4 full + 1 of four
        m = Recorder()
        got = O.occlusion_grid(m, x, [1, 3], 5, 3, np.array(COLOUR), batch=batch, incremental=False)
        assert got.shape == (2, 4, 3) and got.dtype == torch.float32
        torch.testing.assert_close(got.double(), ref, atol=1e-6, rtol=0)
        # `batch` copies per pass, every copy exactly once, no empty pass
        assert sum(m.sizes) == 24 and max(m.sizes) == min(batch, 24) and min(m.sizes) >= 1
        assert len(m.sizes) == -(-24 // batch)
    assert (ref.amax((1, 2)) - ref.amin((1, 2))).min() > 0.05  # the copies differ: the test is not vacuous


def test_scalar_and_list_baselines_on_the_batched_path():
    m, x = _model(), _images()
    for fill in (0.25, list(COLOUR)):
        ref = _naive_grid(m, x, [[2], [2]], 5, 3, fill)[:, 0]
        got = O.occlusion_grid(m, x, 2, 5, 3, fill, batch=7, incremental=False)  # one class for every image
        torch.testing.assert_close(got.double(), ref, atol=1e-6, rtol=0)


def test_incremental_grid_equals_the_written_out_loop(spy):
    m, x = _model(), _images()
    base = torch.tensor(COLOUR, dtype=torch.float64, requires_grad=True)  # a tensor baseline is detached
    ref = _naive_grid(m, x, [[1], [3]], 5, 3, COLOUR)[:, 0]
    got = O.occlusion_grid(m, x, [1, 3], 5, 3, base, batch=5)
    assert len(spy) == 2  # one incremental run per image
    torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=0)


def test_incremental_grid_one_copy_per_pass():
    """Regression (found by the mutant ``occlusion__mutmut_19``): with one copy per pass (``batch=1``, or after
    halving on CUDA out-of-memory) ``incremental.materialize`` pasted each copy's patch into the shared base
    activations, so every later copy of the image was wrong (p off by up to 0.07 here)."""
    m, x = _model(), _images()
    ref = _naive_grid(m, x, [[1], [3]], 5, 3, COLOUR)[:, 0]
    got = O.occlusion_grid(m, x, [1, 3], 5, 3, COLOUR, batch=1)
    torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("incremental", [False, True])
def test_several_classes_per_image(incremental):
    m, x = _model(), _images()
    tgt = np.array([[1, 3, 0], [2, 0, 2]], dtype=np.int32)
    ref = _naive_grid(m, x, tgt.tolist(), 5, 3, COLOUR)
    got = O.occlusion_grid(m, x, tgt, 5, 3, COLOUR, batch=7, incremental=incremental)
    assert got.shape == (2, 3, 4, 3)
    torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=0)
    single = O.occlusion_grid(m, x, [3, 0], 5, 3, COLOUR, batch=7, incremental=incremental)
    assert single.shape == (2, 4, 3)
    torch.testing.assert_close(single.double(), ref[:, [1, 1]].diagonal(dim1=0, dim2=1).permute(2, 0, 1),
                               atol=1e-5, rtol=0)


def test_target_rows_must_match_the_batch():
    with pytest.raises(ValueError, match=r"^got 3 target rows for a batch of 2$"):
        O.occlusion_grid(_model(), _images(), [[0], [1], [2]], 5, 3, incremental=False)


def test_progress_labels_totals_and_the_default_path():
    m, x = _model(), _images()
    p = Progress()
    inc = O.occlusion_grid(m, x, [1, 3], 5, 3, 0.5, batch=5, progress=p)  # incremental by default
    assert p.calls == [("Occlusion (incremental)", 2)] and p.items == 2
    p = Progress()
    full = O.occlusion_grid(m, x, [1, 3], 5, 3, 0.5, batch=5, incremental=False, progress=p)
    assert p.calls == [("Occlusion", 5)] and p.items == 5  # ceil(24 / 5) passes
    torch.testing.assert_close(inc, full, atol=1e-5, rtol=0)


def test_a_given_occluder_is_used_and_none_is_built(monkeypatch, spy):
    m, x = _model(), _images()
    occ, why = IncrementalOccluder.build(m)
    assert occ is not None, why

    class NoBuild:
        @staticmethod
        def build(model):
            raise AssertionError("an occluder was given: none must be built")

    monkeypatch.setattr(O, "IncrementalOccluder", NoBuild)
    got = O.occlusion_grid(m, x, [1, 3], 5, 3, COLOUR, batch=5, occluder=occ)
    assert len(spy) == 2
    torch.testing.assert_close(got.double(), _naive_grid(m, x, [[1], [3]], 5, 3, COLOUR)[:, 0], atol=1e-5, rtol=0)


def test_default_baseline_is_mid_grey():
    m, x = _model(), _images()
    ref = _naive_grid(m, x, [[1], [3]], 5, 3, 0.5)[:, 0]
    torch.testing.assert_close(O.occlusion_grid(m, x, [1, 3], 5, 3).double(), ref, atol=1e-5, rtol=0)
    with torch.no_grad():
        p = torch.softmax(m(x).double(), 1)[[0, 1], [1, 3]].numpy()
    heat = O.occlusion(m, x, [1, 3], 5, 3)
    np.testing.assert_allclose(heat.numpy(), _naive_cover(ref.numpy(), 13, 11, 5, 3, p), atol=1e-5)


def test_float32_result_under_a_float64_default_dtype():
    m, x = _model(), _images()
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        grid = O.occlusion_grid(m, x, [1, 3], 5, 3, 0.5, batch=7, incremental=False)
    finally:
        torch.set_default_dtype(old)
    assert grid.dtype == torch.float32


@pytest.mark.parametrize("incremental", [False, True])
def test_occlusion_map_equals_the_written_out_coverage(incremental, spy):
    m = _model()
    x = _images(h=12, w=10, seed=5)  # window 3, stride 5: rows 3, 4, 8 and columns 3, 4 are never covered
    grid = _naive_grid(m, x, [[0], [2]], 3, 5, COLOUR)[:, 0].numpy()
    with torch.no_grad():
        p = torch.softmax(m(x).double(), 1)[[0, 1], [0, 2]].numpy()
    want = _naive_cover(grid, 12, 10, 3, 5, p)
    heat = O.occlusion(m, x, [0, 2], 3, 5, COLOUR, 4, incremental)
    assert heat.shape == (2, 12, 10) and heat.dtype == torch.float32
    np.testing.assert_allclose(heat.numpy(), want, atol=1e-5)
    assert len(spy) == (2 if incremental else 0)
    assert np.allclose(heat[:, 3].numpy(), p[:, None], atol=1e-6)  # an uncovered row: the unoccluded p


def test_coverage_average_equals_the_written_out_mean():
    rng = np.random.default_rng(0)
    # 5 x 7, window 3, stride 2: rows (0, 2), columns (0, 2, 4): pixels covered 1, 2 and 4 times
    g = rng.random((2, 2, 3))
    want = _naive_cover(g, 5, 7, 3, 2, [9.0, 9.0])
    for grid in (g, torch.tensor(g, requires_grad=True)):  # numpy or a tensor that needs grad
        got = O.coverage_average(grid, (5, 7), 3, 2)
        assert got.dtype == torch.float32 and got.shape == (2, 5, 7)
        np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
    assert got[0, 0, 0] == np.float32(g[0, 0, 0])  # covered once: that window's value


def test_coverage_average_uncovered_pixels():
    g = np.array([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]])
    # 6 x 5, window 2, stride 4: rows (0, 4), columns (0, 3): rows 2, 3 and column 2 uncovered
    default = O.coverage_average(g, (6, 5), 2, 4)
    np.testing.assert_allclose(default.numpy(), _naive_cover(g, 6, 5, 2, 4, [0.0, 0.0]))
    per_image = O.coverage_average(torch.tensor(g), (6, 5), 2, 4, torch.tensor([0.25, -1.5]))
    np.testing.assert_allclose(per_image.numpy(), _naive_cover(g, 6, 5, 2, 4, [0.25, -1.5]))
    assert per_image[1, 2, 2] == -1.5 and per_image[1, 0, 4] == 6.0
    # a per-image fill that needs grad (a score of the model's output) is read, not refused
    graded = O.coverage_average(torch.tensor(g), (6, 5), 2, 4, torch.tensor([0.25, -1.5], requires_grad=True))
    np.testing.assert_allclose(graded.numpy(), per_image.numpy())
