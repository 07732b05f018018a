"""reportgen.attribution.occlusion: several classes per image given as uint8 labels (as stored in the CIFAR and MNIST
arrays), against the written-out occlusion loop, on the batched and the incremental path; the occlusion map's
defaults (incremental inference, mid-grey) against the written-out coverage average."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from torch import nn

O = importlib.import_module("reportgen.attribution.occlusion")  # the module, not its function
occlusion_grid = O.occlusion_grid

torch.set_num_threads(1)


def _model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    with torch.no_grad():
        m[-1].weight.mul_(20)  # occluding moves the probabilities visibly
    return m.eval()


def _naive(model, x, targets, window, stride, fill):
    """p_t(x with a window x window square of ``fill`` at every (y0, x0)), one copy at a time: n x K x ny x nx."""
    n, _, h, w = x.shape
    ys = sorted({*range(0, h - window + 1, stride), h - window})
    xs = sorted({*range(0, w - window + 1, stride), w - window})
    out = torch.empty(n, len(targets[0]), len(ys), len(xs), dtype=torch.float64)
    with torch.no_grad():
        for b in range(n):
            for i, y0 in enumerate(ys):
                for j, x0 in enumerate(xs):
                    c = x[b:b + 1].clone()
                    c[:, :, y0:y0 + window, x0:x0 + window] = fill
                    p = torch.softmax(model(c).double(), 1)[0]
                    for k, t in enumerate(targets[b]):
                        out[b, k, i, j] = p[int(t)]
    return out


@pytest.mark.parametrize("incremental", [False, True])
def test_uint8_class_rows_are_class_indices(incremental):
    """A B x K uint8 label array picks classes like int64 indices would (not as a boolean mask, not refused)."""
    m = _model()
    x = torch.rand((2, 3, 9, 8), generator=torch.Generator().manual_seed(1))
    labels = np.array([[4, 1], [0, 3]], dtype=np.uint8)
    want = _naive(m, x, labels.tolist(), 4, 3, 0.5)
    got = occlusion_grid(m, x, labels, 4, 3, 0.5, batch=5, incremental=incremental)
    assert got.shape == (2, 2, 3, 3)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=0)
    assert float(want.amax((2, 3)).sub(want.amin((2, 3))).min()) > 1e-3  # the windows matter: not vacuous


def test_occlusion_map_defaults_to_incremental_inference(monkeypatch):
    """``occlusion`` with its defaults evaluates the copies by incremental inference (one ``occlusion_logits`` run
    per image, as the module documents for a traceable local model) with a mid-grey square, and gives each pixel the
    mean probability over the windows covering it (the unoccluded one where none does)."""
    calls = []
    real = O.occlusion_logits

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(O, "occlusion_logits", counted)
    m = _model()
    x = torch.rand((2, 3, 9, 8), generator=torch.Generator().manual_seed(2))
    heat = O.occlusion(m, x, [2, 4], 3, 4)  # window 3, stride 4: rows 3 and column 3 are never covered
    assert len(calls) == 2
    grid = _naive(m, x, [[2], [4]], 3, 4, 0.5)[:, 0]
    with torch.no_grad():
        p = torch.softmax(m(x).double(), 1)[[0, 1], [2, 4]]
    ys, xs = [0, 4, 6], [0, 4, 5]
    want = torch.empty(2, 9, 8, dtype=torch.float64)
    for b in range(2):
        for r in range(9):
            for c in range(8):
                v = [grid[b, i, j] for i, y0 in enumerate(ys) for j, x0 in enumerate(xs)
                     if y0 <= r < y0 + 3 and x0 <= c < x0 + 3]
                want[b, r, c] = torch.stack(v).mean() if v else p[b]
    torch.testing.assert_close(heat.double(), want, atol=1e-5, rtol=0)
