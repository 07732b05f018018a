"""The arrays a report keeps for later runs (``Section.arrays``): written beside ``report.json``, read back by a run
that compares with this one (explanation drift against a ``--baseline``), with no cache or model behind it.

A folder report holds ``arrays.npz`` (``numpy.savez_compressed``; one entry ``<section id>.<name>`` per array;
only numbers and fixed-width strings, so it loads with ``allow_pickle=False``) and ``report.json`` lists it under
``"arrays"`` (file, bytes, keys). A single-file report carries the same bytes, base64-encoded, in an inert
``<script type="application/octet-stream" id="reportgen-arrays">`` block (never executed; about 4/3 of the file's
size). The renderer never reads them.
"""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ReportgenError
from ..report import Report

ARRAYS_FILE = "arrays.npz"
EMBED_ID = "reportgen-arrays"
_START = f'<script type="application/octet-stream" id="{EMBED_ID}">'


def report_arrays(report: Report) -> dict[str, np.ndarray]:
    """``{"<section id>.<name>": array}`` over the report's sections (older pickled sections have none)."""
    out: dict[str, np.ndarray] = {}
    for s in report.sections:
        for name, a in (getattr(s, "arrays", None) or {}).items():
            a = np.asarray(a)
            if a.dtype.kind not in "biufU":
                raise TypeError(f"section {s.id!r} array {name!r}: numbers or strings only, got {a.dtype}")
            out[f"{s.id}.{name}"] = a
    return out


def write_arrays(report: Report, folder: Path) -> dict[str, Any] | None:
    """Write the report's arrays to ``folder/arrays.npz``; report.json's ``"arrays"`` entry (None: no arrays)."""
    arrays = report_arrays(report)
    if not arrays:
        return None
    path = Path(folder) / ARRAYS_FILE
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]
    return {"file": ARRAYS_FILE, "bytes": path.stat().st_size, "keys": sorted(arrays)}


def embed_arrays(page: Path, data: Path) -> None:
    """Put ``arrays.npz`` inside a single-file page as an inert base64 block (before ``</body>``)."""
    blob = base64.b64encode(data.read_bytes()).decode("ascii")
    text = page.read_text(encoding="utf-8")
    block = f"{_START}{blob}</script>\n"
    k = text.rfind("</body>")
    page.write_text(text[:k] + block + text[k:] if k >= 0 else text + block, encoding="utf-8")


def _npz_bytes(path: Path) -> bytes | None:
    """The arrays file's bytes of the report at ``path`` (folder, its report.json, or a single .html file)."""
    if path.is_file() and path.suffix.lower() in (".html", ".htm"):
        text = path.read_text(encoding="utf-8")
        k = text.rfind(_START)
        if k < 0:
            return None
        return base64.b64decode(text[k + len(_START):text.index("</script>", k)])
    folder = path.parent if path.is_file() else path
    f = folder / ARRAYS_FILE
    return f.read_bytes() if f.is_file() else None


def read_arrays(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """``{section id: {name: array}}`` of the report at ``path`` ({} when it kept none; ReportgenError when the
    file is unreadable)."""
    path = Path(path)
    try:
        raw = _npz_bytes(path)
        if raw is None:
            return {}
        out: dict[str, dict[str, np.ndarray]] = {}
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            for key in z.files:
                sid, _, name = key.partition(".")
                out.setdefault(sid, {})[name] = z[key]
        return out
    except (OSError, ValueError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise ReportgenError(f"cannot read the arrays of the report at {path}: {e}") from None


__all__ = ["ARRAYS_FILE", "EMBED_ID", "report_arrays", "write_arrays", "embed_arrays", "read_arrays"]
