"""The deepdream technique (reportgen/techniques/deepdream.py): its own tests."""

from __future__ import annotations

import torch

from reportgen.inspection.hooks import count_hooks
from reportgen.preprocess import PixelModel, Preprocessing


def test_deepdream_octaves_improve_and_are_deterministic(tiny_model):
    from reportgen.techniques.deepdream import default_layers, dream

    pm = PixelModel(tiny_model, Preprocessing(None, 32, (0.5,) * 3, (0.25,) * 3)).eval()
    names = default_layers(tiny_model)
    assert 2 <= len(names) <= 3 and all(n.startswith("features.") for n in names)
    img = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))

    def go():
        return dream(pm, names, img, octaves=2, steps=4, lr=0.02, jitter=2, generator=torch.Generator().manual_seed(5),
                     layer_root=tiny_model)

    out, results = go()
    assert out.shape == (len(names), 3, 32, 32) and out.min() >= 0 and out.max() <= 1
    assert len(results) == 2 and results[0].images.shape[-1] < 32
    for r in results:
        assert (r.history[-1] > r.history[0]).all()
    out2, _ = go()
    assert torch.equal(out, out2)
    assert count_hooks(tiny_model) == 0
