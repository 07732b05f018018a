"""Every backbone family, first-class: a minimal report with no failed section and no layer-level section on a
stem or patch embedding (issue 18).

The default suite runs small transformers (torchvision ViT and Swin built small, timm DeiT, a Hugging Face ViT) on
the sections that used to fail or inspect the patch embedding; ``@pytest.mark.slow`` runs the smallest variant of
every classification family in ``torchvision.models`` at its own input size through the whole minimal preset.
"""

from __future__ import annotations

import pytest
import torch
from conftest import CLASSES, write_image_folder
from torchvision import models as tvm

from reportgen.build import build_report

LAYER_SECTIONS = ("activations", "patches", "gradcam", "guided_backprop", "sanity")
#: sections that feed other input sizes (fixed-size and minimum-size models) or pick layers themselves
FAST_ONLY = ["activations", "patches", "gradcam", "class_visualization", "deepdream"]


def _stem_names(model, size: int) -> set[str]:
    """Names the layer-level sections must never use: the first convolution and the modules around it."""
    from reportgen.inspection.probe import trace_layouts

    return trace_layouts(model.eval(), torch.rand(1, 3, size, size)).stem()


def _tiny(kind: str):
    torch.manual_seed(0)
    if kind == "tv_vit":
        return tvm.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                                     mlp_dim=32, num_classes=4), "conv_proj"
    if kind == "tv_swin":
        return tvm.SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 1],
                                   window_size=[2, 2], num_classes=4), "features.0"
    if kind == "timm_deit":
        timm = pytest.importorskip("timm")
        return timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=4, img_size=32,
                                 patch_size=8, depth=2, embed_dim=16, num_heads=2), "patch_embed"
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTConfig(image_size=32, patch_size=8, num_hidden_layers=2, num_attention_heads=2,
                                 hidden_size=16, intermediate_size=32, num_labels=4)
    return transformers.ViTForImageClassification(cfg), "vit.embeddings"


def _sections(kind: str) -> list[str]:
    if kind == "tv_swin":  # its gradient receptive field is the slow part of patches; the layer choice is shared
        return ["activations", "gradcam", "class_visualization", "deepdream"]
    return FAST_ONLY + (["sanity"] if kind == "hf_vit" else [])


def _check(res, stems: set[str]) -> None:
    failed = {s.id: (s.error or "")[:200] for s in res.report.sections if s.error}
    assert not failed, failed
    for s in res.report.sections:
        layer = s.results.get("layer") if s.id in LAYER_SECTIONS else None
        if layer:
            assert layer not in stems, (s.id, layer)


@pytest.mark.parametrize("kind", ["tv_vit", "tv_swin", "timm_deit", "hf_vit"])
def test_small_transformers_get_every_section_on_a_spatial_block(kind, tmp_path):
    model, stem = _tiny(kind)
    stems = _stem_names(model, 32)
    assert stem in stems
    imgs = write_image_folder(tmp_path / "imgs", per_class=1, size=32)
    res = build_report(model, imgs, tmp_path / "out", labels=CLASSES, preset="minimal", resize=None, input_size=32,
                       device="cpu", only=_sections(kind), max_images=2,
                       use_cache=False, set_options=["class_visualization.steps=4", "deepdream.steps=2",
                                                      "deepdream.octaves=2"])
    _check(res, stems)
    by_id = {s.id: s for s in res.report.sections}
    if kind in ("tv_vit", "timm_deit", "hf_vit"):  # fixed 32 px: the optimisation fed the model its size
        assert by_id["gradcam"].results["layer_cells"] == [4, 4]
        assert by_id["patches"].results["receptive_field"]["method"] == "token patch"
        # the optimisation ran at its own size and says so: the model's only size, and each change made
        rs = by_id["class_visualization"].results["input_resized"]
        assert rs["accepts"] == "only 32x32 px inputs" and all(p.endswith("-> 32x32") for p in rs["resized"])
        assert "resized" in " ".join(b.text for b in by_id["class_visualization"].blocks if hasattr(b, "kind"))
        assert "input_resized" not in by_id["gradcam"].results  # fed at the model's size: nothing to say


def _smallest_variants() -> list[str]:
    """The smallest variant of each classification family (by parameter count of the builder's default)."""
    return ["alexnet", "convnext_tiny", "densenet121", "efficientnet_b0", "efficientnet_v2_s", "googlenet",
            "inception_v3", "maxvit_t", "mnasnet0_5", "mobilenet_v2", "mobilenet_v3_small", "regnet_y_400mf",
            "resnet18", "resnext50_32x4d", "shufflenet_v2_x0_5", "squeezenet1_0", "swin_t", "swin_v2_t", "vgg11",
            "vit_b_16", "wide_resnet50_2"]


@pytest.mark.slow
@pytest.mark.parametrize("name", _smallest_variants())
def test_every_torchvision_family_builds_a_minimal_report(name, tmp_path):
    size = 299 if name == "inception_v3" else 224
    torch.manual_seed(0)
    kw = {"init_weights": False} if name in ("inception_v3", "googlenet") else {}
    model = tvm.get_model(name, weights=None, num_classes=4, **kw)
    stems = _stem_names(model, size)
    imgs = write_image_folder(tmp_path / "imgs", per_class=1, size=size)
    res = build_report(model, imgs, tmp_path / "out", labels=CLASSES, preset="minimal", resize=None,
                       input_size=size, device="cpu", max_images=2, use_cache=False)
    _check(res, stems)
