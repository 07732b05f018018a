"""reportgen.attribution.visualization: normalize_attr on known inputs for each sign, and the image | map | overlay
view."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import reference

from reportgen.report import GridItem
from reportgen.attribution.visualization import attr_image, attr_item, normalize_attr

# 0..10 by 1 and their negatives: the 90th percentile of |a| over 21 values is 9
A = np.concatenate([np.arange(11.0), -np.arange(1.0, 11.0)])


def test_normalize_attr_absolute_value():
    out = normalize_attr(A, "absolute_value", outlier_perc=10)
    np.testing.assert_allclose(out, np.minimum(np.abs(A) / 9.0, 1.0))
    assert out.min() == 0 and out.max() == 1 and (out == 1).sum() == 4  # 9, 10, -9, -10 saturate


def test_normalize_attr_positive_and_negative():
    pos = normalize_attr(A, "positive", outlier_perc=10)
    # the positive part: 11 values 0..10 and ten zeros; its 90th percentile is 8
    np.testing.assert_allclose(pos, np.clip(A, 0, None).clip(max=8.0) / 8.0)
    neg = normalize_attr(A, "negative", outlier_perc=10)
    np.testing.assert_allclose(neg, np.clip(-A, 0, None).clip(max=8.0) / 8.0)
    assert (pos[A < 0] == 0).all() and (neg[A > 0] == 0).all()


def test_normalize_attr_all_keeps_the_sign():
    out = normalize_attr(A, "all", outlier_perc=10)
    np.testing.assert_allclose(out, np.clip(A / 9.0, -1, 1))
    assert out.min() == -1 and out.max() == 1


def test_normalize_attr_sparse_flat_floor_and_bad_sign():
    sparse = np.zeros(100)
    sparse[3] = 4.0  # the 98th percentile is 0: scaled by the maximum instead
    np.testing.assert_allclose(normalize_attr(sparse, "absolute_value"), sparse / 4.0)
    assert not normalize_attr(np.zeros((4, 4)), "all").any()
    # negligible changes stay pale: a floor on the scale
    np.testing.assert_allclose(normalize_attr(np.array([0.01, -0.02]), "all", 0, floor=0.1), [0.1, -0.2])
    assert not normalize_attr(np.array([1.0, 2.0]), "negative").any()  # nothing negative to show
    with pytest.raises(ValueError):
        normalize_attr(A, "abs")


def test_normalize_attr_matches_captum_without_outliers():
    viz = reference("captum.attr._utils.visualization")
    rng = np.random.default_rng(0)
    a = rng.integers(-5, 6, size=(8, 8, 1)).astype(np.float64)  # exact cumulative sums in captum
    for sign in ("absolute_value", "positive", "negative", "all"):
        want = viz._normalize_attr(a, sign, outlier_perc=0)
        got = normalize_attr(a, sign, outlier_perc=0)
        np.testing.assert_allclose(np.abs(got), np.abs(want), atol=1e-12)


def test_views_map_and_overlay():
    m = np.zeros((8, 8))
    m[2, 3] = 5.0
    grey = attr_image(m, view="map", outlier_perc=0)
    assert grey.dtype == np.uint8 and grey.shape == (8, 8) and grey[2, 3] == 255 and grey.sum() == 255
    signed = attr_image(np.stack([m, -m, 0 * m]), view="map", sign="all", outlier_perc=0)  # C x H x W
    assert signed.shape == (8, 8, 3) and tuple(signed[2, 3]) == (255, 1, 128) and signed[0, 0, 0] == 128
    img = np.full((8, 8, 3), 100, np.uint8)
    over = attr_image(m, img, "overlay", outlier_perc=0, cmap="gray", alpha=0.5)
    assert tuple(over[2, 3]) == (177, 177, 177) and tuple(over[0, 0]) == (50, 50, 50)
    assert attr_image(None, img, "image") is img
    item = attr_item(m, img, "overlay", label="x", sublabel="y", outlier_perc=0)
    assert isinstance(item, GridItem) and item.alt == "x y"
    with pytest.raises(ValueError):
        attr_image(m, None, "overlay")
