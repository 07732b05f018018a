"""The image set: discovery, robust decoding, labels from folders, and skipped files.

Every image under the folder (recursively) is decoded once up front, so broken files are
found before any technique runs: a corrupt, truncated, empty or absurdly large file is
skipped and listed in the report, never fatal. Modes are converted explicitly: EXIF
orientation is applied, palette/greyscale/CMYK become RGB, RGBA is composited on white,
16-bit and float images are rescaled to 8 bits by their own range.

Labels: when images sit in one sub-folder per class, the folder names are the labels; they
are matched to the model's class names (case, punctuation and a leading number ignored).
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
from PIL import Image, ImageOps

from .errors import ImageSetError
from .labels import WNID, match_file_labels, match_labels
from .preprocess import Preprocessing
from .report import SkippedImage

if TYPE_CHECKING:
    import torch

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
MAX_PIXELS = 120_000_000  # larger images are skipped (decompression-bomb guard)
MAX_FILE_BYTES = 200 * 1024 * 1024


def decode_image(data: bytes, name: str = "") -> Image.Image:
    """Bytes -> RGB PIL image, or raise ValueError with a human reason."""
    if not data:
        raise ValueError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ValueError(f"image too large ({w}x{h} = {w * h / 1e6:.0f} MP; limit {MAX_PIXELS / 1e6:.0f} MP)")
            if w == 0 or h == 0:
                raise ValueError("image has zero width or height")
            if img.format == "JPEG":
                img.draft("RGB", (1024, 1024))  # decode large JPEGs at reduced size: much faster
            img.load()
    except ValueError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ValueError(f"image too large: {e}") from None
    except Exception as e:  # PIL raises OSError, SyntaxError, struct.error... on broken files
        msg = str(e) or type(e).__name__
        if "truncated" in msg:
            msg = "truncated file (" + msg + ")"
        elif "cannot identify image file" in msg:
            msg = "not a readable image (unknown or corrupt format)"
        raise ValueError(msg) from None
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """Apply EXIF orientation and convert any PIL mode to 8-bit RGB."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not lose the image
        pass
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        if mode.startswith("I;16") or (mode == "I" and hi > 255):
            lo, hi = (0.0, 65535.0) if hi > 255 else (0.0, 255.0)
        a = np.zeros_like(a) if hi - lo < 1e-12 else (a - lo) / (hi - lo) * 255.0
        img = Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), mode="L")
        mode = "L"
    if mode == "P":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA") or (mode == "RGB" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if mode == "CMYK":
        return img.convert("RGB")
    if mode != "RGB":
        img = img.convert("RGB")
    return img


@dataclass
class ImageRecord:
    index: int
    path: Path
    rel: str  # path relative to the image folder (POSIX), shown in the report
    sha256: str
    width: int
    height: int
    label: int | None = None  # class index in the model's label list
    label_name: str | None = None  # the folder / file name the label came from


