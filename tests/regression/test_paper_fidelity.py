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
from conftest import ColourMeans

ROOT = Path(__file__).resolve().parents[2]
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
def test_targeted_attack_never_leaves_the_epsilon_ball_and_says_so(make_ctx, image_dir, tmp_path):
    # before: no budget (the demo used 41/255) and "the two images look the same to a person"
    from reportgen.techniques.adversarial import targeted_attack

    pm = PixelModel(ColourMeans(), Preprocessing(None, 16, (0.0,) * 3, (1.0,) * 3)).eval()
    x = torch.full((2, 3, 16, 16), 0.2)
    x[0, 0] = 0.8
    x[1, 2] = 0.6
    for eps in (2 / 255, 8 / 255):
        res = targeted_attack(pm, x, [1, 0], max_steps=60, step=1 / 255, min_prob=0.9, eps=eps)
        assert float((res.images - x).abs().max()) <= eps + 1e-6
    import shutil

    rgb = tmp_path / "rgb"  # the three classes the model knows (a white image is a near-tie, fooled at 1/255)
    for name in ("red", "green", "blue"):
        shutil.copytree(image_dir / name, rgb / name)
    c = make_ctx(ColourMeans(), rgb, class_names=["red", "green", "blue"], pre=IDENTITY,
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
    assert sec.results["untargeted_against"] == "the true label"
    c = make_ctx(ColourMeans(), image_dir, class_names=["red", "green", "blue"], pre=IDENTITY,
                 overrides={"adversarial": {"max_steps": 4}})
    sec = run_technique(c, registry.get("adversarial"), strict=True)
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


# ----- 5. class visualisation: reach warnings, credits, optimiser and regularisers as run -----------------
def test_class_visualization_warns_when_the_class_is_not_reached(make_ctx, tiny_model, image_dir):
    # before: "shows what the network has learned" under every image, reached or not
    c = make_ctx(tiny_model, image_dir, class_names=CLASSES, general={"classes": [3, 1]})
    sec = run_technique(c, registry.get("class_visualization"), strict=True)
    rows = sec.results["classes"]
    unreached = [r["class"] for r in rows if not r["regularised"]["reached"]]
    assert unreached  # an untrained 4-class model never gets p >= 0.5 in 12 steps
    warn = [n.text for n in _notes(sec) if n.kind == "warning" and "not reached" in n.text]
    assert warn and all(name in " ".join(warn) for name in unreached)
    items = next(b for b in _walk(sec.blocks) if isinstance(b, Grid)).items
    assert any(it.sublabel.endswith(": not reached") and it.tone == "bad" for it in items)
    for r in rows:  # rank/p in results are those of the final images
        for v in ("L2 only", "regularised"):
            assert r[v]["reached"] == (r[v]["rank"] == 1 and r[v]["p"] >= 0.5)


def test_class_visualization_reaches_an_easy_class_and_credits_the_right_papers(make_ctx, image_dir):
    c = make_ctx(ColourMeans(), image_dir, class_names=["red", "green", "blue"], pre=IDENTITY,
                 general={"classes": [0]}, overrides={"class_visualization": {"steps": 30}})
    sec = run_technique(c, registry.get("class_visualization"), strict=True)
    row = sec.results["classes"][0]
    assert row["regularised"]["rank"] == 1 and row["regularised"]["reached"]
    assert not any("not reached" in n.text for n in _notes(sec))
    info = registry.get("class_visualization")
    assert {r.short() for r in info.references} >= {"Mordvintsev et al. (2015)", "Olah et al. (2017)"}
    settings = dict(next(b for b in sec.blocks if hasattr(b, "pairs")).pairs)
    assert "Adam" in settings["optimiser"]
    reg = settings["regularised variant"]
    assert "L2 decay" in reg and "Yosinski" in reg and "DeepDream" in reg
    assert reg.index("Yosinski") < reg.index("L2 decay") < reg.index("DeepDream") < reg.index("jitter")


# ----- 6. guided backprop and patches rank post-activation units ------------------------------------------
def test_guided_backprop_and_patches_rank_post_activation_units(ctx):
    # before: features.6 (the raw Conv2d) for guided backprop; patches picked a Conv2d too
    gb = run_technique(ctx, registry.get("guided_backprop"), strict=True)
    assert gb.results["layer"] == "features.7"
    assert all(u["activation"] > 0 for im in gb.results["images"] for u in im["units"])
    pt = run_technique(ctx, registry.get("patches"), strict=True)
    assert pt.results["layer_type"] == "ReLU"


def test_guided_backprop_output_is_the_guided_gradient(make_ctx, image_dir):
    # behavioural: for ColourMeans the predicted class's guided gradient is positive in its own colour channel
    # and exactly zero in the others
    c = make_ctx(ColourMeans(), image_dir, class_names=["red", "green", "blue"], pre=IDENTITY,
                 overrides={"guided_backprop": {"max_images": 1, "units": 1}})
    sec = run_technique(c, registry.get("guided_backprop"), strict=True)
    pred = sec.results["images"][0]["predicted"]
    k = ["red", "green", "blue"].index(pred)
    grid = next(b for b in _walk(sec.blocks) if isinstance(b, Grid))
    guided_class = grid.items[-1].image.array.astype(int)  # last row = class score, last column = guided
    assert "guided" in grid.items[-1].label
    assert guided_class[..., k].mean() > 150
    for other in {0, 1, 2} - {k}:
        assert np.abs(guided_class[..., other] - 128).max() <= 1


# ----- 7. activations the patcher cannot reach, functional max-pooling ------------------------------------
class Functional(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.c2, self.kind = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), kind
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = F.relu(self.c1(x))
        x = self.c2(x)
        x = {"gelu": F.gelu, "silu": F.silu, "clamp": lambda t: torch.clamp(t, min=0)}.get(self.kind, F.relu)(x)
        x = F.max_pool2d(x, 2)
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("kind,label", [("gelu", "gelu"), ("silu", "silu"), ("clamp", "clamp(min=0)")])
def test_unreached_activations_are_reported(kind, label):
    # before: the note listed only what was patched
    from reportgen.attribution.relu_rules import gradient_rule

    m = Functional(kind).eval()
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    with gradient_rule(m, "guided") as rep:
        m(x).sum().backward()
    assert sum(rep.unreached.values()) == 1 and label in next(iter(rep.unreached))
    assert "1 activation call was not reached" in rep.describe() and "plain gradient" in rep.describe()
    assert rep.max_pool_calls == 1  # F.max_pool2d, no nn.MaxPool2d module


def test_import_bound_relu_gets_the_rule():
    # `from torch.nn.functional import relu` is dispatched through the watch to the patched F.relu
    from torch.nn.functional import relu as bound_relu

    from reportgen.attribution.relu_rules import gradient_rule

    class Bound(nn.Module):
        def __init__(self, module_relu: bool):
            super().__init__()
            torch.manual_seed(0)
            self.c = nn.Conv2d(3, 3, 3, padding=1)
            self.act = nn.ReLU() if module_relu else bound_relu

        def forward(self, x):
            return self.act(self.c(x)).sum((2, 3))

    x = torch.randn(1, 3, 6, 6)
    grads = []
    for module_relu in (False, True):
        m = Bound(module_relu).eval()
        xr = x.clone().requires_grad_(True)
        with gradient_rule(m, "guided") as rep:
            y = m(xr)
            (g,) = torch.autograd.grad(y[0, 0] - y[0, 1], xr)
        grads.append(g)
        if not module_relu:
            assert rep.functional_calls["F.relu"] == 1 and not rep.unreached
    assert torch.allclose(grads[0], grads[1], atol=1e-6)  # the same rule as an nn.ReLU module gets


def test_guided_backprop_sees_functional_max_pool_and_warns_about_gelu(make_ctx, image_dir):
    # before: "no max-pooling, so deconvnet is image-independent" although F.max_pool2d ran
    c = make_ctx(Functional("gelu").eval(), image_dir, class_names=["red", "green", "blue"], pre=IDENTITY,
                 overrides={"guided_backprop": {"layer": "c2"}})
    sec = run_technique(c, registry.get("guided_backprop"), strict=True)
    assert sec.results["max_pool_calls"] >= 1
    assert not any("no max-pooling" in n.text for n in _notes(sec))
    assert sec.results["unreached_activations"] == 1
    assert any(n.kind == "warning" and "not reached" in n.text for n in _notes(sec))


# ----- 8. neighbours without labels; occlusion's fill and diverging scale ---------------------------------
def test_neighbors_without_labels_hides_the_circular_table(make_ctx, tiny_model, tmp_path):
    # before: agreement with the model's own predictions was shown as evidence
    rng = np.random.default_rng(0)
    for k in range(8):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / f"img_{k}.png")
    c = make_ctx(tiny_model, tmp_path, class_names=CLASSES)
    sec = run_technique(c, registry.get("neighbors"), strict=True)
    assert not any(isinstance(b, Table) for b in _walk(sec.blocks))
    assert any("circular" in n.text for n in _notes(sec))
    assert sec.results["feature_agreement"] is None and sec.results["labelled_images"] == 0
    labels = [it.label for b in _walk(sec.blocks) if isinstance(b, Grid) for it in b.items]
    assert labels and all(lab.endswith("(predicted)") for lab in labels)


