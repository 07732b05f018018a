"""A content-addressed cache of computed results (feature passes, technique sections).

Keys are SHA-256 digests of everything a result depends on (model weights, preprocessing,
image bytes, layer, options, code version), so a re-render with a new theme or an extra
section recomputes nothing it already has, and any change of input misses cleanly.

The cache lives in the user cache directory, like pip's and torch hub's: ``$XDG_CACHE_HOME/reportgen``
(default ``~/.cache/reportgen``), or ``--cache-dir``; the published report folder holds only the report.
Its size is capped (least recently used entries are evicted by mtime; a hit refreshes the mtime), and
``reportgen cache info`` / ``reportgen cache clear`` show and empty it. Only reportgen's own entry files
(``<2 hex>/<sha256>.pkl``) are ever deleted, so a ``--cache-dir`` pointing at a busy folder is safe.

Entries are pickles, read back with an unpickler that only admits numpy and reportgen's own
plain-data classes, so a tampered cache file cannot run code.

Code in keys: :func:`code_digest` hashes the source of every module a computation reaches through its
imports (read with :mod:`ast`, never by importing) and reportgen's version, so an edited helper, however
deep, or an upgraded reportgen never serves a result computed by other code. ``CODE_VERSION`` is only for
changes of the stored format.

The run's memo (:meth:`reportgen.context.RunContext.memo`, values kept for one run, in memory) takes typed keys,
:class:`MemoKey`, declared here for any module to import without importing the context.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import pickle
import re
import sys
import time
from functools import lru_cache
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

DEFAULT_MAX_BYTES = 2 * 1024**3  # 2 GiB
TAG_NAME = "CACHEDIR.TAG"
TAG_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
            "# This file marks the reportgen cache (https://bford.info/cachedir/): backups may skip it.\n")
CODE_VERSION = "4"  # bump when the stored format changes (4: Section.arrays); code edits need no bump

_ALLOWED_MODULES = ("builtins", "collections", "numpy", "numpy.core.multiarray", "numpy._core.multiarray",
                    "numpy.core.numeric", "numpy._core.numeric", "numpy.dtypes", "reportgen.report",
                    "reportgen.features.records",
                    "reportgen.features.rowstore",
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


_ENTRY = re.compile(r"[0-9a-f]{64}\.(pkl|npy)")  # pickles, memory-mapped matrices (reportgen.features.rowstore)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/reportgen``, else ``~/.cache/reportgen`` (read at call time, never at import)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "reportgen"


def parse_size(text: str | int | None) -> int:
    """``500M``, ``2G``, ``750MB``, ``1.5GiB`` or a byte count -> bytes (0 disables the cap)."""
    if text is None:
        return DEFAULT_MAX_BYTES
    if isinstance(text, int):
        return max(0, text)
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(?:i?b)?\s*", str(text), re.I)
    if not m:
        raise ValueError(f"cannot read a size from {text!r}; use e.g. 500M or 2G")
    mult = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


class Cache:
    """Entries under ``directory`` (``<key[:2]>/<key>.pkl``); ``read_dirs`` are extra read-only locations."""

    def __init__(self, directory: Path | None, read_dirs: list[Path] | None = None, enabled: bool = True,
                 max_bytes: int = DEFAULT_MAX_BYTES):
        self.dir = Path(directory) if directory is not None else None
        self.read_dirs = [Path(d) for d in (read_dirs or []) if d is not None]
        self.enabled = enabled and directory is not None
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self.evicted = 0

    def _path(self, base: Path, key: str) -> Path:
        return base / key[:2] / f"{key}.pkl"

    def get(self, key: str) -> Any | None:
        if not self.enabled:
            return None
        assert self.dir is not None  # enabled implies a directory
        for base in [self.dir, *self.read_dirs]:
            p = self._path(base, key)
            if p.is_file():
                try:
                    with open(p, "rb") as f:
                        obj = _SafeUnpickler(f).load()
                except Exception:
                    continue  # unreadable entry: recompute
                if base == self.dir:
                    try:
                        os.utime(p)  # least recently USED goes first
                    except OSError:
                        pass
                self.hits += 1
                return obj
        self.misses += 1
        return None

    def put(self, key: str, obj: Any) -> None:
        """Write one entry atomically; a full or read-only disk only costs the cache, never the build."""
        if not self.enabled:
            return
        buf = io.BytesIO()
        pickle.dump(obj, buf, protocol=pickle.HIGHEST_PROTOCOL)
        self.put_pickled(key, buf.getvalue())

    def put_pickled(self, key: str, data: bytes) -> None:
        """:meth:`put` for an object already pickled (``data``)."""
        if not self.enabled:
            return
        assert self.dir is not None  # enabled implies a directory
        p = self._path(self.dir, key)
        tmp = p.with_name(f"{p.stem}.{os.getpid()}.part")
        try:
            self._ensure_dir()
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, p)
        except OSError:
            try:
                tmp.unlink()
            except OSError:
                pass

    def _ensure_dir(self) -> None:
        assert self.dir is not None
        self.dir.mkdir(parents=True, exist_ok=True)
        tag = self.dir / TAG_NAME
        if not tag.exists():
            tag.write_text(TAG_TEXT)

    def entries(self) -> list[tuple[Path, int, float]]:
        """(path, bytes, mtime) of every entry (only reportgen's own files)."""
        out: list[tuple[Path, int, float]] = []
        if self.dir is None or not self.dir.is_dir():
            return out
        for sub in self.dir.iterdir():
            if not (sub.is_dir() and re.fullmatch(r"[0-9a-f]{2}", sub.name)):
                continue
            for p in sub.iterdir():
                if _ENTRY.fullmatch(p.name) or p.name.endswith(".part"):
                    try:
                        st = p.stat()
                    except OSError:
                        continue
                    out.append((p, st.st_size, st.st_mtime))
        return out

    def size(self) -> int:
        return sum(s for _, s, _ in self.entries())

    def trim(self, max_bytes: int | None = None) -> int:
        """Evict least recently used entries until the cache fits ``max_bytes`` (0: no cap). Returns evictions."""
        cap = self.max_bytes if max_bytes is None else max_bytes
        if not cap:
            return 0
        now = time.time()
        ents = self.entries()
        total = sum(s for _, s, _ in ents)
        n = 0
        for p, s, mt in sorted(ents, key=lambda e: e[2]):
            if total <= cap:
                break
            if p.name.endswith(".part") and now - mt < 3600:
                continue  # another build may be writing it
            try:
                p.unlink()
            except OSError:
                continue
            total -= s
            n += 1
        self.evicted += n
        self._prune_dirs()
        return n

    def clear(self) -> tuple[int, int]:
        """Delete every entry; returns (files, bytes) removed."""
        n = b = 0
        for p, s, _ in self.entries():
            try:
                p.unlink()
            except OSError:
                continue
            n += 1
            b += s
        self._prune_dirs()
        return n, b

    def _prune_dirs(self) -> None:
        if self.dir is None or not self.dir.is_dir():
            return
        for sub in self.dir.iterdir():
            if sub.is_dir() and re.fullmatch(r"[0-9a-f]{2}", sub.name):
                try:
                    sub.rmdir()  # only when empty
                except OSError:
                    pass


# ----------------------------------------------------------------------------------------------
# code digests: the source a cached result was computed by

_IMPORTS: dict[tuple[str, bool, str], tuple[tuple[str, tuple[str, ...]], ...]] = {}  # per process, per source


def _locate(name: str) -> tuple[Path, bool] | None:
    """(source file, is a package) of module ``name``, found from its top-level package's folder without
    importing anything; None when that package is not loaded or has no source (built-in, namespace, zip)."""
    top, *rest = name.split(".")
    mod = sys.modules.get(top)
    file = getattr(mod, "__file__", None)
    if not file:
        return None
    base = Path(file)
    if getattr(mod, "__path__", None) is None:  # a single-file top-level module
        return (base, False) if not rest else None
    p = base.parent.joinpath(*rest)
    if (p / "__init__.py").is_file():
        return p / "__init__.py", True
    if rest and p.with_suffix(".py").is_file():
        return p.with_suffix(".py"), False
    return None


def _imports(name: str, is_pkg: bool, source: bytes) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The import statements anywhere in ``source`` (module ``name``: module level and inside functions,
    relative or absolute) as ``(module, ())`` for ``import module`` and ``(base, names)`` for
    ``from base import names``, relative bases resolved. Cached per source text."""
    key = (name, is_pkg, hashlib.sha256(source).hexdigest())
    if key not in _IMPORTS:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            tree = ast.Module(body=[], type_ignores=[])
        package = name.split(".") if is_pkg else name.split(".")[:-1]
        out: list[tuple[str, tuple[str, ...]]] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                out += [(a.name, ()) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level and node.level - 1 > len(package):
                    continue
                parts = package[:len(package) - node.level + 1] if node.level else []
                base = ".".join(parts + ([node.module] if node.module else []))
                out.append((base, tuple(a.name for a in node.names)))
        _IMPORTS[key] = tuple(out)
    return _IMPORTS[key]


def import_closure(*modules: str) -> dict[str, Path]:
    """Every module (name -> source file) reached from ``modules`` through imports, transitively, within the
    top-level packages of ``modules`` and ``reportgen``.

    ``from pkg import x`` reaches the module ``pkg.x`` when there is one, else ``pkg`` (where ``x`` is
    defined), and from there whatever ``pkg/__init__`` imports; a parent package's ``__init__`` that merely
    runs first is not counted (what a module uses, not every import side effect). Dynamic imports
    (``importlib.import_module``) are not followed."""
    tops = {m.split(".")[0] for m in modules} | {"reportgen"}
    found: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in found or name.split(".")[0] not in tops:
            continue
        where = _locate(name)
        if where is None:
            continue
        path, is_pkg = where
        found[name] = path
        try:
            source = path.read_bytes()
        except OSError:
            continue
        for base, names in _imports(name, is_pkg, source):
            if not names:
                todo.append(base)
                continue
            subs = [f"{base}.{x}" for x in names if x != "*"]
            mods = [m for m in subs if m.split(".")[0] in tops and _locate(m) is not None]
            todo += mods
            if len(mods) < len(names):  # some name is defined in ``base`` itself (or ``*``)
                todo.append(base)
    return found


@lru_cache(maxsize=1)
def _installed_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("reportgen")
    except (ImportError, PackageNotFoundError, ValueError):
        return "-"


def reportgen_version() -> str:
    """``reportgen.__version__`` (read at call time) and the installed distribution's version."""
    mod = sys.modules.get("reportgen")
    return f"{getattr(mod, '__version__', '?')}/{_installed_version()}"


def code_digest(*modules: str) -> str:
    """Digest of reportgen's version and the source of every module in :func:`import_closure` of ``modules``.

    Files are read each call (a few dozen small reads), so an edit within one process counts too; the
    :mod:`ast` parse is cached per source text."""
    h = hashlib.sha256(reportgen_version().encode())
    for name, path in sorted(import_closure(*modules).items()):
        h.update(b"\0" + name.encode() + b"\0")
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(b"<no source>")
    return h.hexdigest()[:16]


T = TypeVar("T")


@dataclass(frozen=True)
class MemoKey(Generic[T]):
    """A key of the run's memo whose value has type ``T``, declared once beside the code that produces the value
    (``MAP_STORE: MemoKey[MapStore] = MemoKey("attribution.map_store")``); every reader imports it, so mypy checks
    ``ctx.memo(MAP_STORE, ...)``. ``name`` is the key's dotted name (unique in reportgen); ``args`` tells apart the
    values of one key for different arguments (:meth:`at`)."""

    name: str
    args: str = ""

    def at(self, *parts: object) -> MemoKey[T]:
        """This key for the arguments ``parts`` (compared by their ``repr``: options dataclasses, lists)."""
        return MemoKey(self.name, repr(parts))
