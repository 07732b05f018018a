"""Issue 8: each figure computes what its paper computes and each caption says what its numbers support.

Every test here fails on the code before the fix (see the comment on each). The tests of one technique moved to
``tests/techniques/test_<id>.py``; what stays here spans techniques."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from reportgen import registry
from reportgen.build import run_technique


ROOT = Path(__file__).resolve().parents[2]


# ----- 2. captured activations are not rewritten by an in-place ReLU --------------------------------------
class VGGish(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(inplace=True))
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


def test_capture_outputs_keeps_negative_preactivations_before_inplace_relu():
    # before: both convolutions came back rectified by the following ReLU(inplace=True)
    from reportgen.inspection.hooks import capture_outputs

    m = VGGish().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    ref0 = m.features[0](x)
    ref2 = m.features[2](torch.relu(ref0))
    with torch.no_grad(), capture_outputs({"c0": m.features[0], "c2": m.features[2]}) as out:
        m(x)
    assert (out["c0"] < 0).any() and (out["c2"] < 0).any()
    assert torch.allclose(out["c0"], ref0.detach(), atol=1e-6) and torch.allclose(out["c2"], ref2.detach(), atol=1e-6)
    # with the graph kept, the clone still carries the gradient back to the input
    xr = x.clone().requires_grad_(True)
    with capture_outputs({"c0": m.features[0]}, detach=False) as out:
        m(xr)
    (g,) = torch.autograd.grad(out["c0"].sum(), xr)
    assert g.abs().sum() > 0


# ----- 6. guided backprop and patches rank post-activation units ------------------------------------------
def test_guided_backprop_and_patches_rank_post_activation_units(ctx):
    # before: features.6 (the raw Conv2d) for guided backprop; patches picked a Conv2d too
    gb = run_technique(ctx, registry.get("guided_backprop"), strict=True)
    assert gb.results["layer"] == "features.7"
    assert all(u["activation"] > 0 for im in gb.results["images"] for u in im["units"])
    pt = run_technique(ctx, registry.get("patches"), strict=True)
    assert pt.results["layer_type"] == "ReLU"


# ----- 9. TSNE keyword ------------------------------------------------------------------------------------


def test_tsne_iteration_keyword_matches_installed_sklearn():
    import inspect

    from sklearn.manifold import TSNE

    from reportgen.techniques._layout import tsne_iter_keyword

    assert tsne_iter_keyword() in inspect.signature(TSNE.__init__).parameters


# ----- machine-readable results -------------------------------------------------------------------------


def test_results_doc_is_current():
    from reportgen.results_schema import results_markdown

    doc = ROOT / "docs" / "results.md"
    assert doc.read_text(encoding="utf-8") == results_markdown(), (
        "docs/results.md is stale: run `python -m reportgen.results_schema > docs/results.md`")


@pytest.mark.shared
@pytest.mark.slow
def test_mobilenet_v2_dreams_on_relu6_and_attacks_stay_in_budget(shared_dir, tmp_path):
    """On the real MobileNetV2 the default dream layers were linear 1x1 projections before the fix."""
    from reportgen.build import build_report

    spec = f"{shared_dir / 'models' / 'mobilenet_v2_imagenet' / 'build.py'}:build"
    res = build_report(spec, shared_dir / "images" / "photos", tmp_path / "rep", preset="minimal",
                       only=["deepdream", "adversarial"], strict=True, resize=256, input_size=224,
                       mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), device="cpu")
    assert res.ok
    data = {s["id"]: s["results"] for s in json.loads((tmp_path / "rep" / "report.json").read_text())["sections"]}
    assert not any(data["deepdream"]["relu_applied"])
    assert all(name.endswith(".2") for name in data["deepdream"]["objective_layers"])  # ConvBNReLU6's ReLU6
    eps = data["adversarial"]["epsilon_255"]
    assert all(t["linf_255"] <= eps + 1e-3 for t in data["adversarial"]["targeted"])
