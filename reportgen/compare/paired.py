"""Registry techniques of a comparison shown in pairs: A's section beside B's, and for sections whose results
hold a per-method table (the ``faithfulness`` ranking), one table with A's and B's numbers side by side, its rows in
the order of the one list of attribution methods (:func:`reportgen.registry.attribution_methods`), then the rest
(baselines).

The table reader is tolerant on purpose: it takes the first list in ``results`` whose items are dicts naming a
method (``method`` or ``name``) with numeric scores, or a dict of such dicts keyed by method; anything else
gives no table (the paired pages still show both sections in full).
"""

from __future__ import annotations

import numbers
from typing import Any

from .. import registry
from ..report import Block, Group, Note, Row, Section, Table

#: techniques shown side by side by default (``faithfulness`` too, when it is registered)
PAIRED = ("filters", "saliency", "class_visualization")
#: techniques whose per-method rows are joined into one A | B table
METHOD_TABLES = ("faithfulness",)
MAX_SCORES = 4  # score columns per model in the joined table


def default_paired() -> tuple[str, ...]:
    ids = {t.id for t in registry.all_techniques()}
    return PAIRED + tuple(t for t in METHOD_TABLES if t in ids and t not in PAIRED)


def _is_score(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def method_rows(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{method: {score name: value}}`` from a section's results, or {} when it has no per-method rows."""
    for value in (results or {}).values():
        rows: dict[str, dict[str, float]] = {}
        if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
            for r in value:
                name = r.get("method", r.get("name"))
                if isinstance(name, str):
                    rows[name] = {k: float(v) for k, v in r.items() if _is_score(v)}
        elif isinstance(value, dict) and value and all(isinstance(r, dict) for r in value.values()):
            rows = {str(m): {k: float(v) for k, v in r.items() if _is_score(v)} for m, r in value.items()}
        rows = {m: s for m, s in rows.items() if s}
        if rows:
            return rows
    return {}


def listed_order(methods: list[str]) -> list[str]:
    """``methods`` in the list's order (a method under its sanity name too), then the others as given."""
    rank: dict[str, int] = {}
    for k, m in enumerate(registry.attribution_methods()):
        rank.setdefault(m.name, k)
        rank.setdefault(m.sanity_label, k)
    return sorted(methods, key=lambda m: (m not in rank, rank.get(m, 0)))


def side_by_side_table(names: tuple[str, str], a: dict[str, Any], b: dict[str, Any]) -> Table | None:
    """One table of both models' per-method scores (listed methods in the list's order, then the others in A's
    order, then B's), or None."""
    ra, rb = method_rows(a), method_rows(b)
    if not ra or not rb:
        return None
    first = next(iter(ra.values()))
    scores = [k for k in first if any(k in s for s in rb.values())][:MAX_SCORES]
    if not scores:
        return None
    methods = listed_order(list(ra) + [m for m in rb if m not in ra])
    cols = ["method"] + [f"{k} ({n})" for k in scores for n in names]

    def cell(rows: dict[str, dict[str, float]], m: str, k: str) -> Any:
        v = rows.get(m, {}).get(k)
        return "-" if v is None else round(v, 4)

    body = [[m] + [cell(r, m, k) for k in scores for r in (ra, rb)] for m in methods]
    return Table(cols, body, numeric=list(range(1, len(cols))), caption=(
        f"Per-method numbers of {names[0]} and {names[1]} side by side (the same images and settings for both; "
        "each model's own section below has its curves, intervals and verdicts). '-': not run for that model."))


def paired_section(info: registry.TechniqueInfo, names: tuple[str, str], a: Section, b: Section) -> Section:
    """One technique's sections for A and B side by side."""

    def side(name: str, s: Section) -> Group:
        blocks: list[Block] = list(s.blocks) if not s.error else [Note(f"This section failed: {s.error}", kind="error")]
        return Group(f"{name}", blocks)

    sec = Section(id=f"pair_{info.id}", title=f"{info.title}: {names[0]} | {names[1]}", summary=info.summary,
                  references=list(info.references))
    table = side_by_side_table(names, a.results, b.results) if not (a.error or b.error) else None
    if table is not None:
        sec.add(table)
    sec.add(Row([side(names[0], a), side(names[1], b)]))
    sec.results = {names[0]: a.results, names[1]: b.results}
    sec.params = {"technique": info.id}
    if a.error or b.error:
        sec.error = "; ".join(f"{n}: {s.error}" for n, s in zip(names, (a, b)) if s.error)
    return sec


__all__ = ["PAIRED", "METHOD_TABLES", "default_paired", "listed_order", "method_rows", "side_by_side_table",
           "paired_section"]
