"""``summary.md``: a review as a pull-request comment or CI step summary (Markdown, no images inlined).

The verdict line, a table of key numbers with their change and a pass/fail mark per rule, the failed rules,
the top regressions and (with a ``drift`` section) the drifted classes. Every list is capped ("and N more")
and names are shortened, so the text stays under :data:`LIMIT` bytes whatever the model or image set.
Links into the report only with ``--link-base URL`` (a comment needs absolute links).
"""

from __future__ import annotations

from typing import Any

from .change import Change, fmt
from .keys import Key
from .plan import Review

LIMIT = 60_000  # bytes; GitHub comments take 65,536 characters
MAX_ROWS = 40
MAX_LIST = 10


def _cell(text: Any, width: int = 80) -> str:
    s = " ".join(str(text).split()).replace("|", "\\|")
    return s if len(s) <= width else s[:width - 1] + "…"


def _more(n: int, shown: int) -> list[str]:
    return [f"- … and {n - shown} more (see the report's review in report.json)"] if n > shown else []


def _mark(review: Review, name: str, family: str = "") -> str:
    """A key number's rule mark; ``name`` "" with a ``family``: every member's."""
    res = [o for o in review.outcomes if o.metric == name or (not name and o.metric.split(".")[0] == family)]
    if not res:
        return ""
    return "❌ fail" if any(not o.passed for o in res) else "✅ pass"


def _link(review: Review, key: Key, text: str) -> str:
    page = key.page.split("/")[-1].removesuffix(".html") if key.page else None
    url = review.links.get(page or "") if page else None
    return f"[{text}]({url})" if url else text


def _row(review: Review, k: Key, ch: Change | None) -> str:
    ci = f"{round(k.ci[0], 4):.3g} – {round(k.ci[1], 4):.3g}" if k.ci else ""
    change = judged = base = ""
    if ch is not None:
        base = _cell(fmt(ch.old.value), 24)
        change = f"{ch.delta:+.3g}" if ch.delta is not None else ("changed" if ch.worse is not None else "same")
        judged = {True: "beyond noise", False: "within noise", None: ""}[ch.beyond_noise]
        judged += (" (worse)" if ch.worse else " (better)" if ch.worse is False else "") if ch.beyond_noise else ""
        if ch.how == "verdict":
            judged = {True: "newly failing", False: "newly passing", None: ""}[ch.worse]
        elif ch.beyond_noise is None and ch.delta is not None:
            judged = "not judged"
    return (f"| {_link(review, k, _cell(k.label, 70))} | {_cell(fmt(k.value), 30)} | {ci} | {k.n or ''} | {base} "
            f"| {change} | {judged} | {_mark(review, k.name)} |")


def _class_row(review: Review) -> list[str]:
    per = [k for k in review.keys.values() if k.family == "per_class_recall"]
    if not per:
        return []
    worst = min(per, key=lambda k: k.value if isinstance(k.value, float) else 1.0)
    worse = [c for c in review.changes.values() if c.new.family == "per_class_recall" and c.worse and c.beyond_noise]
    changed = f"{len(worse)} worse beyond noise" if review.changes else ""
    return [f"| per-class recall ({len(per)} classes) | lowest: {_cell(worst.label.removeprefix('recall of '), 30)} "
            f"{fmt(worst.value)} | | {worst.n} | | | {changed} | {_mark(review, '', 'per_class_recall')} |"]


def key_table(review: Review) -> list[str]:
    rows = [k for k in review.keys.values() if k.family not in ("per_class_recall", "per_class_ece")]
    out = ["| key number | value | 95% CI | n | baseline | change | judged | rules |",
           "|---|---|---|---|---|---|---|---|"]
    out += [_row(review, k, review.changes.get(k.name)) for k in rows[:MAX_ROWS]] + _class_row(review)
    if len(rows) > MAX_ROWS:
        out.append(f"| … and {len(rows) - MAX_ROWS} more | | | | | | | |")
    return out


