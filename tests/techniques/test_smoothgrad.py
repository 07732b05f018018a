"""The smoothgrad technique (reportgen/techniques/smoothgrad.py): its own tests."""

from __future__ import annotations

from reportgen.report import Note


def test_smoothgrad_section(ctx, run_minimal):
    sec = run_minimal(ctx, "smoothgrad")
    assert sec.results["samples"] == 8
    notes = [b for b in sec.blocks if isinstance(b, Note)]
    ratio = sec.results["median_speckle_ratio"]
    assert ("removed speckle" in notes[0].text) == (ratio < 0.8)
