"""A content-addressed cache of computed results (feature passes, technique sections).

Keys are SHA-256 digests of everything a result depends on (model weights, preprocessing,
image bytes, layer, options, code version), so a re-render with a new theme or an extra
section recomputes nothing it already has, and any change of input misses cleanly.

The cache lives inside the output folder (``<out>/.cache/``), so nothing is written outside it:
a build reads entries from the previous report's cache and writes new ones into the report
being built; when that report is swapped in, unused old entries are carried over.

Entries are pickles, read back with an unpickler that only admits numpy and reportgen's own
plain-data classes, so a tampered cache file cannot run code.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

CACHE_DIRNAME = ".cache"
CODE_VERSION = "2"  # bump when a technique's output format changes

_ALLOWED_MODULES = ("builtins", "collections", "numpy", "numpy.core.multiarray", "numpy._core.multiarray",
                    "numpy.core.numeric", "numpy._core.numeric", "numpy.dtypes", "reportgen.report", "reportgen.features",
                    "datetime", "_codecs", "copyreg")
_BUILTINS_OK = {"list", "dict", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int", "float",
                "complex", "bool", "slice", "range", "NoneType", "object"}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "builtins" and name not in _BUILTINS_OK:
            raise pickle.UnpicklingError(f"cache entry refers to builtins.{name}")
        if module == "copyreg" and name not in ("_reconstructor",):
            raise pickle.UnpicklingError(f"cache entry refers to copyreg.{name}")
        if module == "_codecs" and name != "encode":
            raise pickle.UnpicklingError(f"cache entry refers to _codecs.{name}")
        if not (module in _ALLOWED_MODULES or module.startswith("numpy.")):
            raise pickle.UnpicklingError(f"cache entry refers to {module}.{name}, which is not allowed")
        return super().find_class(module, name)


def digest(*parts: Any) -> str:
    """SHA-256 of a JSON rendering of ``parts`` (dicts sorted; unknown objects via repr)."""
    h = hashlib.sha256()
    h.update(json.dumps(parts, sort_keys=True, default=repr).encode())
    return h.hexdigest()


class Cache:
    """Read from ``read_dirs`` (old reports' caches), write to ``write_dir``."""

    def __init__(self, write_dir: Path | None, read_dirs: list[Path] | None = None, enabled: bool = True):
        self.write_dir = write_dir
        self.read_dirs = [d for d in (read_dirs or []) if d is not None]
        self.enabled = enabled and write_dir is not None
        self.hits = 0
        self.misses = 0

    def _path(self, base: Path, key: str) -> Path:
        return base / key[:2] / f"{key}.pkl"

    def get(self, key: str) -> Any | None:
        if not self.enabled:
            return None
        for base in [self.write_dir, *self.read_dirs]:
            p = self._path(base, key)
            if p.is_file():
                try:
                    with open(p, "rb") as f:
                        obj = _SafeUnpickler(f).load()
                except Exception:
                    continue  # unreadable entry: recompute
                if base != self.write_dir:  # bring it into the report being built
                    self._copy_in(p, key)
                self.hits += 1
                return obj
        self.misses += 1
        return None

    def _copy_in(self, src: Path, key: str) -> None:
        dst = self._path(self.write_dir, key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    def put(self, key: str, obj: Any) -> None:
        if not self.enabled:
            return
        p = self._path(self.write_dir, key)
        p.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        pickle.dump(obj, buf, protocol=pickle.HIGHEST_PROTOCOL)
        tmp = p.with_suffix(".part")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, p)

    def carry_over(self) -> None:
        """Hard-link old entries that were not used in this run into the new cache (kept for later runs)."""
        if not self.enabled:
            return
        for base in self.read_dirs:
            if not base.is_dir():
                continue
            for p in base.glob("*/*.pkl"):
                dst = self._path(self.write_dir, p.stem)
                if not dst.exists():
                    self._copy_in(p, p.stem)
