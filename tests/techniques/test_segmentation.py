"""The segmentation technique (reportgen/techniques/segmentation.py): its own tests."""

from __future__ import annotations

import numpy as np

from reportgen import registry
from reportgen.build import run_technique
from reportgen.report import Grid


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
