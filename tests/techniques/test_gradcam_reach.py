"""Grad-CAM's automatic layer is one whose output reaches the class score (issue 31.14: timm's PiT).

PiT's last stage returns a patch map and a class token, and the head reads only the class token: the last block
with a spatial output is never used by the logits, and Grad-CAM there failed the section ("the differentiated
Tensor appears to not have been used in the graph"). The tiny models below plant that structure.
"""

from __future__ import annotations

import torch
from torch import nn

from reportgen import registry
from reportgen.attribution import cam as CAM
from reportgen.build import run_technique
from reportgen.inspection.hooks import count_hooks
from reportgen.techniques._faith_maps import method_functions
from reportgen.techniques._setlevel import map_layer

from conftest import CLASSES


class TokenStage(nn.Module):
    """Returns (patch map, class token) like a PiT stage; the class token is pooled from the stage's *input*."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.tok = nn.Linear(c, c)

    def forward(self, x):
        return self.conv(x), self.tok(x.mean((2, 3)))


class PiTLike(nn.Module):
    """stem conv -> stage1 (spatial, read) -> stage2 (patch map unused) ; head reads stage2's class token."""

    def __init__(self, num_classes: int = 4, c: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.stage1 = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))
        self.stage2 = TokenStage(c)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x):
        _patches, token = self.stage2(self.stage1(self.stem(x)))
        return self.head(token)


class NothingReaches(nn.Module):
    """A convolutional branch whose output nothing reads; the logits come from the input's channel means."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.branch = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
        self.head = nn.Linear(3, num_classes)

    def forward(self, x):
        self.branch(x)
        return self.head(x.mean((2, 3)))


def _model(cls):
    torch.manual_seed(0)
    return cls().eval()


def test_pit_like_gradcam_reads_the_last_layer_that_reaches_the_score(make_ctx, image_dir):
    model = _model(PiTLike)
    ctx = make_ctx(model, image_dir, class_names=CLASSES)
    assert ctx.probe().default_block() == "stage2"  # the block whose patch map nothing reads
    sec = run_technique(ctx, registry.get("gradcam"))
    assert sec.error is None, sec.error
    assert sec.results["layer"] == "stage1"
    assert "stage2" in sec.results["layer_why"] and "does not reach the class score" in sec.results["layer_why"]
    assert len(sec.results["zero_maps"]) < len(sec.results["images"])  # stage1's maps carry evidence
    # the sections that share the layer take the same one
    assert map_layer(ctx, None) == "stage1"
    fns, _ = method_functions(ctx)
    assert fns["Grad-CAM"].spec.options[0] == "stage1"
    assert CAM.last_spatial_block(model, ctx.to_device(ctx.images.batch([0]))) == "stage1"
    assert count_hooks(model) == 0


def test_a_named_layer_the_score_does_not_reach_is_unsupported_with_the_reason(make_ctx, image_dir):
    model = _model(PiTLike)
    ctx = make_ctx(model, image_dir, class_names=CLASSES, overrides={"gradcam": {"layer": "stage2"}})
    sec = run_technique(ctx, registry.get("gradcam"))
    assert sec.error is None, sec.error
    why = sec.results["unsupported"]
    assert "stage2" in why and "does not reach" in why and "the automatic choice is stage1" in why
    assert "Grad-CAM" not in method_functions(ctx)[0]  # faithfulness scores no Grad-CAM rows at that layer


def test_no_layer_reaching_the_score_makes_gradcam_unsupported_and_sanity_runs_without_it(make_ctx, image_dir):
    model = _model(NothingReaches)
    ctx = make_ctx(model, image_dir, class_names=CLASSES)
    assert ctx.probe().default_block() == "branch"
    sec = run_technique(ctx, registry.get("gradcam"))
    assert sec.error is None, sec.error
    assert "No layer with a spatial output reaches the class score" in sec.results["unsupported"]
    for sid in ("mistakes", "shortcuts"):
        assert "reaches the class score" in run_technique(ctx, registry.get(sid)).results["unsupported"]
    san = run_technique(ctx, registry.get("sanity"))
    assert san.error is None, san.error
    assert "Grad-CAM" not in san.results["checks"] and "gradient" in san.results["checks"]


def test_gradient_reach_tells_unused_from_zero_from_reached():
    """Written out: stage2's patch map is never used (None); stage1 feeds the token (> 0)."""
    model = _model(PiTLike)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    r = CAM.gradient_reach(model, {"stage1": model.stage1, "stage2": model.stage2}, x)
    assert r["stage2"] is None and r["stage1"] is not None and r["stage1"] > 0
