"""Pictures from arrays: numpy/PIL/matplotlib helpers that turn computed arrays into displayable uint8 images.

No torch here: techniques convert tensors with ``.cpu().numpy()`` and call these.
Conventions: float images are ``HxWxC`` in [0, 1]; maps are ``HxW`` floats.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .report import ImageData


def to_uint8(img: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Scale a float array to uint8. With lo/hi None the array's own min/max are used (min-max normalise)."""
    a = np.asarray(img, dtype=np.float64)
    lo = float(np.nanmin(a)) if lo is None else lo
    hi = float(np.nanmax(a)) if hi is None else hi
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo < 1e-12:
        return np.zeros(a.shape, dtype=np.uint8)
    a = (a - lo) / (hi - lo)
    return (np.clip(np.nan_to_num(a), 0, 1) * 255 + 0.5).astype(np.uint8)


def unit_to_uint8(img: np.ndarray) -> np.ndarray:
    """[0, 1] float image -> uint8 (clipped)."""
    return (np.clip(np.nan_to_num(np.asarray(img, dtype=np.float64)), 0, 1) * 255 + 0.5).astype(np.uint8)


def symmetric_to_uint8(a: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Signed array -> uint8 with 0 at mid-grey (gradients, perturbations): 128 + 127 * a / max|a|."""
    a = np.asarray(a, dtype=np.float64)
    m = float(np.max(np.abs(a))) if scale is None else scale
    if m < 1e-12:
        return np.full(a.shape, 128, dtype=np.uint8)
    return np.clip(128 + 127 * a / m, 0, 255).astype(np.uint8)


def resize(img: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Resize a uint8 image to (width, height)."""
    pil = Image.fromarray(img)
    return np.asarray(pil.resize(size, Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR))


def resize_map(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float HxW map to (width, height) bilinearly, keeping float values."""
    pil = Image.fromarray(np.asarray(m, dtype=np.float32), mode="F")
    return np.asarray(pil.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def colormap(m: np.ndarray, cmap: str = "inferno", lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Float HxW map -> uint8 RGB through a matplotlib colormap."""
    from matplotlib import colormaps

    u = to_uint8(m, lo, hi)
    rgba = colormaps[cmap](u.astype(np.float64) / 255.0)
    return (rgba[..., :3] * 255 + 0.5).astype(np.uint8)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5, cmap: str = "jet",
            lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Blend a float heat map (resized to the image) over a uint8 RGB image."""
    h, w = image.shape[:2]
    if heat.shape != (h, w):
        heat = resize_map(heat, (w, h))
    col = colormap(heat, cmap, lo, hi).astype(np.float64)
    base = image.astype(np.float64)
    if base.ndim == 2:
        base = np.stack([base] * 3, -1)
    return np.clip((1 - alpha) * base + alpha * col, 0, 255).astype(np.uint8)


def mask_overlay(image: np.ndarray, mask: np.ndarray, color=(255, 64, 64), alpha: float = 0.45) -> np.ndarray:
    """Tint the pixels where ``mask`` is true and dim the rest."""
    base = image.astype(np.float64)
    if base.ndim == 2:
        base = np.stack([base] * 3, -1)
    out = base * 0.45
    m = mask.astype(bool)
    out[m] = (1 - alpha) * base[m] + alpha * np.asarray(color, dtype=np.float64)
    return np.clip(out, 0, 255).astype(np.uint8)


def tile(images: list[np.ndarray], columns: int, pad: int = 1, pad_value: int = 255) -> np.ndarray:
    """Tile equally sized uint8 images into one mosaic (for a compact single-image grid)."""
    if not images:
        raise ValueError("nothing to tile")
    h, w = images[0].shape[:2]
    colour = any(i.ndim == 3 for i in images)
    ims = [np.stack([i] * 3, -1) if (colour and i.ndim == 2) else i for i in images]
    rows = (len(ims) + columns - 1) // columns
    shape = (rows * (h + pad) + pad, columns * (w + pad) + pad) + ((3,) if colour else ())
    out = np.full(shape, pad_value, dtype=np.uint8)
    for k, im in enumerate(ims):
        r, c = divmod(k, columns)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = im
    return out


def new_figure(figsize: tuple[float, float]):
    """A ``matplotlib.figure.Figure`` that no pyplot state machine holds: safe in threads, nothing to close,
    independent of the interactive backend. Draw on it with ``fig.subplots(...)``; encode with :func:`figure_to_png`."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


#: a figure's "ink" (titles, axis labels, tick labels, ticks, spines, legend text) and "paper" (legend boxes) are
#: drawn in these two exact colours on a transparent background; the renderer (render/figure_theme.py) paints
#: them in the theme's text and card colours, so one stored figure reads in any theme. FIGURE_MARK (a PNG text
#: chunk) tells it the picture was drawn so. Colours no colormap or technique draws with; the line between them
#: passes no grey and no blend of black.
FIGURE_INK = (12, 64, 36)  # far from black: black text a technique placed (heatmap counts) is never taken for ink
FIGURE_PAPER = (246, 250, 240)  # off the grey diagonal: no grey between ink and paper is taken for a blend
FIGURE_MARK = "reportgen-figure: themable ink"


def _ink_figure(fig) -> None:
    """Recolour a figure's default-black furniture to FIGURE_INK, its white panels to transparent / FIGURE_PAPER.
    Text a technique placed itself (``ax.text`` annotations, e.g. over heatmap cells) keeps its colour."""
    from matplotlib.colors import to_rgba
    from matplotlib.text import Text

    ink = tuple(c / 255 for c in FIGURE_INK)
    paper = tuple(c / 255 for c in FIGURE_PAPER)

    def is_(color, rgb) -> bool:
        try:
            return to_rgba(color)[:3] == rgb
        except ValueError:
            return False

    placed = {id(t) for ax in fig.axes for t in ax.texts}
    for t in fig.findobj(Text):
        if id(t) not in placed and is_(t.get_color(), (0.0, 0.0, 0.0)):
            t.set_color(ink)
    fig.patch.set_facecolor("none")
    for ax in fig.axes:
        if is_(ax.get_facecolor(), (1.0, 1.0, 1.0)):
            ax.set_facecolor("none")
        ax.tick_params(which="both", color=ink)
        for sp in ax.spines.values():
            if is_(sp.get_edgecolor(), (0.0, 0.0, 0.0)):
                sp.set_edgecolor(ink)
    for leg in [ax.get_legend() for ax in fig.axes] + list(fig.legends):
        if leg is not None and is_(leg.get_frame().get_facecolor(), (1.0, 1.0, 1.0)):
            leg.get_frame().set_facecolor(paper)


_UNSEEN = [False]  # this process's sections are discarded (a torchrun rank other than 0): figures are not drawn


def figures_unseen() -> None:
    """From now on :func:`figure_to_png` draws nothing (a 1-pixel PNG): for a process whose sections no one sees
    (:func:`reportgen.features.split.serve`; drawing them would delay its share of the next section)."""
    _UNSEEN[0] = True


def figure_to_png(fig, dpi: int = 110) -> ImageData:
    """Render a matplotlib figure to PNG bytes: transparent, its ink and paper in the colours the renderer paints
    in the report's theme (see FIGURE_INK)."""
    if _UNSEEN[0]:
        return ImageData(array=np.zeros((1, 1, 3), np.uint8))
    _ink_figure(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="none", edgecolor="none",
                metadata={"Description": FIGURE_MARK})
    return ImageData(data=buf.getvalue(), mime="image/png")
