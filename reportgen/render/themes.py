"""Themes (mkdocs-style): ``themes/<name>/theme.toml`` (colour variables) + ``style.css`` on top of ``themes/_base.css``.

The stylesheet the report uses is ``:root{--var: value; ...}`` from the theme's ``[colors]`` table, then the
shared ``_base.css`` (which only uses ``var(--...)`` colours), then the theme's own ``style.css``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._resources import themes_dir

try:  # Python >= 3.11
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    try:
        import tomli as _toml  # type: ignore[no-redef]
    except ModuleNotFoundError:
        _toml = None  # type: ignore[assignment]

# The variables every theme must define (``_base.css`` uses them all).
REQUIRED_COLORS = (
    "bg", "fg", "muted", "accent", "accent-fg", "accent-soft", "border", "card-bg", "nav-bg", "nav-fg", "header-bg", "header-fg",
    "error", "error-bg", "warning", "warning-bg", "info", "info-bg", "ok", "ok-bg", "bad", "bad-bg",
    "code-bg", "code-fg", "heatmap-backdrop", "table-stripe", "table-hover", "shadow",
)

_KEY = re.compile(r"[a-z][a-z0-9-]*")
_VALUE = re.compile(r"[#a-zA-Z0-9(),.%/\s-]+")  # colours, rgb()/hsl(), numbers: no ; { } < > or quotes


@dataclass
class Theme:
    name: str  # folder name (the --theme value)
    title: str
    description: str
    color_scheme: str  # "light" or "dark" (the <meta name="color-scheme">)
    colors: dict[str, str] = field(default_factory=dict)
    folder: Path | None = None

    def css(self) -> str:
        """The full stylesheet text: variables, shared rules, theme rules."""
        lines = [f"/* reportgen theme: {self.name} */", ":root {", f"  color-scheme: {self.color_scheme};"]
        lines += [f"  --{k}: {v};" for k, v in self.colors.items()]
        lines.append("}")
        base = (themes_dir() / "_base.css").read_text(encoding="utf-8")
        extra = ""
        if self.folder is not None and (self.folder / "style.css").is_file():
            extra = (self.folder / "style.css").read_text(encoding="utf-8")
        return "\n".join(lines) + "\n\n" + base.rstrip() + "\n\n" + extra.rstrip() + "\n"


def available_themes() -> list[str]:
    """Folder names under ``themes/`` that hold a ``theme.toml`` (sorted)."""
    root = themes_dir()
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(("_", ".")) and (p / "theme.toml").is_file())


def _parse_toml(text: str) -> dict[str, Any]:
    if _toml is not None:
        return _toml.loads(text)
    # Minimal fallback for Python 3.10 without tomli: flat ``key = "value"`` pairs and ``[table]`` headers.
    out: dict[str, Any] = {}
    cur = out
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"\[([A-Za-z0-9_-]+)\]\s*(#.*)?", line)
        if m:
            cur = out.setdefault(m.group(1), {})
            continue
        m = re.fullmatch(r'([A-Za-z0-9_-]+)\s*=\s*"([^"]*)"\s*(#.*)?', line)
        if not m:
            raise ValueError(f"unsupported TOML line: {raw!r}")
        cur[m.group(1)] = m.group(2)
    return out


def load_theme(name: str) -> Theme:
    names = available_themes()
    if name not in names:
        raise ValueError(f"unknown theme {name!r}; available: {', '.join(names)}")
    folder = themes_dir() / name
    data = _parse_toml((folder / "theme.toml").read_text(encoding="utf-8"))
    colors_in = data.get("colors", {})
    colors: dict[str, str] = {}
    for k, v in colors_in.items():
        k, v = str(k), str(v).strip()
        if not _KEY.fullmatch(k) or not _VALUE.fullmatch(v):
            raise ValueError(f"theme {name!r}: bad colour variable {k!r} = {v!r}")
        colors[k] = v
    missing = [k for k in REQUIRED_COLORS if k not in colors]
    if missing:
        raise ValueError(f"theme {name!r} is missing colour variables: {', '.join(missing)}")
    scheme = str(data.get("color_scheme", "light"))
    if scheme not in ("light", "dark"):
        raise ValueError(f"theme {name!r}: color_scheme must be 'light' or 'dark', got {scheme!r}")
    return Theme(name=name, title=str(data.get("name", name)), description=str(data.get("description", "")),
                 color_scheme=scheme, colors=colors, folder=folder)
