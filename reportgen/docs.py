"""Documentation generated from the technique registry (``docs/techniques.md``)."""

from __future__ import annotations

import dataclasses
import inspect

from . import registry


def _field_doc(cls: type, name: str) -> str:
    """The string literal under a dataclass field (attribute docstring), if any."""
    try:
        src = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return ""
    for k, line in enumerate(src):
        if line.strip().startswith(f"{name}:") and k + 1 < len(src):
            nxt = src[k + 1].strip()
            if nxt.startswith('"""') and nxt.endswith('"""') and len(nxt) > 6:
                return nxt.strip('"')
    return ""


def techniques_markdown() -> str:
    out = ["# Techniques\n",
           "Generated from the registry by `python -m reportgen techniques --markdown`; do not edit by hand.\n"]
    out.append("| id | title | papers | presets |\n| --- | --- | --- | --- |")
    for t in registry.all_techniques():
        papers = "; ".join(f"[{r.short()}]({r.url})" if r.url else r.short() for r in t.references)
        out.append(f"| `{t.id}` | {t.title} | {papers} | {', '.join(t.runs_in)} |")
    out.append("")
    for t in registry.all_techniques():
        out.append(f"## `{t.id}`: {t.title}\n")
        out.append(t.summary + "\n")
        mod = __import__(t.module, fromlist=["_"])
        if mod.__doc__:
            out.append(inspect.cleandoc(mod.__doc__) + "\n")
        for r in t.references:
            out.append(f"- {r.authors}. *{r.title}*. {r.venue}, {r.year}. {r.url}")
        fields = dataclasses.fields(t.options)
        if fields:
            out.append("\n| option | minimal | standard | full | meaning |\n| --- | --- | --- | --- | --- |")
            for f in fields:
                vals = [repr(getattr(t.default_options(p), f.name)) for p in registry.PRESETS]
                out.append(f"| `{t.id}.{f.name}` | " + " | ".join(f"`{v}`" for v in vals)
                           + f" | {_field_doc(t.options, f.name)} |")
        out.append("")
    return "\n".join(out) + "\n"
