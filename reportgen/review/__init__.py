"""Reviews: a report's key numbers against a baseline and rules, a verdict, ``summary.md`` and ``card.png``.

``reportgen build/compare --baseline OLD --rules rules.toml --link-base URL`` and ``reportgen check REPORT``
(docs/review.md). :func:`review_plan` validates the options before any model is loaded; the returned
:class:`Reviewer` runs inside the atomic output swap (:func:`reportgen.publish.rerender.publish_report`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .keys import predictions_record
from .plan import Review, ReviewPlan, make_review, prepare


def write_review(folder: Path, plan: ReviewPlan | None, *, files: bool = True, where: str | None = None) -> Review:
    """Review the report.json in ``folder`` (the staged output), store the ``review`` key in it and, with
    ``files``, write summary.md and card.png beside it; append the summary to ``$GITHUB_STEP_SUMMARY``."""
    from .cardpng import write_card
    from .summary import summary_markdown

    path = folder / "report.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    review = make_review(data, plan or ReviewPlan())
    data["review"] = review.to_dict()
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    text = summary_markdown(data, review, where)
    if files:
        (folder / "summary.md").write_text(text, encoding="utf-8")
        write_card(data, review, folder, folder / "card.png")
    step = os.environ.get("GITHUB_STEP_SUMMARY")
    if step:
        with open(step, "a", encoding="utf-8") as f:
            f.write(text + "\n")
    return review


@dataclass(frozen=True)
class Reviewer:
    """The review step of one run (``publish_report(..., review=...)``): returns report.json's ``review``."""

    plan: ReviewPlan

    def __call__(self, folder: Path, *, files: bool = True, where: str | None = None) -> dict[str, Any]:
        return write_review(folder, self.plan, files=files, where=where).to_dict()


def review_plan(o: Any, compare: bool = False) -> Reviewer:
    """The review of a run with RunOptions ``o`` (``baseline``, ``rules``, ``link_base``), validated now."""
    return Reviewer(prepare(getattr(o, "baseline", None), getattr(o, "rules", None),
                            getattr(o, "link_base", None), compare=compare))


def run_predictions(ctxs: list[Any], names: tuple[str, ...] | list[str] | None = None,
                    log: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """report.json's ``predictions``: each image's content hash, label and (per model) top-1 and top-5 hit."""
    try:
        recs = [predictions_record([r.sha256 for r in c.images.records], c.images.labels, c.features().probs,
                                   c.class_names) for c in ctxs]
    except Exception as e:  # the feature pass failed: the sections that need it say so; no pairing later
        if log:
            log(f"per-image predictions not stored ({type(e).__name__}: {e})")
        return None
    if names is None:
        return recs[0]
    shared = {k: recs[0][k] for k in ("sha256", "label", "class_names")}
    return {**shared, "models": {n: {"pred": r["pred"], "top5": r["top5"]} for n, r in zip(names, recs)}}


__all__ = ["Review", "ReviewPlan", "Reviewer", "review_plan", "write_review", "run_predictions", "make_review"]
