"""Units, ranks and defaults of reportgen.attribution.faithfulness that the curve / MuFidelity / ROAD tests leave
open (mutation testing, docs/mutation.md): the public helpers called with their defaults, against loops over the
pixels. Small tensors, seeded, fast."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reportgen.attribution import faithfulness as FM

torch.set_num_threads(1)


def test_unit_scores_default_is_one_pixel_per_unit():
    """``unit_scores(maps)`` with no patch: each pixel is its own unit, the map itself in float32."""
    maps = torch.arange(30, dtype=torch.int64).view(1, 5, 6) - 7
    got = FM.unit_scores(maps)
    assert got.shape == (1, 5, 6) and got.dtype == torch.float32
    assert got.flatten().tolist() == [float(v) for v in range(-7, 23)]


def test_subset_correlation_values_default_to_three_channels():
    """``subset_correlation(..., unit="value")`` without ``channels``: a 3 x H x W value grid. A value index ``k``
    is pixel ``k mod HW`` of channel ``k // HW``; the index ``3 HW`` is past the grid and rejected."""
    h, w = 2, 3
    maps = torch.tensor([[[0.5, -1.0, 2.0], [3.0, 0.25, -4.0]]])
    subsets = torch.tensor([[[0, 7], [17, 4], [11, 12]]])  # 1 image x 3 subsets x 2 values, all < 3 HW = 18
    drops = np.array([[0.1, -0.3, 0.7]])
    got = FM.subset_correlation(maps, subsets, drops, 1, "value")
    flat = maps[0].flatten().tolist()
    sums = [[sum(flat[k % (h * w)] for k in s) for s in subsets[0].tolist()]]
    np.testing.assert_allclose(got.sums, sums, atol=1e-6)
    with pytest.raises((RuntimeError, IndexError)):
        FM.subset_correlation(maps, torch.tensor([[[0, 3 * h * w]]]), np.array([[0.2]]), 1, "value")
