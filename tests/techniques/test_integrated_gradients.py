"""The integrated_gradients technique (reportgen/techniques/integrated_gradients.py): its own tests."""

from __future__ import annotations

from reportgen.report import Note, Table


def test_integrated_gradients_section_reports_completeness(ctx, run_minimal):
    sec = run_minimal(ctx, "integrated_gradients", steps=2, max_steps=512)
    r = sec.results
    assert r["tried"][0][0] == 2 and r["steps"] >= 2
    table = next(b for b in sec.blocks if isinstance(b, Table))
    assert "Gauss-Legendre steps" in table.caption
    # per image: the reported steps are where it stopped; an image stops doubling as soon as it is within tolerance
    per = [im["steps"] for im in r["images"]]
    assert max(per) == r["steps"] and [row[6] for row in table.rows] == per
    for im in r["images"]:
        hist = [s for s, _ in r["tried"] if s <= im["steps"]]
        assert im["steps"] in hist
        if im["steps"] < r["steps"]:
            assert im["gap"] <= 0.01  # it stopped early because it was within tolerance
    notes = " ".join(b.text for b in sec.blocks if isinstance(b, Note))
    if r["converged"]:
        assert r["worst_gap"] <= 0.01 and "holds within 1%" in notes
    else:
        assert "NOT within" in notes
    for im in r["images"]:
        d = im["score_x"] - im["score_baseline"]
        assert abs(im["sum_ig"] - d) <= max(0.011 * abs(d), 2e-3) or not r["converged"]


def test_integrated_gradients_step_limit_is_reported(ctx, run_minimal):
    sec = run_minimal(ctx, "integrated_gradients", steps=1, max_steps=1, tolerance=1e-9)
    assert not sec.results["converged"]
    assert any("NOT within" in b.text for b in sec.blocks if isinstance(b, Note))