class ImageSet:
    """The valid images of a folder, decoded lazily through a bounded cache of model-size arrays."""

    def __init__(
        self,
        root: Path,
        records: list[ImageRecord],
        skipped: list[SkippedImage],
        pre: Preprocessing,
        label_source: str | None,
        cache_bytes: int = 512 * 1024 * 1024,
    ):
        self.root = root
        self.records = records
        self.skipped = skipped
        self.pre = pre
        self.label_source = label_source
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.records)

    @property
    def has_labels(self) -> bool:
        return any(r.label is not None for r in self.records)

    @property
    def labels(self) -> np.ndarray:
        """Class index per image (-1 where unknown)."""
        return np.array([-1 if r.label is None else r.label for r in self.records], dtype=np.int64)

    def content_hash(self) -> str:
        """Hash of the image bytes, their order and the preprocessing: a cache key for the set."""
        h = hashlib.sha256()
        h.update(repr(self.pre.to_dict()).encode())
        for r in self.records:
            h.update(r.sha256.encode())
        return h.hexdigest()

    def pil(self, i: int) -> Image.Image:
        """The original image (RGB, full size)."""
        r = self.records[i]
        return decode_image(r.path.read_bytes(), r.rel)

    def array(self, i: int) -> np.ndarray:
        """uint8 HxWx3 at the model's input size (resized + centre-cropped)."""
        a = self._cache.get(i)
        if a is not None:
            self._cache.move_to_end(i)
            return a
        a = self.pre.pil_to_array(self.pil(i))
        self._put(i, a)
        return a

    def _put(self, i: int, a: np.ndarray) -> None:
        if a.nbytes > self._cache_bytes:
            return
        self._cache[i] = a
        self._cached_bytes += a.nbytes
        while self._cached_bytes > self._cache_bytes and self._cache:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= old.nbytes

    def tensor(self, i: int):
        """float CxHxW in [0, 1] (torch)."""
        return Preprocessing.array_to_tensor(self.array(i))

    def batch(self, indices: list[int]) -> torch.Tensor:
        """float NxCxHxW in [0, 1] (torch) for the given image indices."""
        import torch

        return torch.stack([self.tensor(i) for i in indices])

    def batches(self, batch_size: int, indices: list[int] | None = None) -> Iterator[tuple[list[int], torch.Tensor]]:
        """Yield (indices, tensor batch in [0, 1]) over the set (or the given indices)."""
        idx = list(range(len(self))) if indices is None else list(indices)
        for s in range(0, len(idx), batch_size):
            chunk = idx[s:s + batch_size]
            yield chunk, self.batch(chunk)

    def thumbnail(self, i: int, size: int = 96) -> np.ndarray:
        """uint8 thumbnail (the model-size array, downscaled) for mosaics and grids."""
        a = self.array(i)
        if max(a.shape[:2]) <= size:
            return a
        return np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.BILINEAR))

    def display(self, i: int, size: int | None = None) -> np.ndarray:
        """The model-input image as uint8, optionally resized to ``size`` pixels square."""
        a = self.array(i)
        if size and a.shape[0] != size:
            a = np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.BILINEAR))
        return a

    def name(self, i: int) -> str:
        return self.records[i].rel

    def image_id(self, i: int) -> str:
        """A stable id of image ``i`` for links (images/<id>.html): the first 12 hex digits of its file's SHA-256,
        with ``-2``, ``-3``... for later files with the same bytes."""
        ids = self.__dict__.get("_ids")
        if ids is None or len(ids) != len(self.records):
            seen: dict[str, int]
            ids, seen = [], {}
            for r in self.records:
                base = r.sha256[:12]
                seen[base] = seen.get(base, 0) + 1
                ids.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
            self.__dict__["_ids"] = ids
        return ids[i]


def check_images_arg(folder: str | Path) -> list[Path] | None:
    """What ``--images`` names, checked before anything is loaded: the files a glob matches (None for a folder or
    a file); :class:`ImageSetError` when it names nothing."""
    root, pattern = Path(folder), str(folder)
    if not root.exists() and glob.has_magic(pattern):
        files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        if not files:
            raise ImageSetError(f"no file matches {pattern}")
        return files
    if not root.exists():
        raise ImageSetError(f"image folder {root} does not exist")
    return None


