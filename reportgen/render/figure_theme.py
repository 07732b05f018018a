"""Figures in the report's theme. ``pictures.figure_to_png`` draws every matplotlib figure on a transparent
background with its furniture (titles, labels, ticks, spines, legend text) in one exact "ink" colour and legend
boxes in one "paper" colour, and marks the PNG (``FIGURE_MARK``). Here, at render time, ink becomes the theme's
text colour, paper its card colour (the anti-aliased blends between them in proportion) and the transparent
background its page colour: one stored figure reads in any theme, re-rendered or not. Pictures without the mark
(older reports, photos, maps) are left as they are. No torch here."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import numpy as np
from PIL import Image

from ..pictures import FIGURE_INK, FIGURE_MARK, FIGURE_PAPER

TOLERANCE = 1.0  # largest distance (per channel, 0-255) from the ink-paper line still taken for a blend of them
_HEX = re.compile(r"#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
FALLBACK = {"light": ("#1f2328", "#ffffff", "#f7f8fa"), "dark": ("#e3e7ed", "#0e1217", "#151a21")}


def hex_rgb(value: str, default: str) -> np.ndarray:
    m = _HEX.fullmatch(str(value).strip()) or _HEX.fullmatch(default)
    assert m is not None
    h = m.group(1)
    h = "".join(c * 2 for c in h) if len(h) == 3 else h
    return np.array([int(h[i:i + 2], 16) for i in (0, 2, 4)], np.float32)


def paint(data: bytes, fg: np.ndarray, bg: np.ndarray, card: np.ndarray) -> bytes:
    """A marked figure PNG painted in these colours (an opaque RGB PNG); anything else unchanged."""
    if FIGURE_MARK.encode() not in data[:8192]:
        return data
    with Image.open(io.BytesIO(data)) as im:
        if FIGURE_MARK not in str(im.info.get("Description", "")):
            return data
        a = np.asarray(im.convert("RGBA"), np.float32)
    rgb, alpha = a[..., :3], a[..., 3:] / 255.0
    ink, paper = np.array(FIGURE_INK, np.float32), np.array(FIGURE_PAPER, np.float32)
    d = paper - ink
    t = np.clip(((rgb - ink) @ d) / float(d @ d), 0.0, 1.0)[..., None]
    on = (np.abs(rgb - (ink + t * d)).max(-1, keepdims=True) <= TOLERANCE) & (alpha > 0)
    rgb = np.where(on, fg + t * (card - fg), rgb)
    out = np.clip(np.round(rgb * alpha + bg * (1.0 - alpha)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(out, "RGB").save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def painter(colors: dict[str, str], scheme: str) -> Callable[[bytes], bytes]:
    """``paint`` with a theme's text (``--fg``), page (``--bg``) and card (``--card-bg``) colours."""
    fg0, bg0, card0 = FALLBACK["dark" if scheme == "dark" else "light"]
    fg, bg = hex_rgb(colors.get("fg", fg0), fg0), hex_rgb(colors.get("bg", bg0), bg0)
    card = hex_rgb(colors.get("card-bg", card0), card0)
    return lambda data: paint(data, fg, bg, card)