def test_neighbors_with_labels_marks_labels(ctx):
    sec = run_technique(ctx, registry.get("neighbors"), strict=True)
    labels = [it.label for b in _walk(sec.blocks) if isinstance(b, Grid) for it in b.items]
    assert all(lab.endswith("(label)") for lab in labels)
    assert sec.results["feature_agreement"] is not None


def test_occlusion_names_its_fill_and_uses_a_diverging_scale(ctx):
    # before: "a grey square" with a mean-colour fill; a rise in p was painted like "no effect"
    from reportgen.techniques.occlusion import change_overlay

    assert "grey square" not in registry.get("occlusion").summary
    sec = run_technique(ctx, registry.get("occlusion"), strict=True)
    cap = next(b for b in sec.blocks if isinstance(b, Grid)).caption
    assert "mean colour" in cap and sec.results["fill"] == "mean"
    assert np.allclose(sec.results["fill_rgb"], ctx.features().mean_rgb, atol=1e-3)
    img = np.full((4, 6, 3), 128, np.uint8)
    heat = np.array([[0.2] * 2 + [0.5] * 2 + [0.8] * 2] * 4, np.float32)  # base 0.5: drop | none | rise
    out = change_overlay(img, 0.5, heat).astype(int)
    drop, none, rise = out[0, 0], out[0, 2], out[0, 4]
    assert drop[0] > drop[2] + 25 and rise[2] > rise[0] + 25
    assert abs(none[0] - none[2]) < 10 and none.min() > 150  # near white blended: "no effect" is neutral


