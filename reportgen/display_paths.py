"""What a published report may show of this machine: paths relative to the current folder, never absolute.

A path under the current folder is shown relative to it, one under the home folder as ``~/...``;
others as given. Used for the model SPEC, the weights file, the notes that name them, the image
folder and the command line recorded in ``report.json``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable


def display_path(p: str | os.PathLike) -> str:
    """``p`` as a published report shows it."""
    try:
        path = Path(p).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return str(p)
    for base, prefix in ((Path.cwd(), ""), (Path.home(), "~/")):
        try:
            rel = path.relative_to(base.resolve()).as_posix()
        except (ValueError, OSError, RuntimeError):
            continue
        return (prefix + rel) if rel != "." else (prefix.rstrip("/") or ".")
    return str(p)


def display_spec(spec: str) -> str:
    """A model SPEC with its file part (``file.py:factory``, ``model.pt2``) shown as :func:`display_path`."""
    head, sep, tail = spec.rpartition(":")
    if sep and head and _is_path(head):
        return display_path(head) + ":" + tail
    return display_path(spec) if _is_path(spec) else spec


def scrub(text: str, paths: Iterable[str | os.PathLike | None]) -> str:
    """``text`` with each of ``paths`` (as given, or resolved) replaced by its displayed form."""
    for p in paths:
        if not p:
            continue
        shown = display_path(p)
        forms = {str(p), str(Path(p).expanduser())}
        try:
            forms.add(str(Path(p).expanduser().resolve()))
        except (OSError, RuntimeError):
            pass
        for form in sorted(forms, key=len, reverse=True):
            if form and form != shown:
                text = text.replace(form, shown)
    return text


def published_command(argv: list[str]) -> str | None:
    """The ``reportgen ...`` command line with every path argument displayed (None when not run as reportgen,
    either the installed script or ``python -m reportgen``)."""
    prog = Path(argv[0]) if argv else None
    if prog is None or not (prog.name == "reportgen" or prog.parent.name == "reportgen" and prog.name == "__main__.py"):
        return None
    out = ["reportgen"]
    for arg in argv[1:]:
        flag, eq, value = arg.partition("=")
        if eq and flag.startswith("--"):
            out.append(flag + "=" + display_spec(value))
        else:
            out.append(display_spec(arg))
    return " ".join(out)


def _is_path(s: str) -> bool:
    return os.path.isabs(s) or s.startswith("~") or os.path.exists(s)


def published_model_info(loaded: Any) -> dict[str, Any]:
    """The model part of report.json / the card (a :class:`~reportgen.loading.LoadedModel`), paths displayed."""
    spec_path = loaded.spec.rpartition(":")[0] or loaded.spec
    paths = [loaded.weights, spec_path if _is_path(spec_path) else None]
    return {"spec": display_spec(loaded.spec), "kind": loaded.kind,
            "weights": scrub(loaded.weights, paths) if loaded.weights else None,
            "weights_source": None if loaded.weights else loaded.weights_text(),
            "untrained": getattr(loaded, "untrained", "") or None,
            "notes": [scrub(n, paths) for n in loaded.notes]}
