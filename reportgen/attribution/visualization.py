"""Attribution maps as pictures and report blocks (captum's ``visualization`` beside its ``attribute()``).

Numpy in, report blocks out; no torch here (compute lives in :mod:`reportgen.attribution`).

* :func:`normalize_attr` — ``sign`` picks what is shown (``absolute_value`` | ``positive`` | ``negative``
  | ``all``, as in ``captum.attr.visualization``) and the values are divided by a robust maximum, the
  ``100 - outlier_perc`` percentile of their magnitude, then clipped: [0, 1] (``all``: [-1, 1]).
* :func:`attr_image` / :func:`attr_item` — one view for every attribution section: ``image`` (the input
  alone), ``map`` (grey: black = 0, white = the robust maximum; signed: mid-grey = 0) or ``overlay``
  (the normalised map through a colour map, blended over the image).
"""

from __future__ import annotations

from typing import cast

import numpy as np

from ..pictures import overlay, unit_to_uint8
from ..report import GridItem, ImageData, Tone

SIGNS = ("absolute_value", "positive", "negative", "all")
VIEWS = ("image", "map", "overlay")


def _channels_last(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return np.transpose(a, (1, 2, 0)) if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3) else a


def normalize_attr(attr: np.ndarray, sign: str = "absolute_value", outlier_perc: float = 2.0,
                   floor: float = 0.0) -> np.ndarray:
    """``attr`` scaled by a robust maximum and clipped (float64, same shape).

    ``sign``: ``absolute_value`` -> ``|a| / t``; ``positive`` -> ``max(a, 0) / t``; ``negative`` ->
    ``max(-a, 0) / t`` (all in [0, 1]); ``all`` -> ``a / t`` in [-1, 1]. ``t`` is the
    ``100 - outlier_perc`` percentile of the selected magnitudes (so the top ``outlier_perc`` % saturate),
    the maximum where that is ~0 (a sparse map), at least ``floor`` (a map of negligible values stays
    pale); an all-zero selection gives zeros. Values that are not finite (NaN, inf) count as 0 (see
    :func:`non_finite`: :func:`attr_item` says how many).
    """
    if sign not in SIGNS:
        raise ValueError(f"unknown sign {sign!r}; choose one of {', '.join(SIGNS)}")
    a = np.asarray(attr)
    if non_finite(a):
        a = np.where(np.isfinite(a), a, 0.0)
    mag = {"absolute_value": np.abs(a), "positive": np.maximum(a, 0), "negative": np.maximum(-a, 0),
           "all": np.abs(a)}[sign]
    t = float(np.percentile(mag, 100.0 - outlier_perc)) if mag.size else 0.0
    if t <= 1e-12:
        t = float(mag.max()) if mag.size else 0.0
    t = max(t, float(floor))
    shown = a.astype(np.float64) if sign == "all" else mag.astype(np.float64)
    if t <= 1e-12:
        return np.zeros(a.shape, dtype=np.float64)
    return np.clip(shown / t, -1.0 if sign == "all" else 0.0, 1.0)


def attr_image(attr: np.ndarray | None, image: np.ndarray | None = None, view: str = "map",
               sign: str = "absolute_value", outlier_perc: float = 2.0, cmap: str | None = None,
               alpha: float = 0.5, floor: float = 0.0) -> np.ndarray:
    """uint8 picture of an attribution (H x W, or C x H x W / H x W x C with C in 1, 3).

    ``view="image"``: ``image`` itself. ``"map"``: grey, 0 black and the robust maximum white; with
    ``sign="all"`` 0 is mid-grey (128 +- 127), channels kept (a signed RGB gradient). ``"overlay"``: the
    normalised map through ``cmap`` (default ``jet``; ``RdBu_r`` for ``all``, centred on 0) blended over
    ``image`` with weight ``alpha``.
    """
    if view == "image":
        return np.asarray(image)
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
    # every view but "image" is given an attr
    norm = _channels_last(normalize_attr(cast(np.ndarray, attr), sign, outlier_perc, floor))
    signed = sign == "all"
    if view == "map":
        if signed:
            return np.clip(128 + 127 * norm, 0, 255).astype(np.uint8)
        return unit_to_uint8(norm)
    if image is None:
        raise ValueError("an overlay needs the image")
    return overlay(image, norm, alpha=alpha, cmap=cmap or ("RdBu_r" if signed else "jet"),
                   lo=-1.0 if signed else 0.0, hi=1.0)


def non_finite(attr: np.ndarray | None) -> int:
    """How many entries of ``attr`` are NaN or infinite (0 for None)."""
    return 0 if attr is None else int(np.size(attr) - np.count_nonzero(np.isfinite(attr)))


def attr_item(attr: np.ndarray | None, image: np.ndarray | None = None, view: str = "map", label: str = "",
              sublabel: str = "", alt: str = "", tone: Tone = "", **scale) -> GridItem:
    """:func:`attr_image` as a grid cell (``scale``: sign, outlier_perc, cmap, alpha, floor). A map with NaN or
    infinite entries is drawn with them as 0, and the cell says how many there were (tone ``bad``)."""
    bad = non_finite(attr) if view != "image" else 0
    if bad:
        note = f"{bad} of {np.asarray(attr).size} values not finite (NaN or inf), drawn as 0"
        sublabel, tone = (f"{sublabel} · {note}" if sublabel else note), "bad"
    return GridItem(ImageData(attr_image(attr, image, view, **scale)), label=label, sublabel=sublabel,
                    alt=alt or f"{label} {sublabel}".strip(), tone=tone)


__all__ = ["normalize_attr", "attr_image", "attr_item", "non_finite", "SIGNS", "VIEWS"]
