"""reportgen.attribution.visualization against written-out numpy: normalize_attr's robust maximum (a percentile by
linear interpolation written as a loop, the sparse-map fallback, the floor, the clip) for every sign, the channel
layouts, the grey and signed maps, the overlay blend through matplotlib's colour map, attr_item's fields, the
defaults and the error messages (mutation testing, docs/mutation.md)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import colormaps

from reportgen.attribution.visualization import attr_image, attr_item, normalize_attr
from reportgen.report import GridItem, ImageData

SIGNS = ("absolute_value", "positive", "negative", "all")


def percentile(values: np.ndarray, q: float) -> float:
    """numpy's default ("linear") percentile written out: sorted values, position q/100 * (n - 1), interpolated."""
    v = sorted(float(u) for u in np.ravel(values))
    pos = q / 100 * (len(v) - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (pos - lo) * (v[hi] - v[lo])


def ref_normalize(a, sign: str, outlier_perc: float = 2.0, floor: float = 0.0) -> np.ndarray:
    """The documented rule: magnitudes by sign, t = the (100 - outlier_perc) percentile (the maximum where that is
    <= 1e-12), at least ``floor``; zeros where t <= 1e-12, else shown / t clipped to [0, 1] ([-1, 1] for ``all``)."""
    a = np.asarray(a, dtype=np.float64)
    out = np.zeros(a.shape)
    flat = a.ravel()
    mags = [abs(u) if sign in ("absolute_value", "all") else max(u, 0.0) if sign == "positive" else max(-u, 0.0)
            for u in flat]
    if not mags:
        return out
    t = percentile(np.array(mags), 100 - outlier_perc)
    if t <= 1e-12:
        t = max(mags)
    t = max(t, floor)
    if t <= 1e-12:
        return out
    for k, (u, m) in enumerate(zip(flat, mags)):
        out.flat[k] = min(max(u / t, -1.0), 1.0) if sign == "all" else min(m / t, 1.0)
    return out


RNG = np.random.default_rng(0)
MAP = RNG.normal(size=(10, 10)) * np.where(RNG.random((10, 10)) < 0.2, 8.0, 1.0)  # a few large outliers


@pytest.mark.parametrize("sign", SIGNS)
@pytest.mark.parametrize("outlier_perc", [0.0, 2.0, 5.0, 30.0])
def test_normalize_attr_is_the_written_out_rule(sign, outlier_perc):
    """Every sign and several outlier percentages on a map with outliers: the written-out percentile rule."""
    got = normalize_attr(MAP, sign, outlier_perc)
    assert got.dtype == np.float64 and got.shape == MAP.shape
    np.testing.assert_allclose(got, ref_normalize(MAP, sign, outlier_perc), rtol=1e-12, atol=1e-15)


def test_normalize_attr_defaults_are_absolute_value_two_percent_and_no_floor():
    """Defaults: sign ``absolute_value``, ``outlier_perc`` 2 (the 98th percentile; the 97th differs on this map)
    and ``floor`` 0 (a map of small values reaches 1)."""
    assert percentile(np.abs(MAP), 98) != percentile(np.abs(MAP), 97)
    np.testing.assert_allclose(normalize_attr(MAP), ref_normalize(MAP, "absolute_value", 2.0), rtol=1e-12)
    small = MAP * 1e-3
    got = normalize_attr(small)
    np.testing.assert_allclose(got, ref_normalize(small, "absolute_value", 2.0), rtol=1e-12)
    assert got.max() == 1.0


@pytest.mark.parametrize("sign", SIGNS)
def test_normalize_attr_keeps_float64_for_float32_and_integer_input(sign):
    """The result is float64 whatever the input's dtype (the docstring's promise), values as for float64 input
    (to float32 rounding: numpy takes a float32 map's percentile in float32)."""
    for a, rtol in ((MAP.astype(np.float32), 1e-6), (np.round(MAP * 3).astype(np.int64), 1e-12)):
        got = normalize_attr(a, sign, 5.0)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, ref_normalize(a, sign, 5.0), rtol=rtol, atol=1e-15)


def test_positive_and_negative_parts_below_one():
    """Values in (0, 1) and (-1, 0): the positive part is max(a, 0), the negative part max(-a, 0) (not max(., 1))."""
    a = np.array([0.2, -0.4, 0.6, -0.1, 0.0, 0.3])
    np.testing.assert_allclose(normalize_attr(a, "positive", 0.0), [1 / 3, 0, 1, 0, 0, 0.5])
    np.testing.assert_allclose(normalize_attr(a, "negative", 0.0), [0, 1, 0, 0.25, 0, 0])


