"""reportgen.attribution.occlusion: several classes per image given as uint8 labels (as stored in the CIFAR and MNIST
arrays), against the written-out occlusion loop, on the batched and the incremental path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from reportgen.attribution.occlusion import occlusion_grid

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
