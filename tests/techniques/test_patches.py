"""The patches technique (reportgen/techniques/patches.py): its own tests."""

from __future__ import annotations

import numpy as np
import torch
from conftest import CLASSES
from torch import nn

from reportgen import registry
from reportgen.build import run_technique
from reportgen.report import Group


def test_top_patch_is_the_crop_at_the_argmax(make_ctx, tiny_model, image_dir):
    from reportgen.inspection.hooks import capture_outputs
    from reportgen.inspection.receptive import crop_field, gradient_receptive_field

    c = make_ctx(tiny_model, image_dir, class_names=CLASSES,
                 overrides={"patches": {"layer": "features.3", "channels": [1, 5], "interior": False}})
    sec = run_technique(c, registry.get("patches"), strict=True)
    x = c.images.batch(list(range(len(c.images))))
    with torch.inference_mode(), capture_outputs({"l": c.layer("features.3")}) as out:
        c.pixel_model(x)
    acts = out["l"].numpy()
    rf = gradient_receptive_field(tiny_model, "features.3", 32)
    grids = [b.blocks[0] for b in sec.blocks if isinstance(b, Group)]
    for ch, grid in zip([1, 5], grids):
        i, y, xx = np.unravel_index(np.argmax(acts[:, ch]), acts[:, ch].shape)
        expect = crop_field(c.images.array(int(i)), rf, int(y), int(xx), (128, 128, 128))
        assert np.array_equal(grid.items[0].image.array, expect)
        assert grid.items[0].image.array.shape[:2] == rf.size


def test_patches_auto_layer_respects_field_fraction(ctx):
    from reportgen.techniques.patches import auto_layer, field_of

    name = auto_layer(ctx, 0.5)
    assert name == "features.3"  # fields 3, 8, 18 px on a 32 px input
    assert max(field_of(ctx, name).size) <= 16


class _Saturating(nn.Module):
    """conv-BN-ReLU6 blocks with a large BN gain: most positive responses hit the ReLU6 ceiling of 6."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6())
        with torch.no_grad():
            for bn in (self.features[1], self.features[5]):
                bn.weight.fill_(50.0)
        self.classifier = nn.Linear(8, 4)

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def test_patches_rank_before_a_clipping_activation_and_name_ties(make_ctx, image_dir):
    """ReLU6 ties the strongest responses at 6: the automatic choice ranks on its input (the BN output, same
    order below the clip), and a clipping layer chosen by hand gets a warning that its order is arbitrary."""
    model = _Saturating().eval()
    c = make_ctx(model, image_dir, class_names=CLASSES, overrides={"patches": {"num_channels": 4, "k": 4}})
    sec = run_technique(c, registry.get("patches"), strict=True)
    assert sec.results["layer"] == "features.5" and sec.results["layer_type"] == "BatchNorm2d"
    assert "ReLU6 features.6" in " ".join(getattr(b, "text", "") for b in sec.blocks)
    assert sec.results["tied_channels"] == []
    peaks = [ch["peak"] for ch in sec.results["channels"]]
    assert max(peaks) > 6 and len(set(peaks)) == len(peaks)  # beyond the clip, and the channels are ordered

    c = make_ctx(model, image_dir, class_names=CLASSES,
                 overrides={"patches": {"layer": "features.6", "num_channels": 4, "k": 4}})
    sec = run_technique(c, registry.get("patches"), strict=True)
    assert sec.results["tied_channels"] and all(ch["peak"] == 6.0 for ch in sec.results["channels"])
    warn = [b for b in sec.blocks if getattr(b, "kind", "") == "warning"]
    assert warn and "tie at the channel's largest value" in warn[0].text