def test_the_sparse_fallback_and_the_thresholds_are_at_1e_12_inclusive():
    """t <= 1e-12 (inclusive) switches to the maximum, and a maximum <= 1e-12 gives zeros; a percentile of 0.5 is
    kept (the thresholds are 1e-12, not 1)."""
    a = np.full(100, 1e-12)
    a[7] = 5.0  # the 98th percentile is exactly 1e-12: the maximum 5 scales instead
    np.testing.assert_allclose(normalize_attr(a, "absolute_value"), a / 5.0, rtol=1e-12)
    b = np.zeros(100)
    b[3] = 1e-12  # the maximum is exactly 1e-12: nothing to show
    assert np.array_equal(normalize_attr(b, "all"), np.zeros(100))
    c = np.full(100, 0.5)
    c[0] = 4.0
    np.testing.assert_allclose(normalize_attr(c, "absolute_value"), np.minimum(c / 0.5, 1.0))
    d = np.full(10, 0.5)  # t = 0.5 from the percentile and as the maximum: 1 everywhere
    np.testing.assert_allclose(normalize_attr(d, "positive"), np.ones(10))


@pytest.mark.parametrize("sign", SIGNS)
def test_an_empty_map_stays_empty(sign):
    """An empty attribution gives an empty float64 result (no percentile or maximum of nothing is taken)."""
    for floor in (0.0, 0.5):
        got = normalize_attr(np.zeros((0, 4)), sign, floor=floor)
        assert got.shape == (0, 4) and got.dtype == np.float64


def test_the_floor_raises_the_scale():
    """``floor`` above the robust maximum: values / floor, nothing saturates."""
    for sign in SIGNS:
        got = normalize_attr(MAP, sign, 2.0, floor=100.0)
        np.testing.assert_allclose(got, ref_normalize(MAP, sign, 2.0, 100.0), rtol=1e-12, atol=1e-15)
        assert np.abs(got).max() < 1


def test_unknown_sign_and_view_messages():
    """The error messages name the bad value and the choices."""
    with pytest.raises(ValueError, match=r"^unknown sign 'abs'; choose one of absolute_value, positive, negative, "
                                         r"all$"):
        normalize_attr(MAP, "abs")
    with pytest.raises(ValueError, match=r"^unknown view 'heat'; choose one of image, map, overlay$"):
        attr_image(MAP, None, "heat")
    with pytest.raises(ValueError, match=r"^an overlay needs the image$"):
        attr_image(MAP, None, "overlay")


def to_byte(u: np.ndarray) -> np.ndarray:
    """[0, 1] -> uint8 by rounding half up."""
    return np.floor(np.clip(u, 0, 1) * 255 + 0.5).astype(np.uint8)


def test_the_grey_map_with_the_defaults():
    """view ``map`` is the default: |a| by the 98th percentile, 0 black, 1 white, one byte per value."""
    got = attr_image(MAP)
    assert got.dtype == np.uint8 and got.shape == (10, 10)
    assert np.array_equal(got, to_byte(ref_normalize(MAP, "absolute_value", 2.0)))
    np.testing.assert_array_equal(attr_image(MAP, view="map", outlier_perc=2.0), got)


def test_the_signed_map_is_mid_grey_at_zero():
    """sign ``all``: 128 + 127 * a / t, truncated to a byte (1 .. 255)."""
    got = attr_image(MAP, view="map", sign="all", outlier_perc=10.0)
    want = np.floor(128 + 127 * ref_normalize(MAP, "all", 10.0)).astype(np.uint8)
    assert got.dtype == np.uint8 and np.array_equal(got, want)
    assert got.min() == 1 and got.max() == 255


@pytest.mark.parametrize("shape,out_shape", [
    ((3, 6, 7), (6, 7, 3)), ((1, 6, 7), (6, 7, 1)), ((3, 3, 7), (3, 7, 3)),  # channels first: moved last
    ((6, 7, 3), (6, 7, 3)), ((3, 7, 3), (3, 7, 3)), ((3, 7, 1), (3, 7, 1)), ((1, 7, 3), (1, 7, 3)),  # channels last
    ((2, 6, 7), (2, 6, 7)), ((6, 7), (6, 7)),  # two channels, a plain map: left as they are
])
@pytest.mark.parametrize("sign", ["absolute_value", "all"])
def test_channel_layouts_of_the_map(shape, out_shape, sign):
    """C x H x W with C in (1, 3) and a last axis not in (1, 3) is moved to H x W x C; everything else is kept."""
    a = np.random.default_rng(1).normal(size=shape)
    got = attr_image(a, view="map", sign=sign, outlier_perc=0.0)
    norm = ref_normalize(a, sign, 0.0)
    if out_shape != shape:
        norm = np.moveaxis(norm, 0, -1)
    want = np.floor(128 + 127 * norm).astype(np.uint8) if sign == "all" else to_byte(norm)
    assert got.shape == out_shape
    assert np.array_equal(got, want)


