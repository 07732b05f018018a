"""The segmentation technique (reportgen/techniques/segmentation.py): its own tests."""

from __future__ import annotations

import numpy as np

from reportgen import registry
from reportgen.build import run_technique


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
