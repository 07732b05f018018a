"""reportgen.attribution.visualization with maps that hold NaN or infinite values (an overflowing half-precision
gradient, a division by zero in a model): drawn with those entries as 0, and the cell says how many there were,
instead of a blank picture with no word about it."""

from __future__ import annotations

import numpy as np
import pytest

from reportgen.attribution.visualization import attr_image, attr_item, non_finite, normalize_attr


def _map_with_holes():
    a = np.random.default_rng(0).normal(size=(3, 9, 11))
    a[0, 2, 3], a[1, 0, 0], a[2, 8, 10] = np.nan, np.inf, -np.inf
    return a


def test_non_finite_counts_nan_and_both_infinities():
    a = _map_with_holes()
    assert non_finite(a) == 3
    assert non_finite(np.zeros((2, 2))) == 0
    assert non_finite(None) == 0
    assert non_finite(np.array([np.nan, 1.0, np.nan], dtype=np.float32)) == 2


@pytest.mark.parametrize("sign", ["absolute_value", "positive", "negative", "all"])
def test_non_finite_entries_are_scaled_as_zeros(sign):
    """The same picture values as the map with those entries written as 0 (percentile and clip included)."""
    a = _map_with_holes()
    zeroed = a.copy()
    zeroed[~np.isfinite(zeroed)] = 0.0
    got = normalize_attr(a, sign, outlier_perc=5.0)
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got, normalize_attr(zeroed, sign, outlier_perc=5.0))


def test_an_all_nan_map_draws_as_zero_and_says_so():
    a = np.full((6, 6), np.nan)
    assert (attr_image(a, view="map") == 0).all()
    assert (attr_image(a, view="map", sign="all") == 128).all()
    item = attr_item(a, label="saliency")
    assert item.sublabel == "36 of 36 values not finite (NaN or inf), drawn as 0"
    assert item.tone == "bad"
    assert item.alt == "saliency 36 of 36 values not finite (NaN or inf), drawn as 0"


def test_the_cell_names_how_many_values_were_not_finite():
    """The note follows the section's own sub-label; a finite map's cell is unchanged."""
    a = _map_with_holes()
    img = np.zeros((9, 11, 3), dtype=np.uint8)
    item = attr_item(a[0], img, "overlay", label="IG", sublabel="max 2.1", tone="ok")
    assert item.sublabel == "max 2.1 · 1 of 99 values not finite (NaN or inf), drawn as 0"
    assert item.tone == "bad"
    fine = attr_item(np.nan_to_num(a[0], posinf=0.0, neginf=0.0), label="IG", sublabel="max 2.1", tone="ok")
    assert (fine.sublabel, fine.tone) == ("max 2.1", "ok")
    assert attr_item(None, img, "image", label="input").sublabel == ""


def test_the_input_view_has_no_note_about_a_map_it_does_not_draw():
    """``view="image"`` shows the input alone: a map passed along with NaN in it adds no note and no tone."""
    img = np.zeros((9, 11, 3), dtype=np.uint8)
    item = attr_item(_map_with_holes()[0], img, "image", label="input", sublabel="class 3")
    assert (item.sublabel, item.tone) == ("class 3", "")
    assert item.image.array is not None and (item.image.array == img).all()