def blend(image: np.ndarray, norm: np.ndarray, cmap: str, lo: float, hi: float, alpha: float) -> np.ndarray:
    """The overlay written out: (norm - lo) / (hi - lo) to a byte, through matplotlib's colour map to RGB bytes,
    then (1 - alpha) image + alpha colour, truncated to a byte."""
    u = to_byte((norm - lo) / (hi - lo))
    rgb = np.floor(colormaps[cmap](u / 255.0)[..., :3] * 255 + 0.5)
    return np.clip((1 - alpha) * image.astype(np.float64) + alpha * rgb, 0, 255).astype(np.uint8)


IMAGE = (np.random.default_rng(2).random((10, 10, 3)) * 255).astype(np.uint8)


def test_overlay_defaults_jet_half_and_half():
    """The overlay of |a| uses ``jet`` on [0, 1] and ``alpha`` 0.5 by default."""
    got = attr_image(MAP, IMAGE, "overlay")
    assert got.dtype == np.uint8 and got.shape == (10, 10, 3)
    assert np.array_equal(got, blend(IMAGE, ref_normalize(MAP, "absolute_value", 2.0), "jet", 0.0, 1.0, 0.5))


def test_overlay_signed_uses_rdbu_on_minus_one_to_one():
    """sign ``all``: ``RdBu_r`` centred on 0 (lo -1, hi 1); a given ``cmap`` and ``alpha`` replace the defaults."""
    norm = ref_normalize(MAP, "all", 2.0)
    got = attr_image(MAP, IMAGE, "overlay", sign="all")
    assert np.array_equal(got, blend(IMAGE, norm, "RdBu_r", -1.0, 1.0, 0.5))
    got = attr_image(MAP, IMAGE, "overlay", sign="all", cmap="viridis", alpha=0.3)
    assert np.array_equal(got, blend(IMAGE, norm, "viridis", -1.0, 1.0, 0.3))


def test_overlay_scale_is_fixed_not_the_maps_own_range():
    """With a floor nothing reaches 1 and every value is above 0: the colour scale is still [0, 1] (not the map's
    min and max), and ``floor`` passes through."""
    a = 1.0 + np.abs(MAP)
    norm = ref_normalize(a, "positive", 2.0, floor=50.0)
    assert 0 < norm.min() and norm.max() < 0.5
    got = attr_image(a, IMAGE, "overlay", sign="positive", floor=50.0, alpha=0.8, cmap="gray")
    assert np.array_equal(got, blend(IMAGE, norm, "gray", 0.0, 1.0, 0.8))
    signed = ref_normalize(a - 1.5, "all", 2.0, floor=50.0)
    got = attr_image(a - 1.5, IMAGE, "overlay", sign="all", floor=50.0, cmap="gray")
    assert np.array_equal(got, blend(IMAGE, signed, "gray", -1.0, 1.0, 0.5))


def test_map_floor_default_is_zero():
    """attr_image's default ``floor`` is 0: a map of small values still reaches white."""
    small = MAP * 1e-3
    assert np.array_equal(attr_image(small), to_byte(ref_normalize(small, "absolute_value", 2.0)))
    assert attr_image(small).max() == 255


def test_image_view_returns_the_image():
    """view ``image``: the image itself, whatever the attribution."""
    assert attr_image(MAP, IMAGE, "image") is IMAGE
    assert attr_image(None, IMAGE, view="image") is IMAGE


def test_attr_item_fields_and_defaults():
    """attr_item: the picture is attr_image's (default view ``map``), the labels and tone pass through, ``alt``
    defaults to "label sublabel" (stripped) and a given ``alt`` wins."""
    item = attr_item(MAP)
    assert isinstance(item, GridItem) and isinstance(item.image, ImageData)
    assert np.array_equal(item.image.array, attr_image(MAP))
    assert (item.label, item.sublabel, item.alt, item.tone) == ("", "", "", "")
    item = attr_item(MAP, IMAGE, "overlay", label="cat", sublabel="0.91", tone="bad", sign="all", outlier_perc=5.0,
                     cmap="viridis", alpha=0.25, floor=0.5)
    assert np.array_equal(item.image.array, attr_image(MAP, IMAGE, "overlay", sign="all", outlier_perc=5.0,
                                                       cmap="viridis", alpha=0.25, floor=0.5))
    assert (item.label, item.sublabel, item.alt, item.tone) == ("cat", "0.91", "cat 0.91", "bad")
    assert attr_item(MAP, label="cat", alt="a cat").alt == "a cat"
    assert attr_item(MAP, label="cat").alt == "cat"
    assert attr_item(MAP, sublabel="0.5").alt == "0.5"
    assert attr_item(None, IMAGE, "image").image.array is IMAGE
