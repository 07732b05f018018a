"""The explorer's catalogue of the whole image set (machinery for the embedding section, not a technique):
ids, names, labels, top-k predictions, 2-D positions, thumbnail sprite sheets and neighbour lists, as a
:class:`reportgen.report.Explorer` block the renderer turns into explorer.html and a page per image."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image

from ..report import Explorer, ImageData
from ._layout import Layout, knn, pca
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..context import Ctx

TOPK = 5
NEIGHBOURS = 6
SHEET = 32  # thumbnails per side of one sprite sheet (1,024 per sheet)
BIG_THUMB = 64  # thumbnail side for sets up to SMALL_SET images (decoded from the images)
SMALL_SET = 5000  # above: 32-px thumbnails from the feature pass's pixel vectors (no decoding)
SPRITE_QUALITY = 82


def top_k(logits: np.ndarray, k: int = TOPK) -> tuple[np.ndarray, np.ndarray]:
    """(classes, softmax probabilities) of the ``k`` most probable classes per row, in blocks (bounded memory)."""
    n, c = logits.shape
    k = min(k, c)
    cls = np.zeros((n, k), np.int32)
    prob = np.zeros((n, k), np.float32)
    for s in range(0, n, 4096):
        z = logits[s:s + 4096].astype(np.float32)
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(1, keepdims=True)
        part = np.argpartition(-p, k - 1, axis=1)[:, :k]
        pp = np.take_along_axis(p, part, 1)
        o = np.argsort(-pp, axis=1, kind="stable")
        cls[s:s + 4096] = np.take_along_axis(part, o, 1)
        prob[s:s + 4096] = np.take_along_axis(pp, o, 1)
    return cls, prob


def thumbnails(ctx: Ctx, feats, n: int) -> tuple[int, Callable[[int], np.ndarray]]:
    """(side, i -> uint8 side x side x 3): decoded thumbnails for small sets, the pixel vectors for big ones."""
    pix = getattr(feats, "pixels", None)
    if n > SMALL_SET and pix is not None:
        s = int(feats.pixel_size)

        def from_pixels(i: int) -> np.ndarray:
            a = np.asarray(pix[i], dtype=np.float32).reshape(3, s, s).transpose(1, 2, 0)
            return np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return s, from_pixels

    def decoded(i: int) -> np.ndarray:
        a = ctx.images.thumbnail(i, BIG_THUMB)
        a = a if a.ndim == 3 else np.repeat(a[:, :, None], 3, 2)
        if a.shape[0] != BIG_THUMB or a.shape[1] != BIG_THUMB:
            a = np.asarray(Image.fromarray(a[:, :, :3]).resize((BIG_THUMB, BIG_THUMB), Image.Resampling.BILINEAR))
        return a[:, :, :3]
    return BIG_THUMB, decoded


def sprite_sheets(n: int, side: int, thumb) -> list[ImageData]:
    """JPEG sheets of ``SHEET`` x ``SHEET`` thumbnails, row-major in image order (the last one cropped)."""
    per = SHEET * SHEET
    sheets = []
    for s in range(0, n, per):
        m = min(per, n - s)
        rows = -(-m // SHEET)
        canvas = np.full((rows * side, SHEET * side, 3), 255, np.uint8)
        for j in range(m):
            r, c = divmod(j, SHEET)
            canvas[r * side:(r + 1) * side, c * side:(c + 1) * side] = thumb(s + j)
        buf = io.BytesIO()
        Image.fromarray(canvas).save(buf, format="JPEG", quality=SPRITE_QUALITY, optimize=True)
        sheets.append(ImageData(data=buf.getvalue(), mime="image/jpeg"))
    return sheets


def pixel_neighbours(feats, seed: int, k: int = NEIGHBOURS) -> np.ndarray | None:
    """Nearest neighbours in pixel space (the 32x32 pixel vectors after PCA to 50), or None without them."""
    pix = getattr(feats, "pixels", None)
    if pix is None or len(pix) < 2:
        return None
    x = np.asarray(pix, dtype=np.float32)
    x = x - x.mean(0, keepdims=True)
    x50 = pca(x, 50, seed)[0] if x.shape[1] > 50 else x
    return knn(x50, k, seed)[0].astype(np.int32)


def explorer_block(ctx: Ctx, feats, lay: Layout, mosaic: ImageData | None = None, cells: np.ndarray | None = None,
                   grid: int = 0) -> Explorer:
    """The catalogue of every image; rows of ``lay`` that were not embedded get NaN positions."""
    n = len(ctx.images)
    cls, prob = top_k(feats.logits)
    xy = np.full((n, 2), np.nan, np.float32)
    pos = lay.xy if lay.xy is not None else lay.pca2
    xy[lay.idx] = pos
    fnn = np.full((n, NEIGHBOURS), -1, np.int32)
    k = min(NEIGHBOURS, lay.feature_nn.shape[1])
    fnn[lay.idx, :k] = lay.idx[lay.feature_nn[:, :k]]
    side, thumb = thumbnails(ctx, feats, n)
    names = [ctx.class_name(c) for c in range(int(feats.logits.shape[1]))]
    return Explorer(
        ids=[ctx.images.image_id(i) for i in range(n)], names=[ctx.images.name(i) for i in range(n)],
        labels=np.asarray(ctx.images.labels, np.int32), topk=cls, topk_p=prob, class_names=names, xy=xy,
        sprites=sprite_sheets(n, side, thumb), thumb=side, sheet=SHEET, feature_nn=fnn,
        pixel_nn=pixel_neighbours(feats, ctx.seed_for("embedding/pixel-nn")),
        method=lay.method if lay.xy is not None else "PCA",
        mosaic=mosaic, mosaic_cells=cells, mosaic_grid=int(grid),
        caption=((f"All {n} images" if len(lay.idx) == n else f"{len(lay.idx)} of {n} images (a seeded subsample)")
                 + f", placed by {lay.method if lay.xy is not None else 'PCA'} of the penultimate features"
                 f" ({feats.penultimate_source})."))
