"""Documentation generated from the technique registry (``docs/techniques.md``)."""

from __future__ import annotations

import dataclasses
import inspect

from . import registry
from .config import allowed_values


def techniques_markdown() -> str:
    out = ["# Techniques\n",
           "Generated from the registry by `python -m reportgen techniques --markdown`; do not edit by hand.\n"]
    out.append("Role: what the section is to a review (`registry.Role`); `--budget` leaves `lecture` sections out "
               "before `review` ones when every option at its floor does not fit, and never the `overview`.\n")
    out.append("| id | title | papers | presets | role |\n| --- | --- | --- | --- | --- |")
    for t in registry.all_techniques():
        papers = "; ".join(f"[{r.short()}]({r.url})" if r.url else r.short() for r in t.references)
        out.append(f"| `{t.id}` | {t.title} | {papers} | {', '.join(t.runs_in)} | {t.role} |")
    out.append("")
    for t in registry.all_techniques():
        out.append(f"## `{t.id}`: {t.title}\n")
        out.append(t.summary + "\n")
        mod = __import__(t.module, fromlist=["_"])
        if mod.__doc__:
            out.append(inspect.cleandoc(mod.__doc__) + "\n")
        for r in t.references:
            out.append(f"- {r.authors}. *{r.title}*. {r.venue}, {r.year}. {r.url}")
        if t.methods:
            out.append("\nAttribution methods it declares (`registry.attribution_methods()`): "
                       + "; ".join(_method_uses(m) for m in t.methods) + ".")
        fields = dataclasses.fields(t.options)
        if fields:
            out.append("\n| option | minimal | standard | full | allowed | meaning |\n"
                       "| --- | --- | --- | --- | --- | --- |")
            for f in fields:
                vals = [repr(getattr(t.default_options(p), f.name)) for p in registry.PRESETS]
                allowed = allowed_values(t.options, f.name).replace("|", "\\|")
                out.append(f"| `{t.id}.{f.name}` | " + " | ".join(f"`{v}`" for v in vals)
                           + f" | {allowed} | {registry.option_help(t.options, f.name)} |")
        out.append("")
    return "\n".join(out) + "\n"


def _method_uses(m: registry.AttributionMethod) -> str:
    """``name`` (who reads it): faithfulness, sanity (always / when the technique runs), the set-level key."""
    uses = ["faithfulness"] if m.maps is not None else []
    if m.sanity is not None:
        label = f" as {m.sanity.label}" if m.sanity.label else ""
        uses.append(f"sanity{label}" + (", always" if m.sanity.always else ""))
    if m.set_level is not None:
        uses.append(f"mistakes/shortcuts `method={m.set_level.key}`")
    return f"{m.name} ({', '.join(uses)})"


def preset_summary(info: registry.TechniqueInfo) -> str:
    """What the presets change for one technique, for `reportgen techniques`: 'presets (minimal, standard, full):
    gallery 8, 48, 96', 'presets: the same options in every preset', and the presets it is left out of."""
    vals = {p: info.default_options(p) for p in info.runs_in}
    changed = []
    for f in dataclasses.fields(info.options):
        shown = [repr(getattr(v, f.name)) for v in vals.values()]
        if len(set(shown)) > 1:
            changed.append(f"{f.name} {', '.join(shown)}")
    left_out = [p for p in registry.PRESETS if p not in info.runs_in]
    text = (f"presets ({', '.join(vals)}): " + "; ".join(changed) if changed
            else "presets: the same options in every preset")
    return text + (f" (not run in {', '.join(left_out)})" if left_out else "")