# ----- 9. filters: known weights, global scale, dead filters; TSNE keyword --------------------------------
def test_filter_of_known_weights_renders_to_known_pixels(make_ctx, image_dir):
    from conftest import make_tiny_cnn

    m = make_tiny_cnn()
    with torch.no_grad():
        w = m.features[0].weight
        w[0].zero_()
        w[0, 0, 0, 0] = 1.0  # red, top-left
        w[0, 2, 2, 2] = -1.0  # blue, bottom-right
        w[1].fill_(0.01)  # a nearly dead filter
    tiles = {}
    for scale in ("filter", "global"):
        c = make_ctx(m, image_dir, class_names=CLASSES, overrides={"filters": {"scale": scale}})
        sec = run_technique(c, registry.get("filters"), strict=True)
        grid = next(b for b in sec.blocks if isinstance(b, Grid))
        tiles[scale] = [it.image.array.astype(int) for it in grid.items]
        assert sec.results["dead_filters"] == [1]
        assert "(dead)" in grid.items[1].label
    f0 = tiles["filter"][0]
    assert tuple(f0[0, 0]) == (255, 128, 128) or tuple(f0[0, 0]) == (255, 127, 127)
    assert f0[2, 2, 2] == 0 and abs(f0[1, 1] - 127.5).max() <= 1
    # per-filter min/max stretches the dead filter; the global scale shows it flat grey
    assert np.abs(tiles["global"][1] - 128).max() <= 2
    assert np.array_equal(tiles["global"][0], f0)  # its max |w| is the layer's: the same pixels


def test_tsne_iteration_keyword_matches_installed_sklearn():
    import inspect

    from sklearn.manifold import TSNE

    from reportgen.techniques._layout import tsne_iter_keyword

    assert tsne_iter_keyword() in inspect.signature(TSNE.__init__).parameters


