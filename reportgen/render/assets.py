"""Image assets: encode arrays (PNG, JPEG for photographs), name files by content hash, or inline them as data: URIs.

Every file name is derived from a SHA-256 of the bytes written, never from user data, so nothing
can escape ``out_dir/assets`` and identical pictures are written once.

Re-rendering (another theme, a warm rebuild) repeats no work on pictures: encoded bytes are kept in the cache,
one entry per section keyed by the SHA-256 of its pixel arrays (:meth:`AssetStore.begin_section`), and a file
the report being replaced already holds with the same bytes is hard-linked instead of written again.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..report import ImageData

ASSETS_DIRNAME = "assets"
HASH_LEN = 16

# mime -> file extension; anything else is decoded with Pillow and re-encoded as PNG.
MIME_EXT = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/svg+xml": "svg",
}

# Picture policy, not page layout (that is CSS, themes/_base.css): a picture's display size is an integer
# multiple of its pixel size, which the stylesheet cannot compute. Page layout (grid gaps, room for labels,
# columns that fit the page) lives in the stylesheet's :root variables.
# Pixelated pictures (filters, activations) are scaled up by an integer factor to at least this many CSS px.
MIN_PIXELATED_PX = 64
MIN_PIXELATED_CELL_PX = 48
# Pictures computed at a small model's input size (CIFAR 32 px, MNIST 28 px) are shown at least this big,
# enlarged by an integer factor with nearest-neighbour so every input pixel stays a crisp square.
MIN_PICTURE_PX = 128
MAX_AUTO_CELL_PX = 160


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:HASH_LEN]


def encode_png(a: np.ndarray) -> bytes:
    """uint8 HxW / HxWx3 / HxWx4 -> PNG bytes (deterministic for a given array)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


# Photographs (inputs, overlays on them, smooth heat maps) are stored as JPEG when that is much smaller than PNG:
# a published report of a real model is mostly such pictures. Quality 92 without chroma subsampling keeps heat-map
# edges and thin outlines clean; pixelated pictures and small ones stay PNG (exact pixels matter there).
JPEG_QUALITY = 92
JPEG_MIN_SIDE = 96
JPEG_MAX_RATIO = 0.6  # JPEG only when it is at most this fraction of the PNG's size