def discover_images(
    folder: str | Path,
    pre: Preprocessing,
    class_names: list[str],
    max_images: int | None = None,
    seed: int = 0,
    progress: Callable | None = None,
    cache=None,
) -> ImageSet:
    """Find, decode and validate every image under ``folder``; raise ImageSetError if none is usable.

    With a ``cache`` (:class:`reportgen.cache.Cache`), what decoding found (SHA-256 and size, or why the file
    was skipped) is remembered per file path, size and modification time, so a rebuild reads no image.
    """
    root = Path(folder)
    globbed = check_images_arg(folder)
    if globbed is not None:  # --images 'photos/*.jpg' (quoted: not expanded by the shell)
        files = globbed
        root = Path(os.path.commonpath([str(p.parent) for p in files]))
    elif root.is_file():
        files = [root]
        root = root.parent
    else:  # symbolic links that lead nowhere (or in a loop) are kept, to be listed as skipped with the reason
        files = sorted(
            (p for p in root.rglob("*") if (p.is_file() or p.is_symlink() and not p.is_dir())
             and not any(part.startswith(".") for part in p.relative_to(root).parts)),
            key=lambda p: p.relative_to(root).as_posix(),
        )
    candidates = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    skipped: list[SkippedImage] = []
    if not candidates:
        others = len(files)
        raise ImageSetError(
            f"no images found under {root}"
            + (f" ({others} other files; supported extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})" if others
               else " (the folder is empty)")
        )
    if max_images is not None and len(candidates) > max_images:
        rng = np.random.default_rng(seed)
        keep = sorted(rng.choice(len(candidates), size=max_images, replace=False).tolist())
        candidates = [candidates[k] for k in keep]

    # labels: one sub-folder per class?
    rels = [p.relative_to(root) for p in candidates]
    folder_names = [r.parts[0] if len(r.parts) >= 2 else None for r in rels]
    label_source = None
    mapping: dict[str, int] = {}
    distinct = sorted({f for f in folder_names if f is not None})
    if all(f is not None for f in folder_names) and len(distinct) >= 2 and class_names:
        mapping, n = match_labels(distinct, class_names)
        if n == len(distinct):
            label_source = "sub-folder names"
        elif n:
            label_source = f"sub-folder names ({n} of {len(distinct)} folders matched a class name)"
    file_labels: list[int | None] | None = None
    if label_source is None and class_names:
        file_labels = match_file_labels([p.stem for p in candidates], class_names)
        if sum(k is not None for k in file_labels) >= 0.8 * len(candidates):
            label_source = "file names"
            folder_names = [WNID.sub("", p.stem) for p in candidates]
        else:
            file_labels = None

    records: list[ImageRecord] = []
    for j, (p, fname, found) in enumerate(zip(candidates, folder_names,
                                              _checked_files(candidates, root, progress, cache))):
        rel = p.relative_to(root).as_posix()
        if isinstance(found, str):
            skipped.append(SkippedImage(rel, found))
            continue
        label = file_labels[j] if file_labels is not None else \
            mapping.get(fname) if (label_source and fname is not None) else None
        records.append(
            ImageRecord(
                index=len(records), path=p, rel=rel, sha256=found[0], width=found[1], height=found[2],
                label=label, label_name=fname if label_source else None,
            )
        )
    if not records:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:5])
        raise ImageSetError(f"none of the {len(candidates)} image files under {root} could be read ({reasons})")
    return ImageSet(root, records, skipped, pre, label_source)


def _check_file(p: Path, rel: str) -> tuple[str, int, int] | str:
    """(sha256, width, height) of a readable image file, or the reason it is skipped."""
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ValueError(f"file too large ({size / 1e6:.0f} MB)")
        data = p.read_bytes()
        img = decode_image(data, rel)
    except (OSError, ValueError) as e:  # OSError: its reason alone, not the (long, absolute) path
        return e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    return hashlib.sha256(data).hexdigest(), img.size[0], img.size[1]


def _checked_files(files: list[Path], root: Path, progress: Callable | None, cache) -> list:
    """:func:`_check_file` for each file, remembered in ``cache`` by (path, size, mtime) of the whole list."""
    key = None
    if cache is not None and getattr(cache, "enabled", False):
        from .cache import code_digest, digest

        stats: list[tuple[str, int, int, int]] | None = []
        for p in files:
            try:
                st = p.stat()
                assert stats is not None  # set to None only on the way out of the loop
                stats.append((str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ino))
            except OSError:
                stats = None  # something changes or is broken: check for real
                break
        if stats is not None:
            key = digest("image-scan", code_digest(__name__), MAX_PIXELS, MAX_FILE_BYTES, stats)
            hit = cache.get(key)
            if isinstance(hit, list) and len(hit) == len(files):
                return [tuple(h) if isinstance(h, (list, tuple)) else h for h in hit]
    it = files if progress is None else progress(files, "Reading images")
    found = [_check_file(p, p.relative_to(root).as_posix()) for p in it]
    if key is not None:
        cache.put(key, found)
    return found
