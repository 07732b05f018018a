"""docs/ARCHITECTURE.md names every module of ``reportgen/`` and only modules that exist.

The document writes a module as a backticked path relative to ``reportgen/``: ``build.py``,
``features/scan.py``, ``techniques/_map_store.py``; a package as its folder with a slash (``review/``), which
names its ``__init__.py``. A path that is not a module of the package must exist from the repository root
(``templates/``, ``tests/test_extension.py``).
The data-flow drawing (the fenced block) is free text and not checked.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "reportgen"
DOC = ROOT / "docs" / "ARCHITECTURE.md"

MODULE = re.compile(r"[A-Za-z_]\w*(?:/[A-Za-z_]\w*)*\.py")
FOLDER = re.compile(r"[A-Za-z_]\w*(?:/[A-Za-z_]\w*)*/")


def _named() -> set[str]:
    """Every backticked module path or folder outside fenced code blocks."""
    prose = re.sub(r"^```.*?^```", "", DOC.read_text(encoding="utf-8"), flags=re.S | re.M)
    spans = re.findall(r"`([^`\n]+)`", prose)
    return {s for s in spans if MODULE.fullmatch(s) or FOLDER.fullmatch(s)}


def _modules() -> set[str]:
    """Every module of the package as the document writes it: ``a/b.py``, a package's ``__init__.py`` as ``a/``."""
    out = set()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if path.name == "__init__.py" and path.parent != PACKAGE:
            rel = rel[: -len("__init__.py")]
        out.add(rel)
    return out


def test_the_document_names_every_module():
    missing = sorted(_modules() - _named())
    assert not missing, f"docs/ARCHITECTURE.md does not name: {missing}"


def test_every_module_the_document_names_exists():
    modules = _modules()
    gone = sorted(n for n in _named() if n not in modules and not (ROOT / n).exists())
    assert not gone, f"docs/ARCHITECTURE.md names modules that do not exist: {gone}"


def test_the_check_reads_the_names_the_document_uses():
    """The parser itself: a nested module, an underscore module and a package are read; prose and calls are not."""
    named = _named()
    assert {"build.py", "features/scan.py", "techniques/_map_store.py", "review/"} <= named
    assert not any("(" in n or " " in n for n in named)
