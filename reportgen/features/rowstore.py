"""Big per-image matrices (penultimate features, pixel vectors) as memory-mapped ``.npy`` files in the cache.

A pass over 100,000 images must not hold N x D arrays in Python lists: :class:`RowStore` preallocates the
N-row matrix as a numpy memmap in the user cache directory (``<key[:2]>/<key>.npy``, beside the pickled
entries, so ``reportgen cache clear`` and the size cap manage it too), rows are written batch by batch, and the
finished file is renamed into place atomically. The pickled cache entry then holds only an :class:`ArrayRef`,
and :func:`resolve` maps the file back read-only: the OS pages in the rows a technique touches.

Without a cache (``--no-cache``) the matrix is an ordinary preallocated array in memory.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

if TYPE_CHECKING:
    from ..context import Ctx


@dataclass(frozen=True)
class ArrayRef:
    """A matrix stored as ``<key>.npy`` in the cache (picklable stand-in for the array)."""

    key: str
    shape: tuple[int, ...]
    dtype: str


def array_key(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def _path(cache, key: str) -> Path:
    return Path(cache.dir) / key[:2] / f"{key}.npy"



class RowStore:
    """An N x D matrix filled by rows: memory-mapped in the cache when there is one, else in memory."""

    def __init__(self, cache, key: str, n: int, d: int, dtype=np.float16):
        self.key, self.cache = key, cache
        self.final: Path | None = None
        self.part: Path | None = None
        self.array: np.ndarray
        if cache is not None and getattr(cache, "enabled", False):
            try:
                self.final = _path(cache, key)
                self.final.parent.mkdir(parents=True, exist_ok=True)
                self.part = self.final.with_name(f"{key}.{os.getpid()}.npy.part")
                self.array = np.lib.format.open_memmap(self.part, mode="w+", dtype=dtype, shape=(n, d))
                return
            except OSError:  # a full or read-only cache only costs memory
                self.final = self.part = None
        self.array = np.empty((n, d), dtype=dtype)

    def write(self, start: int, rows: np.ndarray) -> None:
        self.array[start:start + len(rows)] = rows

    def finish(self) -> tuple[np.ndarray, ArrayRef | None]:
        """(the matrix, read-only when mapped; its ArrayRef for the cache entry, or None when in memory)."""
        if self.part is None:
            return self.array, None
        ref = ArrayRef(self.key, tuple(self.array.shape), str(self.array.dtype))
        try:
            assert self.final is not None  # set together with part
            cast(np.memmap, self.array).flush()
            del self.array
            os.replace(self.part, self.final)
            return np.load(self.final, mmap_mode="r"), ref
        except OSError:
            arr = np.load(self.part) if self.part.exists() else None
            if arr is None:
                raise
            return arr, None

    def discard(self) -> None:
        if self.part is not None:
            try:
                self.part.unlink()
            except OSError:
                pass


def resolve(value, cache) -> np.ndarray | None:
    """An array, or the memory-mapped file an :class:`ArrayRef` names (None when it is gone or different)."""
    if not isinstance(value, ArrayRef):
        return value
    if cache is None or not getattr(cache, "enabled", False):
        return None
    for base in [cache.dir, *getattr(cache, "read_dirs", [])]:
        p = Path(base) / value.key[:2] / f"{value.key}.npy"
        try:
            arr = np.load(p, mmap_mode="r")
        except (OSError, ValueError):
            continue
        if tuple(arr.shape) == tuple(value.shape) and str(arr.dtype) == value.dtype:
            if base == cache.dir:
                try:
                    os.utime(p)  # least recently used goes first when the cache is trimmed
                except OSError:
                    pass
            return arr
    return None


class Rows:
    """The per-image matrices of a pass: logits (float32), penultimate features and pixels (float16)."""

    def __init__(self, ctx: Ctx, n: int, key: str | None):
        self.ctx, self.n, self.key = ctx, n, key
        self.stores: dict[str, RowStore] = {}

    def write(self, name: str, rows: np.ndarray, where: list[int], dtype) -> None:
        st = self.stores.get(name)
        if st is None:
            cache = self.ctx.cache if self.key is not None and name != "logits" else None
            st = self.stores[name] = RowStore(cache, array_key(self.key or "", name), self.n, rows.shape[1], dtype)
        if len(where) and where[-1] - where[0] == len(where) - 1:
            st.write(where[0], rows)
        else:
            st.array[np.asarray(where)] = rows

    def finish(self):
        out = {name: st.finish() for name, st in self.stores.items()}
        return {k: v[0] for k, v in out.items()}, {k: v[1] for k, v in out.items()}

    def discard(self) -> None:
        for st in self.stores.values():
            st.discard()
