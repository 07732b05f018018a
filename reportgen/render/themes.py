"""Themes, after mkdocs and Pelican: a folder with ``theme.toml``, and optionally ``style.css`` and ``templates/``.

``theme.toml`` states only what the theme changes::

    name = "Solarized"            # display title
    description = "..."
    extends = "light"             # optional: a built-in theme, or a theme folder beside this one (or a path from there)
    color_scheme = "light"        # inherited from the parent when absent

    [colors]                      # CSS variables that differ from the parent (colours and layout sizes)
    accent = "#b58900"

Every variable's default lives in the one ``:root`` block at the top of ``themes/_base.css``; the stylesheet a
report uses is that file with the resolved values written into its ``:root``, then each ancestor's
``style.css``, then the theme's own. A theme's ``templates/`` folder overrides any package template of the same
path (``layouts/base.html`` offers ``extrahead`` and ``footer`` blocks), searched before its parent's.
A theme is named by its folder under ``themes/`` or given as a path to a folder of its own.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

from .._resources import themes_dir
from ..display_paths import display_path
from ..errors import ReportgenError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (tomli is a dependency there)
    import tomli as tomllib

_KEY = re.compile(r"[a-z][a-z0-9-]*")
_VALUE = re.compile(r"[#a-zA-Z0-9(),.%/\s-]+")  # colours, rgb()/hsl(), sizes: no ; { } < > or quotes
_ROOT = re.compile(r":root\s*\{(?P<body>[^}]*)\}")
_DECL = re.compile(r"--(?P<key>[a-z][a-z0-9-]*)\s*:\s*(?P<value>[^;]+);")
#: a theme's colour scheme (``<meta name="color-scheme">``); the built-in themes are named after them
ColorScheme = Literal["light", "dark"]
COLOR_SCHEMES: tuple[ColorScheme, ...] = ("light", "dark")
DEFAULT_THEME: ColorScheme = "light"
MAX_DEPTH = 8  # longest ``extends`` chain (a cycle is reported before that)


def _base_css() -> str:
    return (themes_dir() / "_base.css").read_text(encoding="utf-8")


def default_variables() -> dict[str, str]:
    """The variables and their defaults, read from the ``:root`` block of ``themes/_base.css``."""
    m = _ROOT.search(_base_css())
    if not m:
        raise ValueError("themes/_base.css has no :root block of default variables")
    return {d["key"]: d["value"].strip() for d in _DECL.finditer(re.sub(r"/\*.*?\*/", "", m["body"], flags=re.S))}


@dataclass
class Theme:
    name: str  # folder name (the --theme value) or the path given
    title: str
    description: str
    color_scheme: ColorScheme  # the <meta name="color-scheme">
    colors: dict[str, str] = field(default_factory=dict)  # every variable, resolved (defaults + ancestors + own)
    folders: tuple[Path, ...] = ()  # this theme's folder first, then its ancestors'

    def template_dirs(self) -> tuple[str, ...]:
        """``templates/`` folders that override the package's, most specific first."""
        return tuple(str(f / "templates") for f in self.folders if (f / "templates").is_dir())

    def css(self) -> str:
        """The full stylesheet: ``_base.css`` with the resolved ``:root``, then the style.css files, parent first."""
        decls = "\n".join([f"  color-scheme: {self.color_scheme};"]
                          + [f"  --{k}: {v};" for k, v in self.colors.items()])
        base = _ROOT.sub(lambda _m: ":root {\n" + decls + "\n}", _base_css(), count=1)
        extras = [(f / "style.css").read_text(encoding="utf-8").rstrip()
                  for f in reversed(self.folders) if (f / "style.css").is_file()]
        css = "\n\n".join([f"/* reportgen theme: {self.name} */\n" + base.rstrip(), *extras]) + "\n"
        if "</" in css:
            raise ValueError(f"theme {self.name!r}: stylesheet must not contain '</'")
        return css


def available_themes() -> list[str]:
    """Folder names under ``themes/`` that hold a ``theme.toml`` (sorted)."""
    root = themes_dir()
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(("_", ".")) and (p / "theme.toml").is_file())


def theme_folder(name: str | Path, relative_to: Path | None = None) -> Path:
    """The folder of theme ``name``: a built-in theme's name, or a path to a folder holding ``theme.toml``."""
    text = str(name)
    if text in available_themes():
        return themes_dir() / text
    path = Path(text).expanduser()
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    if ("/" in text or "\\" in text or path.is_dir()) and (path / "theme.toml").is_file():
        return path.resolve()
    raise ValueError(f"unknown theme {text!r}; available: {', '.join(available_themes())}, "
                     "or a path to a folder with a theme.toml")


def _read(folder: Path, label: str) -> dict:
    try:
        return tomllib.loads((folder / "theme.toml").read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"theme {label!r}: theme.toml is not valid TOML: {e}") from None


def load_theme(name: str | Path) -> Theme:
    """Resolve theme ``name`` and its ``extends`` chain into one :class:`Theme`."""
    label = str(name)
    chain: list[tuple[Path, dict]] = []
    folder = theme_folder(name)
    while True:
        if folder in [f for f, _ in chain]:
            raise ValueError(f"theme {label!r}: 'extends' forms a cycle through {folder.name!r}")
        if len(chain) >= MAX_DEPTH:
            raise ValueError(f"theme {label!r}: 'extends' chain longer than {MAX_DEPTH}")
        data = _read(folder, label)
        chain.append((folder, data))
        parent = data.get("extends")
        if parent is None:
            break
        folder = theme_folder(str(parent), relative_to=folder.parent)

    colors = default_variables()
    scheme = "light"
    for folder, data in reversed(chain):  # root ancestor first, the theme itself last
        scheme = str(data.get("color_scheme", scheme))
        for k, v in (data.get("colors") or {}).items():
            k, v = str(k), str(v).strip()
            if not _KEY.fullmatch(k) or not _VALUE.fullmatch(v):
                raise ValueError(f"theme {label!r}: bad variable {k!r} = {v!r}")
            if k not in colors:
                raise ValueError(f"theme {label!r} ({folder.name}): unknown variable {k!r}; the variables are "
                                 "the --names in the :root block of themes/_base.css")
            colors[k] = v
    if scheme not in COLOR_SCHEMES:
        raise ValueError(f"theme {label!r}: color_scheme must be 'light' or 'dark', got {scheme!r}")
    own = chain[0][1]
    return Theme(name=chain[0][0].name, title=str(own.get("name", chain[0][0].name)),
                 description=str(own.get("description", "")), color_scheme=cast(ColorScheme, scheme), colors=colors,
                 folders=tuple(f for f, _ in chain))


def check_theme(name: str | Path) -> None:
    """Raise :class:`~reportgen.errors.ReportgenError` (bad input) unless ``name`` loads as a theme."""
    try:
        load_theme(name)
    except ValueError as e:
        raise ReportgenError(str(e)) from None


def theme_label(name: str | Path) -> str:
    """``name`` as report.json records it: a built-in theme's name, or its folder as a published path."""
    return str(name) if str(name) in available_themes() else display_path(name)
