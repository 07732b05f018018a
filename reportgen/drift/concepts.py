"""Concepts per class of two runs compared from their ``concepts`` section results alone (report.json: no arrays).

A concept (CRAFT-style NMF, Fel et al. 2023) is known by its most activating crops (image name and box). Within a
class both runs analysed, concept i of the first run and concept j of the second are the same concept when their
top-crop sets overlap: Jaccard ``|C_i & C_j| / |C_i | C_j| >= MATCH``; the pairs are chosen one-to-one by the
Hungarian algorithm on the Jaccard matrix. A second-run concept with no match *appeared*, a first-run concept with no
match *vanished*, and a matched pair whose importance share (importance / sum of |importance| over the class's
concepts) moved by ``SHARE_CHANGE`` or more *changed importance*.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MATCH = 1 / 3
SHARE_CHANGE = 0.1


def crops(concept: dict[str, Any]) -> set[tuple[str, tuple[int, ...]]]:
    return {(str(c.get("image")), tuple(int(v) for v in c.get("box") or ())) for c in concept.get("top_crops") or []}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def match_class(ca: list[dict[str, Any]], cb: list[dict[str, Any]]) -> dict[str, Any]:
    """One class's concepts of the two runs: matched pairs, appeared, vanished, changed importance."""
    from scipy.optimize import linear_sum_assignment

    ja = np.array([[jaccard(crops(x), crops(y)) for y in cb] for x in ca]).reshape(len(ca), len(cb))
    pairs = []
    if ja.size:
        rows, cols = linear_sum_assignment(-ja)
        pairs = [(int(i), int(j)) for i, j in zip(rows, cols) if ja[i, j] >= MATCH]
    matched = [{"a": ca[i].get("concept"), "b": cb[j].get("concept"), "crop_jaccard": round(float(ja[i, j]), 4),
                "share_a": ca[i].get("share"), "share_b": cb[j].get("share")} for i, j in pairs]
    for m in matched:
        m["importance_changed"] = bool(isinstance(m["share_a"], (int, float)) and isinstance(m["share_b"], (int, float))
                                       and abs(m["share_b"] - m["share_a"]) >= SHARE_CHANGE)
    return {"matched": matched,
            "appeared": [c.get("concept") for j, c in enumerate(cb) if j not in {q for _, q in pairs}],
            "vanished": [c.get("concept") for i, c in enumerate(ca) if i not in {p for p, _ in pairs}]}


def compare_concepts(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    """``results["concepts"]`` of the drift section from two ``concepts`` sections' results (None: not run)."""
    if not a or not b:
        return {"compared": False, "reason": "the concepts section did not run in both runs", "classes": []}
    by_a = {c.get("class"): c for c in a.get("classes") or []}
    out = []
    for cls in (c.get("class") for c in b.get("classes") or []):
        if cls in by_a:
            cb = next(c for c in b["classes"] if c.get("class") == cls)
            out.append({"class": cls, **match_class(by_a[cls].get("concepts") or [], cb.get("concepts") or [])})
    if not out:
        return {"compared": False, "reason": "no class was analysed for concepts in both runs", "classes": []}
    return {"compared": True, "match_jaccard": round(MATCH, 4), "share_change": SHARE_CHANGE, "classes": out}


__all__ = ["MATCH", "SHARE_CHANGE", "crops", "jaccard", "match_class", "compare_concepts"]
