"""Where the renderer's data folders live.

In a wheel, hatch's ``force-include`` installs the top-level ``templates/`` and ``themes/`` folders as
``reportgen/_data/templates`` and ``reportgen/_data/themes``. In a source checkout or an editable install
they are the top-level folders next to the ``reportgen/`` package. The installed location is checked first.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent

# A file each folder must contain, so an unrelated ``templates/`` folder next to site-packages is never picked.
_MARKERS = {"templates": "layouts/base.html", "themes": "_base.css"}


def _find(name: str) -> Path:
    candidates = [_PKG / "_data" / name, _PKG.parent / name]
    for cand in candidates:
        if (cand / _MARKERS[name]).is_file():
            return cand
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"reportgen's {name}/ folder is missing (looked in {tried}); the installation is incomplete — "
        "reinstall reportgen, or run from a source checkout"
    )


def templates_dir() -> Path:
    """The Jinja templates folder (``layouts/``, ``elements/``)."""
    return _find("templates")


def themes_dir() -> Path:
    """The themes folder: ``_base.css`` plus one sub-folder per theme (``theme.toml``, ``style.css``)."""
    return _find("themes")


__all__ = ["templates_dir", "themes_dir"]