def regressions(review: Review) -> list[str]:
    """The changes for the worse beyond noise (most first), then the largest drops within noise."""
    worse = [c for c in review.changes.values() if c.worse]
    worse.sort(key=lambda c: (c.new.family not in ("top1", "top5"), c.delta if c.delta is not None else -1.0))
    beyond = [c for c in worse if c.beyond_noise]
    within = [c for c in worse if not c.beyond_noise]
    out = []
    if beyond:
        out += ["", "### Top regressions (beyond noise)", ""]
        out += [f"- {_cell(c.new.label, 80)}: {_cell(c.describe(), 160)}" for c in beyond[:MAX_LIST]]
        out += _more(len(beyond), MAX_LIST)
    if within:
        out += ["", "Largest drops within noise:", ""]
        out += [f"- {_cell(c.new.label, 80)}: {_cell(c.describe(), 160)}" for c in within[:5]]
        out += _more(len(within), 5)
    return out


def drift_lines(data: dict[str, Any], review: Review) -> list[str]:
    sec = next((s for s in data.get("sections") or [] if isinstance(s, dict) and s.get("id") == "drift"), None)
    res = (sec or {}).get("results") or {}
    if not isinstance(res, dict) or not (res.get("drifted_classes") or res.get("changed_images")):
        return []
    link = review.links.get("drift")
    out = ["", "### Explanation drift" + (f" ([section]({link}))" if link else ""), ""]
    classes = [c for c in res.get("drifted_classes") or [] if isinstance(c, dict)]
    for c in classes[:MAX_LIST]:
        out.append(f"- class {_cell(c.get('class'), 60)}: mean rank correlation {fmt(c.get('mean_rank_correlation'))}"
                   f" over {c.get('images')} images")
    out += _more(len(classes), MAX_LIST)
    images = [c for c in res.get("changed_images") or [] if isinstance(c, dict)]
    if images:
        out += ["", "Explanations that changed most while the prediction did not:", ""]
        for c in [c for c in images if c.get("prediction_same", True)][:MAX_LIST]:
            out.append(f"- {_cell(c.get('image'), 70)} ({_cell(c.get('method'), 30)}): rank correlation "
                       f"{fmt(c.get('rank_correlation'))}, top-k overlap {fmt(c.get('topk_overlap'))}")
    return out


def summary_markdown(data: dict[str, Any], review: Review, where: str | None = None) -> str:
    """The summary of ``data`` (report.json) and its review, under :data:`LIMIT` bytes."""
    title = _cell(data.get("title") or "reportgen report", 120)
    n_fail = len(review.failed)
    lines = [f"## {title}", "", review.verdict, ""]
    meta = [f"baseline: {_cell(review.against, 160)}" if review.against else "no baseline (give --baseline OLD)"]
    if review.pairing:
        meta.append(f"images: {review.pairing}")
    meta.append(f"rules: {review.rules_source}" + (f" ({len(review.outcomes) - n_fail} pass, {n_fail} fail)"
                                                   if review.outcomes else ""))
    lines += [" · ".join(meta), ""]
    gone = [g.get("section", "?") for g in (data.get("plan") or {}).get("left_out") or []]
    if gone:  # --budget left them out: their numbers are missing from this review, not judged
        lines += [f"Left out by --budget, so not judged here: {_cell(', '.join(gone), 300)} (rebuild without "
                  "--budget, or with a larger one, to review them)", ""]
    if review.links.get("index"):
        lines += [f"Full report: {review.links['index']}", ""]
    else:
        lines += [f"Full report: {_cell(where or 'index.html beside this file', 200)} (not linked: give "
                  "--link-base URL where it will be published)", ""]
    if review.failed:
        lines += ["### Failed rules", ""]
        lines += [f"- ❌ `{_cell(o.rule, 80)}`: {_cell(o.metric, 60)} = {_cell(o.value, 200)} "
                  f"(threshold: {_cell(o.threshold, 80)})" for o in review.failed[:MAX_LIST * 3]]
        lines += _more(n_fail, MAX_LIST * 3) + [""]
    lines += ["### Key numbers", ""] + key_table(review)
    lines += regressions(review) + drift_lines(data, review)
    lines += ["", f"<sub>reportgen {data.get('reportgen') or ''} · {data.get('images', {}).get('count', '?')} "
              f"images · {data.get('generated') or ''}</sub>", ""]
    text = "\n".join(lines)
    if len(text.encode("utf-8")) > LIMIT:
        cut = text.encode("utf-8")[:LIMIT - 200].decode("utf-8", "ignore")
        text = cut[:cut.rfind("\n")] + "\n\n… (summary cut at 60 KB; the full review is in report.json)\n"
    return text


__all__ = ["summary_markdown", "LIMIT"]
