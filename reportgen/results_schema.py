"""The schema of ``report.json``'s per-section ``results`` (``docs/results.md``), from each technique's ``RESULTS``.

A technique module declares ``RESULTS = {"key": "meaning", "images[].p": "meaning", ...}``: dotted
paths, ``[]`` marking a list of objects; a meaning starting with "(with labels)" may be absent.
:func:`result_paths` flattens a section's results the same way, so a test can check that every
number a section writes is declared (and the page stays current). Regenerate the page with
``python -m reportgen.results_schema > docs/results.md``.
"""

from __future__ import annotations

import importlib

from . import registry

UNSUPPORTED = "unsupported"  # the results key of a skipped section (reportgen.build.UNSUPPORTED)
#: the results key every section may write when it fed the model inputs resized to a size the model accepts
#: (reportgen.build.INPUT_RESIZED): {"accepts": words, "resized": ["HxW -> HxW", ...]}
INPUT_RESIZED = "input_resized"


def declared(technique_id: str) -> dict[str, str]:
    """``RESULTS`` of a technique's module ({} when it declares none)."""
    mod = importlib.import_module(registry.get(technique_id).module)
    return dict(getattr(mod, "RESULTS", {}) or {})


def result_paths(results: dict, prefix: str = "") -> set[str]:
    """Key paths of a results dict: ``{"a": 1, "b": [{"c": 2}], "d": {"x": 1}}`` -> ``{"a", "b[].c", "d"}``.

    Lists of objects are descended into (``b[].c``); any other value, a dict included (its keys may be
    data, such as class names), is one declared key."""
    out: set[str] = set()
    for k, v in results.items():
        if isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
            for row in v:
                out |= result_paths(row, f"{prefix}{k}[].")
        else:
            out.add(prefix + k)
    return out


def undeclared(technique_id: str, results: dict) -> set[str]:
    """Paths a section wrote that its ``RESULTS`` does not declare (a section skipped as ``unsupported`` for this
    model writes only that reason, which every section may)."""
    if set(results) == {UNSUPPORTED}:
        return set()
    keys = set(declared(technique_id)) | {INPUT_RESIZED}
    return {p for p in result_paths(results) if p not in keys}


def missing(technique_id: str, results: dict) -> set[str]:
    """Declared top-level keys the section did not write. A key whose meaning starts with its condition in
    parentheses ("(with labels) ...", "(with --reference-images) ...", "(when ...) ...") is optional, and so are
    the keys below it."""
    have = set(results)
    if UNSUPPORTED in have:
        return set()
    decl = declared(technique_id)
    optional = {k for k, m in decl.items() if m.startswith(("(with ", "(when "))}
    out = set()
    for key in decl:
        top = key.split("[]")[0].split(".")[0]
        if top not in have and top not in optional and key not in optional:
            out.add(key)
    return out


def results_markdown() -> str:
    out = ["# Machine-readable results (`report.json`)\n",
           "Generated from each technique's `RESULTS` declaration by "
           "`python -m reportgen.results_schema > docs/results.md`; do not edit by hand.\n",
           "Every section in `report.json` has a `results` object with its key numbers as plain JSON (no pixel "
           "arrays), so two runs can be diffed and CI can check a report without parsing HTML. `a[].b` means "
           "`a` is a list of objects, each with a key `b`. Keys marked *(with labels)* appear only when the image "
           "set has labels.\n",
           f"Any section may also write `{UNSUPPORTED}` (why it cannot apply to this model: then it writes "
           f"nothing else) and `{INPUT_RESIZED}` (it fed the model inputs at sizes the model does not take, "
           "resized to one it does: `accepts` says what the model takes, found by probing it, and `resized` lists "
           "each `HxW -> HxW` change).\n"]
    from .drift.section import RESULTS as DRIFT

    tables = [(t.id, t.title, declared(t.id)) for t in registry.all_techniques()]
    tables.append(("drift", "Explanation drift (`compare`, and `build` with a baseline; not a technique)", DRIFT))
    for tid, title, schema in tables:
        if not schema:
            continue
        out.append(f"## `{tid}`: {title}\n")
        out.append("| key | meaning |\n| --- | --- |")
        for key, meaning in schema.items():
            out.append(f"| `{key}` | {meaning.replace('|', '/')} |")
        out.append("")
    out.append("A section may also keep arrays for later runs (`Section.arrays`, e.g. the faithfulness section's maps "
               "that explanation drift compares): a folder report writes them to `arrays.npz` beside report.json, "
               "whose `arrays` key lists the file, its size in bytes and the `<section>.<name>` keys.")
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(results_markdown(), end="")
