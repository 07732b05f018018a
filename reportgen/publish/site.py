"""``reportgen site``: one static landing page over several built reports.

Each report folder (it must hold ``report.json``) is copied, or with ``link`` symlinked by a relative
path, to ``SITE/reports/<name>/`` (a single-file report, read from the report.json it embeds, to
``SITE/reports/<name>.html``); ``SITE/index.html`` lists model, date, accuracy, sections and size
with relative links only, under the reports' Content-Security-Policy and theme. The site is written to a
temporary folder and swapped into place, like a report.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ..errors import OutputError, ReportgenError
from .atomic import MARKER, OutputLock, TermAsInterrupt, clean_stale, sibling, swap_in
from ..report import RunInfo

SITE_MARKER = "site.json"


EMBEDDED = re.compile(r'<script type="application/json" id="reportgen-report">\s*(.*?)\s*</script>', re.S)


def _size(folder: Path) -> int:
    if folder.is_file():
        return folder.stat().st_size
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def read_report_json(path: Path) -> dict[str, Any]:
    """A report's ``report.json``: the file in a report folder, or the block a single-file report embeds."""
    if path.is_file():
        m = EMBEDDED.search(path.read_text(encoding="utf-8", errors="replace"))
        if not m:
            raise ReportgenError(f"{path} is not a reportgen report (a single-file report embeds its report.json; "
                                 "this file has none)")
        return json.loads(m.group(1))  # its "<" are written as JSON escapes, which json reads back
    if not (path / MARKER).is_file():
        raise ReportgenError(f"{path} is not a reportgen report (no {MARKER})")
    return json.loads((path / MARKER).read_text(encoding="utf-8"))


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def report_entry(folder: Path) -> dict[str, Any]:
    """What the landing page shows about one report (a folder or a single file), read from its report.json:
    enough to tell two reports of one model apart (preset, images, date, top-1 accuracy)."""
    data = read_report_json(folder)
    info = RunInfo.from_dict(data)  # the run keys report.json shares with Report.meta
    secs = data.get("sections") or []
    acc = info.extra.get("accuracy")
    if isinstance(acc, dict) and acc:  # a comparison
        accuracy = " / ".join(f"{k} {100 * float(v):.1f}%" for k, v in acc.items())
    else:
        card = next((s for s in secs if (s.get("results") or {}).get("top1_accuracy") is not None), None)
        accuracy = f"{100 * float(card['results']['top1_accuracy']):.1f}%" if card else "n/a"
    images = info.images
    return {
        "title": data.get("title") or folder.name, "model": info.model.get("spec") or "?",
        "date": info.generated or "?", "accuracy": accuracy, "sections": len(secs),
        "failed": sum(1 for s in secs if s.get("error")), "size": _human(_size(folder)),
        "kind": info.kind or "report", "preset": str(info.config.get("preset") or "?"),
        "images": (f"{images.count:,}" + (f" ({Path(images.folder).name})" if images.folder else "")
                   if images is not None else "?"),
        "single_file": folder.is_file(), "name": folder.name,
    }


def _slug(name: str, taken: set[str]) -> str:
    base = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-.") or "report"
    slug, k = base, 2
    while slug in taken:
        slug, k = f"{base}-{k}", k + 1
    taken.add(slug)
    return slug


def build_site(reports: list[Path], out: Path, theme: str = "light", title: str = "Model reports",
               link: bool = False) -> Path:
    """Write the site; returns the path of its ``index.html``."""
    from ..render.themes import check_theme

    check_theme(theme)
    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not (out / SITE_MARKER).is_file():
        raise OutputError(f"--out {out} is a non-empty folder that is not a reportgen site; refusing to replace it")
    entries = [report_entry(Path(r)) for r in reports]
    out.resolve().parent.mkdir(parents=True, exist_ok=True)
    with OutputLock(out, wait=False), TermAsInterrupt():
        clean_stale(out)
        tmp = sibling(out, "tmp")
        try:
            _write_site(tmp, out, reports, entries, theme, title, link)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return out / "index.html"


def _write_site(tmp: Path, out: Path, reports: list[Path], entries: list[dict[str, Any]], theme: str, title: str,
                link: bool) -> None:
    from .. import __version__
    from ..render.assets import ASSETS_DIRNAME, content_hash
    from ..render.html import CSP, make_env
    from ..render.themes import load_theme

    (tmp / "reports").mkdir(parents=True)
    taken: set[str] = set()
    for r, e in zip(reports, entries):
        if e["single_file"]:  # one file: copied (or linked) as reports/<name>.html
            slug = _slug(Path(r).resolve().stem, taken)
            dest = tmp / "reports" / f"{slug}.html"
            if link:
                dest.symlink_to(os.path.relpath(Path(r).resolve(), (out / "reports").resolve()))
            else:
                shutil.copy2(r, dest)
            e["href"] = f"reports/{slug}.html"
            continue
        slug = _slug(Path(r).resolve().name, taken)
        dest = tmp / "reports" / slug
        if link:
            target = os.path.relpath(Path(r).resolve(), (out / "reports").resolve())
            dest.symlink_to(target, target_is_directory=True)
        else:
            shutil.copytree(r, dest, ignore=shutil.ignore_patterns(".*"))
        e["href"] = f"reports/{slug}/index.html"
    th = load_theme(theme)
    css = th.css()
    css_path = f"{ASSETS_DIRNAME}/style-{content_hash(css.encode('utf-8'))}.css"
    (tmp / ASSETS_DIRNAME).mkdir()
    (tmp / css_path).write_text(css, encoding="utf-8")
    from markupsafe import Markup

    html = make_env(th.template_dirs()).get_template("site/index.html").render(
        title=title, reports=entries, theme=th, csp=Markup(CSP), css_path=css_path, version=__version__)
    (tmp / "index.html").write_text(html, encoding="utf-8")
    (tmp / SITE_MARKER).write_text(json.dumps({"title": title, "reports": entries}, indent=2), encoding="utf-8")
    swap_in(tmp, out)


__all__ = ["build_site", "report_entry"]
