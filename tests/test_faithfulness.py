"""Issue 8: each figure computes what its paper computes and each caption says what its numbers support.

Every test here fails on the code before the fix (see the comment on each)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from reportgen import registry
from reportgen.build import run_technique
from reportgen.preprocess import PixelModel, Preprocessing
from reportgen.report import Figure, Grid, Group, Note, Row, Table

from conftest import CLASSES
from test_gradient_techniques import ColourMeans

ROOT = Path(__file__).resolve().parents[1]
IDENTITY = Preprocessing(None, 32, (0.0,) * 3, (1.0,) * 3)


def _notes(sec) -> list[Note]:
    return [b for b in sec.blocks if isinstance(b, Note)]


def _walk(blocks):
    for b in blocks:
        yield b
        if isinstance(b, (Row, Group)):
            yield from _walk(b.blocks)


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
    from reportgen.hooks import capture_outputs

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


# ----- 1. DeepDream dreams on rectified activations; jitter capped; images spread -------------------------
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


# ----- 3. fooling images: epsilon ball, honest text, 8-bit table, spread images ---------------------------
def test_targeted_attack_never_leaves_the_epsilon_ball_and_says_so(make_ctx, image_dir):
    # before: no budget (the demo used 41/255) and "the two images look the same to a person"
    from reportgen.techniques.adversarial import targeted_attack

    pm = PixelModel(ColourMeans(), Preprocessing(None, 16, (0.0,) * 3, (1.0,) * 3)).eval()
    x = torch.full((2, 3, 16, 16), 0.2)
    x[0, 0] = 0.8
    x[1, 2] = 0.6
    for eps in (2 / 255, 8 / 255):
        res = targeted_attack(pm, x, [1, 0], max_steps=60, step=1 / 255, min_prob=0.9, eps=eps)
        assert float((res.images - x).abs().max()) <= eps + 1e-6
    c = make_ctx(ColourMeans(), image_dir, class_names=["red", "green", "blue"], pre=IDENTITY,
                 overrides={"adversarial": {"max_steps": 60, "step_size": 2.0, "epsilon": 2.0}})
    sec = run_technique(c, registry.get("adversarial"), strict=True)
    t = sec.results["targeted"][0]
    assert t["linf_255"] <= 2.0 + 1e-3 and not t["fooled"]
    captions = [b.caption for b in _walk(sec.blocks) if isinstance(b, Figure)]
    assert any("NOT fooled within ε = 2/255" in cap for cap in captions)
    assert "look the same" not in registry.get("adversarial").summary
    table = next(b for b in sec.blocks if isinstance(b, Table))
    assert "changed as 8-bit" in table.columns
    assert all("changed_8bit" in row for row in sec.results["untargeted"])
    assert sec.results["untargeted_against"].startswith("the true label where known")  # "white" is not a class
    assert min(c.config.options("adversarial").epsilons) >= 1.0  # below 1/255 does not survive 8 bits


def test_untargeted_images_are_spread_across_classes(make_ctx, tiny_model, image_dir, monkeypatch):
    # before: the first 16 images of the folder (one class in a class-sorted folder)
    from reportgen.techniques import adversarial as adv

    seen = []
    real = adv.untargeted_attack

    def spy(pm, x, labels, eps, **kw):
        seen.extend(labels.tolist())
        return real(pm, x, labels, eps, **kw)

    monkeypatch.setattr(adv, "untargeted_attack", spy)
    c = make_ctx(tiny_model, image_dir, class_names=CLASSES,
                 overrides={"adversarial": {"attack_images": 4, "epsilons": [2.0], "max_steps": 2}})
    sec = run_technique(c, registry.get("adversarial"), strict=True)
    assert sec.results["untargeted_against"] == "the true label"
    assert set(seen) == {0, 1, 2, 3}  # true labels of four different classes


# ----- 4. GrabCut: colour models from the seeds only, largest component ----------------------------------
def _blob_image(rng, other=(30, 30, 200)):
    img = np.zeros((48, 48, 3), np.uint8)
    img[:] = other
    img += rng.integers(0, 20, img.shape).astype(np.uint8)
    img[14:34, 14:34] = (220, 40, 40)
    sal = np.zeros((48, 48), np.float32)
    sal[18:30, 18:30] = 1.0
    sal += rng.random((48, 48)).astype(np.float32) * 0.01
    return img, sal


def test_grabcut_colour_models_see_only_the_seed_pixels():
    # before: GC_INIT_WITH_MASK fit the GMMs on every pixel (probable labels at the median included)
    import cv2

    from reportgen.techniques.segmentation import seed_color_models, seeds_from_saliency

    img, sal = _blob_image(np.random.default_rng(0))
    seeds = seeds_from_saliency(sal, 0.95, 0.30, 1.0)
    unknown = (seeds != cv2.GC_FGD) & (seeds != cv2.GC_BGD)
    assert unknown.mean() > 0.5  # most pixels are unknown, none is "probable" at the median any more
    bgd, fgd = seed_color_models(img, seeds)
    other = img.copy()
    other[unknown] = np.random.default_rng(5).integers(0, 255, (int(unknown.sum()), 3)).astype(np.uint8)
    bgd2, fgd2 = seed_color_models(other, seeds)
    assert np.array_equal(bgd, bgd2) and np.array_equal(fgd, fgd2)
    # and the foreground model's mean colour is the red of the seeds (GMM weights then means in the 1x65 layout)
    w, means = fgd[0, :5], fgd[0, 5:20].reshape(5, 3)
    mean_bgr = (w[:, None] * means).sum(0) / w.sum()
    assert abs(mean_bgr[2] - 220) < 15 and mean_bgr[0] < 80


def test_grabcut_keeps_the_largest_connected_component():
    from reportgen.techniques.segmentation import grabcut_from_saliency

    img, sal = _blob_image(np.random.default_rng(1))
    img[2:6, 40:46] = (220, 40, 40)  # a small red island far from the salient blob
    fg, _ = grabcut_from_saliency(img, sal)
    assert fg[24, 24] and not fg[3, 42]
    import cv2

    assert cv2.connectedComponents(fg.astype(np.uint8), connectivity=8)[0] == 2  # background + one component
    assert 0.1 < fg.mean() < 0.3  # the 20x20 square of 48x48 = 0.17


def test_segmentation_caption_cites_section_3_1(ctx):
    sec = run_technique(ctx, registry.get("segmentation"), strict=True)
    cap = next(b for b in sec.blocks if isinstance(b, Grid)).caption
    assert "section 3.1" in cap and "seed pixels only" in cap and "largest connected" in cap
    assert "section 6" not in (registry.get("segmentation").fn.__module__ and
                               __import__("reportgen.techniques.segmentation", fromlist=["_"]).__doc__)