# ----- behavioural tests replacing structure-only ones ----------------------------------------------------
class Detector(nn.Module):
    """Channel 0 sums brightness in a 5x5 window; channel 1 its negation (dead after the ReLU)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 5, padding=2, bias=False)
        self.act = nn.ReLU()
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight[0].fill_(1.0)
            self.conv.weight[1].fill_(-1.0)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


def test_activation_map_peaks_where_the_pattern_is(make_ctx, tmp_path):
    img = np.zeros((32, 32, 3), np.uint8)
    img[4:10, 20:26] = 255
    Image.fromarray(img).save(tmp_path / "a.png")
    c = make_ctx(Detector().eval(), tmp_path, class_names=["x", "y"], pre=IDENTITY,
                 overrides={"activations": {"max_images": 1}})
    sec = run_technique(c, registry.get("activations"), strict=True)
    assert sec.results["layer"] == "act" and sec.results["images"][0]["active_channels"] == 1
    grid = next(b for b in _walk(sec.blocks) if isinstance(b, Grid))
    tile0 = grid.items[0].image.array
    y, x = np.unravel_index(int(np.argmax(tile0)), tile0.shape)
    assert 4 <= y <= 9 and 20 <= x <= 25
    assert grid.items[1].image.array.max() == tile0.min()  # channel 1 is dead: the layer's minimum everywhere


def test_embedding_keeps_well_separated_clusters_apart():
    from reportgen.techniques.embedding import embed_2d

    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (20, 16)) + 10
    b = rng.normal(0, 1, (20, 16)) - 10
    x = np.concatenate([a, b]).astype(np.float32)
    lab = np.array([0] * 20 + [1] * 20)
    p2, t2, _ = embed_2d(x, seed=0, max_iter=300)
    for pts in (p2, t2):
        cent = np.stack([pts[lab == k].mean(0) for k in (0, 1)])
        nearest = np.argmin(((pts[:, None] - cent[None]) ** 2).sum(-1), 1)
        assert (nearest == lab).all()


def test_card_accuracy_and_confusion_on_a_tiny_model(make_ctx, image_dir):
    c = make_ctx(ColourMeans(), image_dir, class_names=["red", "green", "blue"], pre=IDENTITY)
    sec = run_technique(c, registry.get("card"), strict=True)
    labels = c.images.labels
    with torch.no_grad():
        preds = c.pixel_model(c.images.batch(list(range(len(c.images))))).argmax(1).numpy()
    known = labels >= 0
    assert sec.results["labelled_images"] == int(known.sum()) == 9  # "white" is not a class
    assert sec.results["top1_accuracy"] == pytest.approx(float((preds[known] == labels[known]).mean()), abs=1e-4)
    names = ["red", "green", "blue"]
    expect = {}
    for t, p in zip(labels[known], preds[known]):
        expect[(names[t], names[p])] = expect.get((names[t], names[p]), 0) + 1
    assert {(t, p): n for t, p, n in sec.results["confusion"]} == expect
    assert sec.results["top5_accuracy"] == 1.0  # 3 classes: always in the top 5


# ----- machine-readable results -------------------------------------------------------------------------
def test_every_section_writes_declared_json_results(make_ctx, tiny_model, image_dir):
    from reportgen import results_schema as rs

    c = make_ctx(tiny_model, image_dir, class_names=CLASSES)
    for t in registry.all_techniques():
        sec = run_technique(c, t, strict=True)
        if rs.declared(t.id):
            assert sec.results, t.id
            json.dumps(sec.results)
            assert not rs.undeclared(t.id, sec.results), (t.id, rs.undeclared(t.id, sec.results))
            assert not rs.missing(t.id, sec.results), (t.id, rs.missing(t.id, sec.results))
            if rs.result_type_of(t.id) is not None:
                assert rs.check(t.id, sec.results) == [], t.id
    ours = ["card", "filters", "activations", "patches", "neighbors", "embedding", "occlusion", "saliency",
            "segmentation", "guided_backprop", "class_visualization", "adversarial", "deepdream"]
    assert all(rs.declared(t) for t in ours)


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


def test_confusion_table_does_not_rank_ties():
    """With too many classes for a matrix, confusions that each occur once are not called "most frequent"."""
    from types import SimpleNamespace

    from reportgen.report import Section, Table
    from reportgen.techniques.card import CardOptions, _confusion

    ctx = SimpleNamespace(class_name=lambda k: f"class {k}")
    opts = CardOptions(max_confusion_classes=2)
    sec = Section(id="card", title="card")
    _confusion(sec, ctx, np.array([0, 1, 2, 3]), np.array([1, 2, 3, 0]), opts)
    table = next(b for b in sec.blocks if isinstance(b, Table))
    assert table.title == "Confusions" and "not a ranking" in table.caption
    sec = Section(id="card", title="card")
    _confusion(sec, ctx, np.array([0, 0, 1, 2]), np.array([1, 1, 2, 0]), opts)
    table = next(b for b in sec.blocks if isinstance(b, Table))
    assert table.title == "Most frequent confusions" and "not a ranking" not in table.caption
    assert table.rows[0] == ["class 0", "class 1", 2]
