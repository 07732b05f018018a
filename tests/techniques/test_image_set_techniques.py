"""neighbors, embedding, patches, occlusion, saliency, segmentation: behaviour on tiny models."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from reportgen import registry
from reportgen.build import run_technique
from reportgen.inspection.hooks import count_hooks, module_signature
from reportgen.preprocess import Preprocessing
from reportgen.report import Group, Section, iter_images

from conftest import CLASSES, write_image_folder

IDS = ["neighbors", "embedding", "patches", "occlusion", "saliency", "segmentation"]


# ------------------------------------------------------------------------------------------------
# every technique: registered, runs strictly, leaves the model as it was


@pytest.mark.parametrize("tid", IDS)
def test_runs_minimal_and_leaves_no_hook(ctx, tid):
    info = registry.get(tid)
    assert set(info.presets) >= {"minimal", "full"} and info.summary.count(". ") >= 1
    assert info.references
    sig = module_signature(ctx.model)
    sec = run_technique(ctx, info, strict=True)
    assert isinstance(sec, Section) and sec.error is None and sec.blocks
    assert count_hooks(ctx.model) == 0 and module_signature(ctx.model) == sig
    assert all(p.requires_grad for p in ctx.model.parameters())
    assert list(iter_images(sec.blocks))


def test_all_six_share_one_pass(ctx):
    for tid in IDS:
        run_technique(ctx, registry.get(tid), strict=True)
    assert ctx.feature_store.passes == 1


# ------------------------------------------------------------------------------------------------
# saliency


class SmoothNet(nn.Module):
    """A smooth (tanh) conv net, so finite differences are meaningful."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, stride=2, padding=1)
        self.fc = nn.Linear(6 * 8 * 8, 4)

    def forward(self, x):
        x = torch.tanh(self.conv2(torch.tanh(self.conv(x))))
        return self.fc(x.flatten(1))


@pytest.fixture()
def small_dir(tmp_path) -> Path:
    return write_image_folder(tmp_path / "img", per_class=2, size=16)


@pytest.fixture()
def pre16():
    return Preprocessing(resize=None, input_size=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), source="test")


def test_saliency_is_the_input_gradient_and_matches_finite_differences(make_ctx, small_dir, pre16):
    from reportgen.techniques._explain import saliency_maps

    model = SmoothNet().eval()
    ctx = make_ctx(model, small_dir, class_names=CLASSES, pre=pre16)
    idx = [0, 3, 5]
    res = saliency_maps(ctx, idx, batch_size=2)
    pm64 = copy.deepcopy(ctx.pixel_model).double()
    for r in res:
        assert r.target == ctx.images.labels[r.index]  # the true label is explained when known
        x = ctx.images.tensor(r.index)[None].double().requires_grad_(True)
        s = pm64(x)[0, r.target]
        (g,) = torch.autograd.grad(s, x)
        np.testing.assert_allclose(r.map, g.abs().amax(1)[0].numpy(), rtol=1e-4, atol=1e-7)
        # central differences at the most salient pixel and two others, every channel
        rng = np.random.default_rng(r.index)
        py, px = np.unravel_index(np.argmax(r.map), r.map.shape)
        for (yy, xx) in [(py, px), tuple(rng.integers(0, 16, 2)), tuple(rng.integers(0, 16, 2))]:
            fd = []
            for c in range(3):
                e = torch.zeros_like(x)
                e[0, c, yy, xx] = 1e-5
                with torch.no_grad():
                    fd.append(float((pm64(x + e)[0, r.target] - pm64(x - e)[0, r.target]) / 2e-5))
            assert r.map[yy, xx] == pytest.approx(max(abs(v) for v in fd), rel=1e-3, abs=1e-6)


