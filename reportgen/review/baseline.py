"""The baseline a review compares with: an earlier report (folder, ``report.json``, or single-file report).

A single-file report carries its report.json as an inert ``application/json`` block
(:func:`reportgen.publish.atomic.embed_json`); :func:`reportgen.publish.rerender.read_report_json` reads both
forms. A missing or unreadable baseline is bad input (:class:`~reportgen.errors.ReportgenError`, exit 2),
raised before any model is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ReportgenError


@dataclass(frozen=True)
class Baseline:
    """An earlier report's ``report.json`` (``report``), its folder when it has one, and where it came from."""

    report: dict[str, Any]
    folder: Path | None
    source: str


def read_report(path: str | Path, what: str = "report") -> tuple[dict[str, Any], Path | None]:
    """``(report.json as a dict, the report's folder or None)`` of a report folder, a report.json or a
    single-file report; ReportgenError naming ``what`` when it is none of those."""
    from ..publish.rerender import read_report_json

    p = Path(path)
    if not p.exists():
        raise ReportgenError(f"{what} {p} does not exist (give a report folder, its report.json, or a "
                             "single-file .html report)")
    try:
        if p.is_file() and p.suffix.lower() == ".json":
            data = json.loads(p.read_text(encoding="utf-8"))
            folder: Path | None = p.parent
        elif p.is_file():
            data, folder = read_report_json(p), None
        else:
            data, folder = read_report_json(p), p
    except ReportgenError as e:
        raise ReportgenError(f"{what} {p}: {e}") from None
    except (OSError, ValueError) as e:
        raise ReportgenError(f"{what} {p} cannot be read: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("sections"), list):
        raise ReportgenError(f"{what} {p} is not a reportgen report.json (no sections list)")
    return data, folder


def load_baseline(path: str | Path) -> Baseline:
    """The baseline report at ``path`` (see the module docstring)."""
    data, folder = read_report(path, "baseline")
    return Baseline(report=data, folder=folder, source=str(path))


__all__ = ["Baseline", "load_baseline", "read_report"]
