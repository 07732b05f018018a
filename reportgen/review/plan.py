"""A review of one report: its key numbers, their change against a baseline, the rules and the verdict.

:func:`prepare` turns the run's options (``--baseline``, ``--rules``, ``--link-base``) into a
:class:`ReviewPlan` before any model is loaded (bad input: exit 2). :func:`make_review` judges a finished
``report.json`` (:func:`reportgen.review.write_review` inside the atomic output swap).

A comparison report without ``--baseline`` is reviewed as its second model against its first (paired: the
same images); only a ``--rules`` file gates it then (the default rules need ``--baseline``, so a comparison's
exit code does not change unless asked). With ``--baseline``, its second model is judged against the baseline
report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..report import plural
from .baseline import Baseline, load_baseline
from .change import Change, compare_reports
from .keys import Key, key_numbers, models_of
from .rules import Outcome, RuleSet, default_rules, evaluate, load_rules, require_baseline


@dataclass(frozen=True)
class ReviewPlan:
    """What a review compares with and checks: the baseline, the rules (None: default or none), link base."""

    baseline: Baseline | None = None
    rules: RuleSet | None = None
    link_base: str | None = None


@dataclass
class Review:
    keys: dict[str, Key]
    changes: dict[str, Change]
    outcomes: list[Outcome]
    rules_source: str
    against: str | None  # what the baseline is ("report at OLD", "model A of this comparison"), None: none
    pairing: str | None
    verdict: str
    links: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.passed]

    def to_dict(self) -> dict[str, Any]:
        """The ``review`` key of report.json."""
        return {
            "verdict": self.verdict, "baseline": self.against, "pairing": self.pairing,
            "rules": self.rules_source, "passed": not self.failed,
            "failures": [o.line() for o in self.failed],
            "outcomes": [vars(o) for o in self.outcomes[:500]],
            "changes": [{"metric": c.name, "old": c.old.value, "new": c.new.value, "delta": c.delta,
                         "ci95": c.ci, "p": c.p, "how": c.how, "beyond_noise": c.beyond_noise, "worse": c.worse}
                        for c in list(self.changes.values())[:500]],
        }


def prepare(baseline: str | Path | None = None, rules: str | Path | None = None,
            link_base: str | None = None, compare: bool = False) -> ReviewPlan:
    """Load and validate the baseline and the rules (ReportgenError: exit 2, before any work)."""
    rs = load_rules(rules) if rules is not None else None
    base = load_baseline(baseline) if baseline is not None else None
    if rs is not None:
        require_baseline(rs, base is not None or compare)
    if link_base is not None and not link_base.startswith(("http://", "https://")):
        from ..errors import ConfigError

        raise ConfigError(f"--link-base must be an http(s) URL where the report will be published, not {link_base!r}")
    return ReviewPlan(base, rs, link_base.rstrip("/") + "/" if link_base else None)


def _verdict(keys: dict[str, Key], changes: dict[str, Change], failed: list[Outcome], against: str | None,
             pairing: str | None) -> str:
    worse = sorted((c for c in changes.values() if c.worse and c.beyond_noise), key=_severity)
    better = [c for c in changes.values() if c.worse is False and c.beyond_noise]
    top1 = keys.get("top1")
    if against is None:
        head = "**No baseline**"
        body = (f"top-1 {top1.value:.3f} (95% CI {top1.ci[0]:.3f}–{top1.ci[1]:.3f}, {top1.n} labelled images)"
                if top1 and isinstance(top1.value, float) and top1.ci else "no labelled images: no accuracy")
    elif worse:
        head, body = "**Regressed**", f"{worse[0].new.label}: {worse[0].describe()}"
    elif better:
        best = changes["top1"] if changes.get("top1") in better else better[0]
        head, body = "**Improved**", f"{best.new.label}: {best.describe()}"
    else:
        c = changes.get("top1")
        head = "**No change beyond noise**"
        body = f"top-1 {c.describe()}" if c else f"{len(changes)} shared numbers ({pairing})"
    body = " ".join(body.split())
    body = body if len(body) <= 300 else body[:299] + "…"
    tail = f" · **{plural(len(failed), 'rule check')} failed**" if failed else ""
    return f"{head}: {body}{tail}"


def _severity(c: Change) -> tuple[int, float]:
    order = {"top1": 0, "top5": 1, "sanity": 2, "faithfulness": 3}.get(c.new.family, 4)
    return order, -abs(c.delta or 0)


def make_review(data: dict[str, Any], plan: ReviewPlan) -> Review:
    """Judge the report ``data`` (report.json) under ``plan``."""
    models = models_of(data)
    keys = key_numbers(data)
    changes: dict[str, Change] = {}
    against = pairing = None
    alpha = plan.rules.alpha if plan.rules else 0.05
    if plan.baseline is not None:
        changes, pairing = compare_reports(data, plan.baseline.report, alpha=alpha)
        against = f"the report at {plan.baseline.source}"
    elif len(models) == 2:
        changes, pairing = compare_reports(data, data, new_model=models[1], old_model=models[0], alpha=alpha)
        against = f"model {models[0]} of this comparison"
    rules = plan.rules
    if rules is None and plan.baseline is not None:  # a comparison's B vs A is shown, gated only by --rules
        rules = default_rules(keys, key_numbers(plan.baseline.report), alpha)
    outcomes = evaluate(rules, keys, changes) if rules is not None else []
    failed = [o for o in outcomes if not o.passed]
    links = {}
    if plan.link_base:
        links = {s["id"]: plan.link_base + s["page"] for s in data.get("sections") or []
                 if isinstance(s, dict) and s.get("page")}
        links["index"] = plan.link_base + "index.html"
    return Review(keys, changes, outcomes, rules.source if rules else "no rules", against, pairing,
                  _verdict(keys, changes, failed, against, pairing), links)


__all__ = ["ReviewPlan", "Review", "prepare", "make_review"]