def test_saliency_batched_equals_one_at_a_time(ctx):
    from reportgen.techniques._explain import saliency_maps

    idx = list(range(6))
    a = saliency_maps(ctx, idx, batch_size=4)
    b = saliency_maps(ctx, idx, batch_size=1)
    for ra, rb in zip(a, b):
        np.testing.assert_allclose(ra.map, rb.map, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# a model whose class score depends on one image region only

REGION = (4, 14, 18, 28)  # y0, x0, y1, x1 in a 32x32 input


class RegionNet(nn.Module):
    """logit_0 = 20 * mean brightness of REGION, logit_1 = 0 (plus a conv so layer techniques run)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        y0, x0, y1, x1 = REGION
        _ = self.conv(x)
        s = x[:, :, y0:y1, x0:x1].mean(dim=(1, 2, 3)) * 20 - 8
        return torch.stack([s, torch.zeros_like(s)], 1)


@pytest.fixture()
def region_ctx(make_ctx, tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "region"
    for k in range(3):
        a = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
        y0, x0, y1, x1 = REGION
        a[y0:y1, x0:x1] = 230  # bright content in the region: covering it lowers logit_0
        (root / "a").mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(root / "a" / f"{k}.png")
    pre = Preprocessing(resize=None, input_size=32, mean=(0, 0, 0), std=(1, 1, 1), source="test")
    return make_ctx(RegionNet().eval(), root, class_names=["a", "b"], pre=pre)


def _inside(yx, region, margin=0):
    y, x = yx
    y0, x0, y1, x1 = region
    return y0 - margin <= y < y1 + margin and x0 - margin <= x < x1 + margin


def test_saliency_peaks_in_the_region(region_ctx):
    from reportgen.techniques._explain import saliency_maps

    for r in saliency_maps(region_ctx, [0, 1, 2]):
        y0, x0, y1, x1 = REGION
        assert _inside(np.unravel_index(np.argmax(r.map), r.map.shape), REGION)
        outside = r.map.copy()
        outside[y0:y1, x0:x1] = 0
        assert outside.max() == 0  # exactly no gradient outside the region
        assert r.map[y0:y1, x0:x1].min() > 0


@pytest.mark.parametrize("window, stride", [(6, 3), (8, 5), (12, 4)])
def test_occlusion_peaks_in_the_region_and_is_aligned(region_ctx, window, stride):
    from reportgen.techniques.occlusion import occlusion_maps

    res = occlusion_maps(region_ctx, [0, 1], window, stride, batch_size=7, fill=0.5)
    y0, x0, y1, x1 = REGION
    for r in res:
        assert r.target == 0
        drop = r.base - r.heat
        peak = np.unravel_index(np.argmax(drop), drop.shape)
        assert _inside(peak, REGION), peak
        # pixels whose every covering window misses the region are exactly unchanged
        far = np.ones_like(drop, dtype=bool)
        far[max(0, y0 - window + 1):y1 + window - 1, max(0, x0 - window + 1):x1 + window - 1] = False
        np.testing.assert_allclose(drop[far], 0, atol=1e-6)
        assert drop[y0:y1, x0:x1].min() > 0


@pytest.mark.parametrize("window, stride", [(8, 8), (10, 7)])
def test_occlusion_batched_equals_naive_loop(ctx, window, stride):
    from reportgen.techniques.occlusion import naive_occlusion, occlusion_maps

    fill = ctx.features().mean_rgb
    res = occlusion_maps(ctx, [0, 4], window, stride, batch_size=13, fill=fill)  # batches mix both images
    for r in res:
        ref = naive_occlusion(ctx, r.index, r.target, window, stride, fill)
        np.testing.assert_allclose(r.grid, ref, rtol=1e-5, atol=1e-6)
        assert r.heat.shape == (32, 32)


def test_window_positions_cover_the_image():
    from reportgen.techniques.occlusion import window_positions

    assert window_positions(32, 8, 8) == [0, 8, 16, 24]
    assert window_positions(32, 10, 7) == [0, 7, 14, 21, 22]
    assert window_positions(8, 16, 4) == [0]


# ------------------------------------------------------------------------------------------------
# neighbours


def test_exact_duplicate_is_the_first_feature_neighbour(make_ctx, tiny_model, tmp_path):
    from reportgen.techniques.neighbors import nearest

    root = write_image_folder(tmp_path / "dup", per_class=3)
    src = root / "green" / "green_1.png"
    shutil.copy(src, root / "green" / "zz_copy_of_green_1.png")
    ctx = make_ctx(tiny_model, root, class_names=CLASSES)
    names = [ctx.images.name(i) for i in range(len(ctx.images))]
    q, d = names.index("green/green_1.png"), names.index("green/zz_copy_of_green_1.png")
    st = ctx.features()
    for data, metric in [(st.penultimate, "cosine"), (st.penultimate, "l2"), (st.pixels, "l2")]:
        idx, dist = nearest([q, d], data, 3, metric)
        assert idx[0, 0] == d and idx[1, 0] == q  # each is the other's nearest, the query itself excluded
        assert dist[0, 0] == pytest.approx(0, abs=1e-3)
        assert q not in idx[0]


def test_neighbors_section_rows(ctx):
    sec = run_technique(ctx, registry.get("neighbors"), strict=True)
    groups = [b for b in sec.blocks if isinstance(b, Group)]
    assert len(groups) == 2  # minimal: two queries
    for g in groups:
        feat_row, pix_row = g.blocks
        assert feat_row.items[0].sublabel == "query" and len(feat_row.items) == 4
        d = [float(it.sublabel.split("=")[1]) for it in feat_row.items[1:]]
        assert d == sorted(d)


# ------------------------------------------------------------------------------------------------
# embedding


def test_embedding_deterministic_and_small_sets():
    from reportgen.techniques.embedding import embed_2d, grid_assign, tsne_perplexity

    x = np.random.default_rng(0).normal(size=(40, 20)).astype(np.float32)
    a = embed_2d(x, seed=3, max_iter=250)
    b = embed_2d(x, seed=3, max_iter=250)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert tsne_perplexity(1000) == 30 and tsne_perplexity(10) == 3 and tsne_perplexity(4) == 2
    p2, t2, info = embed_2d(x[:5], seed=0, max_iter=250)
    assert t2.shape == (5, 2) and info["perplexity"] < 5
    rc = grid_assign(a[1], 7, np.random.default_rng(0))
    assert len({tuple(r) for r in rc}) == 40  # one image per cell


def test_embedding_subsamples_with_a_note(make_ctx, tiny_model, image_dir):
    c = make_ctx(tiny_model, image_dir, class_names=CLASSES, overrides={"embedding": {"max_points": 8}})
    sec = run_technique(c, registry.get("embedding"), strict=True)
    assert sec.params["points"] == 8 and sec.params["subsampled"]
    assert any("subsample" in getattr(b, "text", "") for b in sec.blocks)


# ------------------------------------------------------------------------------------------------
# patches


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


# ------------------------------------------------------------------------------------------------
# segmentation


def test_grabcut_from_saliency_finds_the_object():
    from reportgen.techniques.segmentation import grabcut_from_saliency

    rng = np.random.default_rng(0)
    img = (rng.random((64, 64, 3)) * 40 + 20).astype(np.uint8)
    img[20:44, 16:40] = (220, 60, 40)
    sal = np.zeros((64, 64), np.float32)
    sal[24:40, 20:36] = 1.0  # saliency on the object's centre only
    sal += rng.random((64, 64)).astype(np.float32) * 0.05
    fg, seeds = grabcut_from_saliency(img, sal, iterations=4, blur=1.0)
    truth = np.zeros_like(fg)
    truth[20:44, 16:40] = True
    iou = (fg & truth).sum() / (fg | truth).sum()
    assert iou > 0.8


def test_segmentation_reuses_saliency(ctx):
    from reportgen.techniques import _explain

    run_technique(ctx, registry.get("saliency"), strict=True)
    memo = ctx.memo(_explain.MEMO_KEY, dict)
    before = {i: r.map for i, r in memo.items()}
    run_technique(ctx, registry.get("segmentation"), strict=True)
    assert all(memo[i].map is m for i, m in before.items())  # same arrays: nothing recomputed


def test_the_fewest_tsne_iterations_still_leave_exaggeration():
    """``tsne_iter = 250`` (the minimal preset) once stopped scikit-learn right at the end of early exaggeration:
    on features without clusters (the 500 one-per-class ImageNet images) the cloud stayed 0.03 units wide with one
    point 13x further out than the 99th percentile, and the explorer drew a dot. 100 free steps always follow."""
    from reportgen.techniques._layout import sklearn_tsne, total_iterations

    assert total_iterations(250) == 350 and total_iterations(1000) == 1000
    x = np.random.default_rng(0).normal(0, 1, (500, 50)).astype(np.float32)
    y = sklearn_tsne(x, 30.0, 0, 250)
    r = np.linalg.norm(y - np.median(y, 0), axis=1)
    assert np.median(r) > 1.0 and r.max() < 2 * np.percentile(r, 99), (np.median(r), r.max() / np.percentile(r, 99))


def _trustworthiness_by_the_formula(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """Venna & Kaski (2001), written out: ranks in feature space of the 2-D neighbours that are not true ones."""
    n = len(x)
    dx = ((x[:, None] - x[None]) ** 2).sum(-1)
    dy = ((y[:, None] - y[None]) ** 2).sum(-1)
    np.fill_diagonal(dx, np.inf)
    np.fill_diagonal(dy, np.inf)
    rank = np.argsort(np.argsort(dx, 1), 1) + 1  # rank[i, j]: j is i's rank-th nearest in feature space
    total = 0.0
    for i in range(n):
        for j in np.argsort(dy[i])[:k]:
            total += max(0, rank[i, j] - k)
    return 1 - 2 / (n * k * (2 * n - 3 * k - 1)) * total


def test_trustworthiness_is_the_papers_and_separates_structure_from_noise():
    from reportgen.techniques._layout import sklearn_tsne, trustworthiness_scores
    from reportgen.techniques.embedding import WEAK_TRUST_MARGIN, trust_sentence

    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (60, 8)).astype(np.float32)
    y = x[:, :2] + rng.normal(0, 0.3, (60, 2)).astype(np.float32)
    got = trustworthiness_scores(x, {"pca": y}, np.random.default_rng(1))
    assert got["k"] == 10 and abs(got["pca"] - _trustworthiness_by_the_formula(x, y, 10)) < 1e-4
    # planted clusters: t-SNE keeps them (near 1); the same positions shuffled among the images: as random, weak
    clusters = (np.repeat(rng.normal(0, 4, (20, 64)), 20, 0) + rng.normal(0, 1, (400, 64))).astype(np.float32)
    xy = sklearn_tsne(clusters, 30.0, 0, 350)
    t_c = trustworthiness_scores(clusters, {"tsne": xy}, np.random.default_rng(1))
    t_s = trustworthiness_scores(clusters, {"tsne": xy[rng.permutation(400)]}, np.random.default_rng(1))
    assert t_c["tsne"] > 0.95 and t_c["tsne"] - t_c["random"] > 0.3
    assert t_s["tsne"] - t_s["random"] < WEAK_TRUST_MARGIN < t_c["tsne"] - t_c["random"]
    assert "t-SNE 0.99" in trust_sentence(t_c) and "random positions score 0.5" in trust_sentence(t_c)
