"""Publishing a computed :class:`~reportgen.report.Report`, and re-rendering one without the model.

:func:`publish_report` renders a report tree into a temporary folder with its ``report.json`` and swaps it
into place (the caller holds the output lock). :func:`store_tree` keeps the tree itself (the pickled Report:
numpy arrays and reportgen's plain dataclasses, no torch objects) in the user cache under the SHA-256 of its
pickle, and ``report.json`` records that digest as ``report_tree``; the published folder holds only the report.

:func:`rerender` (``reportgen render OUT --theme dark``) reads that digest back, loads the tree from the cache
and renders it again with another theme or as one file: no model is loaded, no image is read and this module
never imports torch. When the tree has been evicted from the cache (or the build ran with ``--no-cache``) it
refuses with a clear message: rebuild with ``reportgen build``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import pickle
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..cache import Cache
from ..errors import OutputError, ReportgenError
from .atomic import (
    MARKER, OutputLock, TermAsInterrupt, check_out, clean_stale, disk_error, embed_json,
    is_single_file_target, publish_file, sibling, swap_in,
)
from ..report import Report, RunInfo
from .arrays import ARRAYS_FILE, embed_arrays, write_arrays

TREE_KEY = "report_tree"  # report.json: {"sha256": ...} of the stored tree
_EMBED_START = '<script type="application/json" id="reportgen-report">'


def store_tree(report: Report, cache: Cache) -> str | None:
    """Put ``report`` in ``cache`` under the SHA-256 of its pickle; returns that key (None: cache disabled)."""
    if not cache.enabled:
        return None
    report.meta.extra.pop(TREE_KEY, None)
    # plain JSON types only (torch.__version__ is a TorchVersion): the tree must unpickle without torch
    report.meta = RunInfo.from_dict(json.loads(json.dumps(report.meta.to_dict(), default=_json_default)))
    buf = io.BytesIO()
    pickle.dump(report, buf, protocol=pickle.HIGHEST_PROTOCOL)
    key = hashlib.sha256(buf.getvalue()).hexdigest()
    cache.put_pickled(key, buf.getvalue())
    report.meta.extra[TREE_KEY] = {"sha256": key}
    return key


def read_report_json(out: Path) -> dict[str, Any]:
    """The ``report.json`` of a built report: ``OUT/report.json``, or the block embedded in ``OUT.html``."""
    out = Path(out)
    try:
        if is_single_file_target(out) and out.is_file():
            text = out.read_text(encoding="utf-8")
            k = text.rfind(_EMBED_START)
            if k < 0:
                raise ReportgenError(f"{out} has no embedded report.json (not a single-file reportgen report)")
            return json.loads(text[k + len(_EMBED_START):text.index("</script>", k)])
        path = out / MARKER
        if not path.is_file():
            raise ReportgenError(f"{out} is not a reportgen report (no {MARKER})")
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ReportgenError(f"cannot read the report at {out}: {e}") from None


def load_tree(out: Path, cache: Cache) -> Report:
    """The stored report tree of the report at ``out``, or ReportgenError saying to rebuild."""
    data = read_report_json(out)
    key = (data.get(TREE_KEY) or {}).get("sha256")
    if not key:
        raise ReportgenError(f"{out} records no stored report tree (built by an older reportgen or with "
                             "--no-cache); rebuild with reportgen build")
    tree = cache.get(key)
    if not isinstance(tree, Report):
        raise ReportgenError(f"the report tree of {out} is no longer in the cache ({cache.dir}; evicted or "
                             "cleared); rebuild with reportgen build (it reuses whatever is still cached)")
    tree.meta.extra[TREE_KEY] = {"sha256": key}
    if data.get("review"):
        tree.meta.extra["review"] = data["review"]  # a re-render keeps the review (see publish_report)
    if data.get("theme"):
        tree.meta.theme = data["theme"]  # as last rendered
    return tree


def rerender(out: str | Path, *, theme: str | None = None, single_file: bool = False,
             new_out: str | Path | None = None, cache: Cache, wait: bool = False,
             log: Callable[[str], None] | None = None) -> tuple[Path, Report]:
    """Render the built report at ``out`` again (theme / single file) into ``new_out`` (default: in place)."""
    from ..render import check_theme, theme_label

    log = log or (lambda s: None)
    out = Path(out)
    target = Path(new_out) if new_out else out
    report = load_tree(out, cache)
    theme = theme or report.meta.theme or "light"
    check_theme(theme)
    single_file = single_file or is_single_file_target(target)
    if is_single_file_target(out) and not new_out and not single_file:  # pragma: no cover - implied above
        single_file = True
    report.meta.theme = theme_label(theme)
    report.meta.extra["rendered"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    with staged_output(target, wait=wait, log=log) as tmp:
        publish_report(report, tmp, target, cache, theme=theme, single_file=single_file)
    return target, report


@contextlib.contextmanager
def staged_output(out: Path, *, wait: bool = False, log: Callable[[str], None] | None = None):
    """Hold the output lock on ``out``, clean what killed builds left, and yield a fresh temporary folder
    beside it (removed afterwards; :func:`publish_report` swaps it into place)."""
    with OutputLock(out, wait=wait, log=log), TermAsInterrupt():
        clean_stale(out, log)
        check_out(out)  # again, now that nobody else is writing it
        tmp = sibling(out, "tmp")
        try:
            tmp.mkdir(parents=True)
            yield tmp
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def publish_report(report: Report, tmp: Path, out: Path, cache: Cache, *, theme: str,
                   single_file: bool = False, review: Any = None) -> dict[str, Any]:
    """Render ``report`` into ``tmp`` with its report.json, then move it into place as ``out`` (atomically).

    The caller holds :class:`~reportgen.publish.atomic.OutputLock` on ``out`` and removes ``tmp`` afterwards.
    ``review`` (:func:`reportgen.review.review_plan`'s ``Reviewer``) reviews the staged report: report.json's
    ``review`` key, summary.md and card.png beside index.html (a folder report).
    """
    from ..render import render_report

    try:
        previous = out if not (single_file or is_single_file_target(out)) and (out / MARKER).is_file() else None
        manifest = render_report(report, tmp, theme=theme, single_file=single_file,
                                 encoded=cache if cache.enabled else None, link_from=previous)
        arrays = write_arrays(report, tmp)  # Section.arrays: what a later run compares with (publish/arrays.py)
        write_json(report, manifest, tmp / MARKER, cache, arrays=arrays)
        single = is_single_file_target(out)
        if review is not None:
            where = str(out if single else out / "index.html")
            report.meta.extra["review"] = review(tmp, files=not single, where=where)
        elif previous is not None:  # a re-render: the review of the report it replaces stays
            for name in ("summary.md", "card.png"):
                if (previous / name).is_file() and not single:
                    shutil.copy2(previous / name, tmp / name)
        if single:
            embed_json(tmp / "index.html", tmp / MARKER)
            if arrays:
                embed_arrays(tmp / "index.html", tmp / ARRAYS_FILE)
            publish_file(tmp / "index.html", out)
        else:
            swap_in(tmp, out)
    except OSError as e:
        raise disk_error(e, out) from None
    return manifest


def write_json(report: Report, manifest: dict[str, Any], path: Path, cache: Cache,
               arrays: dict[str, Any] | None = None) -> None:
    secs = []
    for s in report.sections:
        secs.append({
            "id": s.id, "title": s.title, "error": s.error, "wall_time_s": round(s.wall_time_s, 3),
            "cached": s.cached, "params": s.params, "results": s.results,
            "references": [dataclasses.asdict(r) for r in s.references],
            "page": manifest.get("sections", {}).get(s.id, {}).get("page"),
            "figures": manifest.get("sections", {}).get(s.id, {}).get("assets", []),
        })
    data = {
        "reportgen": report.meta.versions.get("reportgen"),
        "title": report.title,
        **report.meta.to_dict(),
        "skipped_images": [dataclasses.asdict(s) for s in report.skipped_images],
        "sections": secs,
        "cache": {"hits": cache.hits, "misses": cache.misses, "enabled": cache.enabled},  # no path: it is private
    }
    if arrays:
        data["arrays"] = arrays
    from ..render.html import clean_strings

    data = clean_strings(json.loads(json.dumps(data, default=_json_default)))  # plain JSON, undecodable names shown
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return repr(o)


__all__ = ["publish_report", "write_json", "store_tree", "load_tree", "read_report_json", "rerender",
           "OutputError"]
