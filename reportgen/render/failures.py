"""What the failure sections found, for the front page and the explorer (read from the report tree, no torch).

The model card is computed first (it opens the report) and sections never read each other while they run, so the
card cannot hold numbers of later sections. The renderer has the whole tree: :func:`failure_group` turns the
results of ``corruptions`` (images that flip under the mildest shift), ``slices`` (the worst slice) and
``data_issues`` (suspected label errors, duplicates) into one fact card of the overview, present only for the
sections that ran; :func:`explorer_columns` gives the explorer a slice number and a suspected-label-error flag per
image, so its scatter can be coloured by them. A re-render of a stored report shows the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..report import plural


def _results(report, sid: str) -> dict[str, Any] | None:
    for s in report.sections:
        if s.id == sid and not s.error and isinstance(s.results, dict) and s.results:
            return s.results
    return None


def _count(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, (list, tuple)):
        return len(v)
    return None


def failure_facts(report) -> list[tuple[str, str, str]]:
    """(label, value, section id) for each failure section that ran, in the card's order."""
    out = []
    cor = _results(report, "corruptions")
    if cor is not None:
        flips = _count(cor.get("mildest_flips"))
        fragile = cor.get("most_fragile")
        if isinstance(fragile, dict):
            fragile = fragile.get("corruption") or fragile.get("name")
        if flips is not None:
            of = cor.get("images")
            text = f"{flips} of {plural(of, 'image')}" if isinstance(of, int) else plural(flips, "image")
            out.append(("Flip under the mildest shift", text, "corruptions"))
        if fragile:
            out.append(("Most fragile to", str(fragile), "corruptions"))
    sl = _results(report, "slices")
    if sl is not None:
        slices = sl.get("slices") or []
        if slices:
            w = slices[0]
            cls = (w.get("top_true_classes") or w.get("top_predicted_classes") or [[""]])[0][0]
            acc = (f"accuracy {w['accuracy']:.2f} vs {w['rest_accuracy']:.2f}" if w.get("accuracy") is not None
                   else f"confidence {w.get('mean_confidence', 0):.2f}")
            out.append(("Worst slice", f"{w.get('size')} images, {acc}" + (f", mostly {cls}" if cls else ""),
                        "slices"))
        else:
            out.append(("Failure slices", f"none significant ({sl.get('candidates', 0)} tested)", "slices"))
    di = _results(report, "data_issues")
    if di is not None:
        counts = di.get("counts") or {}
        if "label_issues" in counts:
            out.append(("Suspected label errors", str(counts["label_issues"]), "data_issues"))
        dup = int(counts.get("exact_duplicates", 0)) + int(counts.get("near_duplicates", 0))
        out.append(("Duplicates in the set", f"{counts.get('exact_duplicates', 0)} exact, "
                    f"{counts.get('near_duplicates', 0)} near" if dup else "none", "data_issues"))
        if "reference_duplicates" in counts:
            out.append(("Copies in the reference set", str(counts["reference_duplicates"]), "data_issues"))
    return out


def explorer_columns(report_sections, names: list[str]) -> dict[str, np.ndarray]:
    """Per image of the explorer (by file name): ``slice`` (int16, 0: none, k: the k-th slice) and ``suspect``
    (uint8, 1: a suspected label error); only the columns whose section ran."""
    row = {n: i for i, n in enumerate(names)}
    out: dict[str, np.ndarray] = {}
    for s in report_sections:
        res = s.results if isinstance(s.results, dict) and not s.error else {}
        if s.id == "slices" and res.get("slices"):
            col = np.zeros(len(names), np.int16)
            for k, sl in reversed(list(enumerate(res["slices"], 1))):  # an image in two slices: the worse one
                for n in sl.get("images") or []:
                    if n in row:
                        col[row[n]] = k
            out["slice"] = col
        if s.id == "data_issues" and "label_issues" in res:
            col8 = np.zeros(len(names), np.uint8)
            for d in res["label_issues"]:
                if isinstance(d, dict) and d.get("image") in row:
                    col8[row[d["image"]]] = 1
            out["suspect"] = col8
    return out


#: the explorer's extra "colour by" choices: data column -> option label
EXTRA_MODES = {"slice": "failure slice", "suspect": "suspected label error"}
