"""The deepdream technique (reportgen/techniques/deepdream.py): its own tests."""

from __future__ import annotations

import json

import torch
from conftest import CLASSES
from torch import nn

from reportgen import registry
from reportgen.build import run_technique
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


def test_deepdream_objective_layer_is_an_activation(make_ctx, tiny_model, image_dir):
    # before: the objective read raw Conv2d outputs
    from reportgen.techniques.deepdream import rectified_layer

    c = make_ctx(tiny_model, image_dir, class_names=CLASSES, overrides={"deepdream": {"max_images": 4}})
    sec = run_technique(c, registry.get("deepdream"), strict=True)
    r = sec.results
    for name in r["objective_layers"]:
        assert isinstance(c.layer(name), nn.ReLU)
    assert not any(r["relu_applied"])
    assert r["jitter_px"] <= round(0.07 * 32)  # 16 px on a 32 px image before
    classes = {d["image"].split("/")[0] for d in r["dreams"]}
    assert len(classes) == 4  # one image per class, not the first folder
    assert "rectified" in json.dumps([kv.pairs for kv in sec.blocks if hasattr(kv, "pairs")])
    # a convolution without a following activation is dreamed through relu(a)
    lin = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1)).eval()
    assert rectified_layer(lin, "2") == ("2", True, rectified_layer(lin, "2")[2])
    assert "relu(2)" in rectified_layer(lin, "2")[2]


def test_rectified_objective_ignores_negative_preactivations():
    # 0.5||a||^2 on a raw conv rewards pushing negative responses further down; relu(a) does not
    from reportgen.techniques.deepdream import rectified_l2

    a = torch.tensor([[-3.0, 2.0]], requires_grad=True)
    v = rectified_l2("l", True)({"l": a}, None)
    (g,) = torch.autograd.grad(v.sum(), a)
    assert g.tolist() == [[0.0, 2.0]]
