"""Units, ranks and defaults of reportgen.attribution.faithfulness that the curve / MuFidelity / ROAD tests leave
open (mutation testing, docs/mutation.md): the public helpers called with their defaults, against loops over the
pixels. Small tensors, seeded, fast."""

from __future__ import annotations

import torch

from reportgen.attribution import faithfulness as FM

torch.set_num_threads(1)


def test_unit_scores_default_is_one_pixel_per_unit():
    """``unit_scores(maps)`` with no patch: each pixel is its own unit, the map itself in float32."""
    maps = torch.arange(30, dtype=torch.int64).view(1, 5, 6) - 7
    got = FM.unit_scores(maps)
    assert got.shape == (1, 5, 6) and got.dtype == torch.float32
    assert got.flatten().tolist() == [float(v) for v in range(-7, 23)]