def encode_jpeg(a: np.ndarray) -> bytes:
    """uint8 HxW / HxWx3 -> JPEG bytes (quality 92, 4:4:4; deterministic for a given array)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buf.getvalue()


def encode_array(a: np.ndarray, pixelated: bool = False) -> tuple[bytes, str]:
    """(bytes, mime): PNG, or JPEG for a photograph-like picture where it is much smaller."""
    png = encode_png(a)
    opaque = a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)
    if pixelated or not opaque or min(a.shape[:2]) < JPEG_MIN_SIDE:
        return png, "image/png"
    try:
        jpg = encode_jpeg(a)
    except OSError:  # an encoder hiccup costs bytes, never the picture
        return png, "image/png"
    return (jpg, "image/jpeg") if len(jpg) <= JPEG_MAX_RATIO * len(png) else (png, "image/png")


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    return None


_SVG_NUM = r"([0-9]+(?:\.[0-9]+)?)"


def _svg_size(data: bytes) -> tuple[int, int] | None:
    head = data[:4096].decode("utf-8", "replace")
    m = re.search(r"<svg\b[^>]*>", head, re.S)
    if not m:
        return None
    tag = m.group(0)
    w = re.search(r'\bwidth\s*=\s*["\']\s*' + _SVG_NUM + r"\s*(?:px|pt)?\s*[\"']", tag)
    h = re.search(r'\bheight\s*=\s*["\']\s*' + _SVG_NUM + r"\s*(?:px|pt)?\s*[\"']", tag)
    if w and h:
        return max(1, round(float(w.group(1)))), max(1, round(float(h.group(1))))
    vb = re.search(r'\bviewBox\s*=\s*["\']\s*[-0-9.]+[\s,]+[-0-9.]+[\s,]+' + _SVG_NUM + r"[\s,]+" + _SVG_NUM, tag)
    if vb:
        return max(1, round(float(vb.group(1)))), max(1, round(float(vb.group(2))))
    return None


def _pil_size(data: bytes) -> tuple[int, int] | None:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return int(im.width), int(im.height)
    except Exception:
        return None


def _is_encoded(data, mime) -> bool:
    """A cached encoding is used only if it is what :func:`encode_array` makes: PNG or JPEG bytes."""
    return isinstance(data, bytes) and (
        (mime == "image/png" and data[:8] == b"\x89PNG\r\n\x1a\n")
        or (mime == "image/jpeg" and data[:3] == b"\xff\xd8\xff"))


@dataclass(frozen=True)
class Asset:
    """One encoded picture: where it lives (relative to out_dir) and its natural size."""

    path: str  # "assets/<hash>.<ext>" (POSIX, relative to out_dir)
    mime: str
    width: int  # natural size in pixels (best effort for SVG)
    height: int
    data: bytes

    def data_uri(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


@dataclass(frozen=True)
class ImageRef:
    """What a template needs to write an <img>: src and display size in CSS px."""

    src: str
    width: int
    height: int
    pixelated: bool
    asset: Asset
    error: str = ""  # set when the picture could not be encoded (a placeholder is shown instead)


# Part of every encoded-picture cache key, with the digest of this module's code (AssetStore._code).
ENCODING = f"png6+jpeg{JPEG_QUALITY}:444<={JPEG_MAX_RATIO}>={JPEG_MIN_SIDE}"


class AssetStore:
    """Collects assets for one render; writes each distinct picture once (or only keeps it for inlining).

    ``encoded``: a cache (``get(key)`` / ``put(key, obj)``, e.g. :class:`reportgen.cache.Cache`) of encoded
    pictures, so a re-render does not encode again. ``link_from``: the folder of the report being replaced;
    an asset it holds with exactly the bytes to write is hard-linked (content-addressed names make that safe).
    """

    def __init__(self, out_dir: Path, write: bool = True, encoded=None, link_from: Path | None = None,
                 paint=None):
        self.out_dir = Path(out_dir)
        self.dir = self.out_dir / ASSETS_DIRNAME
        self.write = write
        self.assets: dict[str, Asset] = {}  # path -> Asset
        self._by_obj: dict[int, tuple[ImageData, Asset]] = {}  # id(ImageData) -> asset (keeps obj alive)
        self._by_array: dict[str, Asset] = {}  # array key -> asset (skip re-encoding)
        self._keys: dict[int, tuple[ImageData, str]] = {}  # id(ImageData) -> (obj, array key)
        self.encoded = encoded
        self._code = ""  # the encoders' code digest, read once a cache is there to key
        if encoded is not None:
            from ..cache import code_digest

            self._code = code_digest(__name__)
        self._memo: dict[str, tuple[bytes, str]] = {}  # array key -> (bytes, mime) from / for the cache
        self._section: tuple[str, str, list[str]] | None = None  # (key, per-name key, array keys) of the open one
        self._section_new = False
        self.link_from = Path(link_from) / ASSETS_DIRNAME if link_from is not None else None
        self.files_written = 0
        self.files_linked = 0
        self.encoded_hits = 0
        self._root: Path | None = None
        self.errors: dict[int, str] = {}  # id(ImageData) -> why it could not be encoded
        self.paint = paint  # encoded PNG -> PNG: figures painted in the theme (render/figure_theme.py)

    # -- the encoded-picture cache, one entry per section -----------------------------------------
    def _array_key(self, img: ImageData) -> str:
        hit = self._keys.get(id(img))
        if hit is not None and hit[0] is img:
            return hit[1]
        a = np.ascontiguousarray(img.array)
        h = hashlib.sha256(f"{ENCODING}|{self._code}|{a.shape}|{a.dtype.str}|{bool(img.pixelated)}|".encode())
        h.update(a.data if a.dtype != object else repr(a.tolist()).encode())
        key = h.hexdigest()
        self._keys[id(img)] = (img, key)
        return key

    def begin_section(self, images: list[ImageData], name: str = "") -> None:
        """Load the cached encodings of these pictures (one section's, called ``name``): the entry for exactly
        this set of pictures, else the last one stored for ``name`` (a section that changed in part keeps the
        encodings of its unchanged pictures; each is keyed by its own content, so a stale entry is harmless)."""
        self.end_section()
        if self.encoded is None:
            return
        keys = sorted({self._array_key(im) for im in images if im.array is not None})
        if not keys:
            return
        ck = hashlib.sha256(("encoded-pictures|" + "|".join(keys)).encode()).hexdigest()
        latest = hashlib.sha256(f"encoded-pictures-of|{ENCODING}|{self._code}|{name}".encode()).hexdigest()
        self._section, self._section_new = (ck, latest, keys), False
        got = self.encoded.get(ck)
        if got is None:
            ref = self.encoded.get(latest)
            got = self.encoded.get(ref) if isinstance(ref, str) and re.fullmatch(r"[0-9a-f]{64}", ref) else None
        if isinstance(got, dict):
            for k, v in got.items():
                if isinstance(k, str) and isinstance(v, tuple) and len(v) == 2 and _is_encoded(*v):
                    self._memo.setdefault(k, v)

    def end_section(self) -> None:
        """Store the open section's encodings when some of them were new."""
        if self._section is not None and self._section_new and self.encoded is not None:
            ck, latest, keys = self._section
            self.encoded.put(ck, {k: self._memo[k] for k in keys if k in self._memo})
            self.encoded.put(latest, ck)
        self._section, self._section_new = None, False

    # -- encoding -------------------------------------------------------------------------------
    def add(self, img: ImageData) -> Asset:
        hit = self._by_obj.get(id(img))
        if hit is not None and hit[0] is img:
            return hit[1]
        try:
            asset = self._encode(img)
        except Exception as e:  # one undecodable picture must not sink the whole report
            self.errors[id(img)] = f"image could not be rendered: {type(e).__name__}: {e}"
            asset = self._store(encode_png(_placeholder()), "image/png", (64, 48))
        self._by_obj[id(img)] = (img, asset)
        return asset

    def _encode(self, img: ImageData) -> Asset:
        if img.array is not None:
            a = np.asarray(img.array)
            key = self._array_key(img)
            cached = self._by_array.get(key)
            if cached is not None:
                return cached
            memo = self._memo.get(key)
            if memo is not None:
                data, mime = memo
                self.encoded_hits += 1
            else:
                data, mime = encode_array(a, img.pixelated)
                self._memo[key] = (data, mime)
                self._section_new = True
            asset = self._store(data, mime, (int(a.shape[1]), int(a.shape[0])))
            self._by_array[key] = asset
            return asset
        data = bytes(img.data or b"")
        mime = (img.mime or "").strip().lower()
        if mime not in MIME_EXT:
            # Unknown type: let Pillow decode it and re-encode as PNG (raises a clear error when it can't).
            try:
                im: Image.Image
                with Image.open(io.BytesIO(data)) as im:
                    im.load()
                    if im.mode not in ("L", "RGB", "RGBA"):
                        im = im.convert("RGBA")
                    buf = io.BytesIO()
                    im.save(buf, format="PNG")
            except Exception as e:
                raise ValueError(f"cannot render an image of type {img.mime!r}: {e}") from None
            data, mime = buf.getvalue(), "image/png"
        if mime == "image/png":
            data = self.paint(data) if self.paint is not None else data
            size = _png_size(data) or _pil_size(data)
        elif mime == "image/svg+xml":
            size = _svg_size(data)
        else:
            size = _pil_size(data)
        return self._store(data, mime, size)

    def _store(self, data: bytes, mime: str, size: tuple[int, int] | None) -> Asset:
        path = f"{ASSETS_DIRNAME}/{content_hash(data)}.{MIME_EXT[mime]}"
        existing = self.assets.get(path)
        if existing is not None:
            return existing
        w, h = size or (640, 480)
        # Bytes are only kept for inlining (single-file); written assets are not held in memory.
        asset = Asset(path=path, mime=mime, width=max(1, w), height=max(1, h), data=b"" if self.write else data)
        self.assets[path] = asset
        if self.write:
            self.write_file(path, data)
        return asset

    def write_file(self, rel: str, data: bytes) -> str:
        """Write ``data`` to ``out_dir/rel`` (rel is renderer-made: assets/<hash>.<ext>); refuse anything else."""
        folder, _, name = rel.partition("/")
        if folder != ASSETS_DIRNAME or not re.fullmatch(r"[a-z0-9-]+\.[a-z0-9]+", name):
            raise ValueError(f"refusing to write an asset outside {self.dir}: {rel!r}")
        if self._root is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._root = self.dir.resolve()
        if not self._link(name, data):
            (self._root / name).write_bytes(data)
            self.files_written += 1
        return rel

    def _link(self, name: str, data: bytes) -> bool:
        """Hard-link ``name`` from the report being replaced when it holds exactly ``data`` (a new file is
        ~30x dearer than a link on common file systems); False when it does not or linking fails."""
        if self.link_from is None:
            return False
        old = self.link_from / name
        assert self._root is not None  # write_file sets it before linking
        try:
            if not old.is_file() or old.is_symlink() or old.stat().st_size != len(data) or old.read_bytes() != data:
                return False
            os.link(old, self._root / name)
        except OSError:
            return False
        self.files_linked += 1
        return True

    # -- display ----------------------------------------------------------------------------------
    def ref(self, img: ImageData, root: str, inline: bool, width: int | None = None) -> ImageRef:
        """An <img> reference. ``width`` (CSS px) overrides the picture's own ``display_width``."""
        asset = self.add(img)
        raster = img.array is not None  # computed pixels (not a matplotlib plot, which has its own resolution)
        w, h = display_size(asset.width, asset.height, width or img.display_width, img.pixelated, raster)
        src = asset.data_uri() if inline else root + asset.path
        nearest = bool(img.pixelated) or (raster and w >= 2 * asset.width)  # enlarged pixels stay square
        return ImageRef(src=src, width=w, height=h, pixelated=nearest, asset=asset,
                        error=self.errors.get(id(img), ""))


def _placeholder() -> np.ndarray:
    """A grey 64x48 tile with a cross: stands in for a picture that could not be encoded."""
    a = np.full((48, 64), 200, dtype=np.uint8)
    a[[0, -1], :] = 150
    a[:, [0, -1]] = 150
    for i in range(48):
        j = int(i * 64 / 48)
        a[i, min(j, 63)] = a[i, 63 - min(j, 63)] = 120
    return a


def display_size(w: int, h: int, want_w: int | None, pixelated: bool, raster: bool = False) -> tuple[int, int]:
    """CSS display size: the requested width (keeping aspect), or an integer upscale for small pixelated art
    (to ``MIN_PIXELATED_PX``) and for small computed pictures such as 32-px inputs (to ``MIN_PICTURE_PX``)."""
    if want_w:
        dw = max(1, int(want_w))
    elif pixelated and max(w, h) < MIN_PIXELATED_PX:
        dw = w * math.ceil(MIN_PIXELATED_PX / max(w, h))
    elif raster and not pixelated and max(w, h) < MIN_PICTURE_PX:
        dw = w * math.ceil(MIN_PICTURE_PX / max(w, h))
    else:
        dw = w
    dh = max(1, round(h * dw / w))
    return dw, dh


def auto_cell_width(sizes: list[tuple[int, int]], min_px: int = MIN_PIXELATED_CELL_PX) -> int:
    """Cell width for a grid without ``cell_width``: small pictures get an integer upscale to at least ``min_px``
    (so 3x3..28x28 filters and activations stay visible and crisp), big ones are capped."""
    if not sizes:
        return 96
    w = max(max(s[0], s[1]) for s in sizes)
    if w < min_px:
        return w * math.ceil(min_px / w)
    return min(w, MAX_AUTO_CELL_PX)
