"""``reportgen check`` and the review flags of ``build`` / ``compare`` (``--baseline``, ``--rules``,
``--link-base``); registered in :mod:`reportgen.cli`."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..report import plural

CHECK_EXIT = """\b
Exit codes:
  0    every rule passes
  1    a rule failed (one line each: the rule, the value, the threshold)
  2    bad input: the report, the baseline or the rules file
"""


def review_options(f):
    """``--baseline``, ``--rules`` and ``--link-base`` (RunOptions ``baseline``, ``rules``, ``link_base``)."""
    opts = [
        click.option("--baseline", type=click.Path(), help="An earlier report (folder, report.json or single-file "
                     ".html) to compare with: every shared key number's change, judged against its noise "
                     "(docs/review.md)."),
        click.option("--rules", type=click.Path(), help="TOML rules file checked after the report is written; "
                     "exit 1 when a rule fails (default with --baseline: no key number worse beyond noise)."),
        click.option("--link-base", help="URL where the report will be published: summary.md links into it."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def review_exit(report: Any) -> bool:
    """Print each failed rule of a finished build (one line each, stderr); True when one failed."""
    failures = ((report.meta.extra.get("review") or {}).get("failures") or []) if report is not None else []
    for line in failures:
        click.echo(line, err=True)
    if failures:
        click.echo(f"{plural(len(failures), 'rule check')} failed (summary.md says more).", err=True)
    return bool(failures)


@click.command(epilog=CHECK_EXIT)
@click.argument("report", type=click.Path())
@click.option("--baseline", type=click.Path(), help="An earlier report (folder, report.json or .html).")
@click.option("--rules", type=click.Path(), help="TOML rules file (default with --baseline: no key number worse "
              "beyond its noise, no method newly failing its sanity checks).")
@click.option("--link-base", help="URL where REPORT is published (links in the printed summary).")
@click.option("--summary", "show_summary", is_flag=True, help="Print summary.md's text too.")
def check(report, baseline, rules, link_base, show_summary) -> None:
    """Check a built REPORT against rules and/or a baseline report, without any model: exit 1 when a rule fails."""
    from ..errors import ReportgenError
    from .baseline import read_report
    from .plan import make_review, prepare
    from .summary import summary_markdown

    try:
        data, _ = read_report(report, "report")
        plan = prepare(baseline, rules, link_base, compare=data.get("kind") == "compare")
    except ReportgenError as e:
        click.echo(f"error: {' '.join(str(e).split())}", err=True)
        sys.exit(2)
    review = make_review(data, plan)
    click.echo(review.verdict.replace("**", ""))
    if show_summary:
        click.echo(summary_markdown(data, review, str(report)))
    for o in review.failed:
        click.echo(o.line(), err=True)
    n = len(review.outcomes)
    click.echo(f"{review.rules_source}: {n - len(review.failed)} of {n} checks pass.")
    if not review.outcomes and review.against is None and plan.rules is None:
        click.echo("(no rules and no baseline: nothing to check; give --baseline OLD and/or --rules FILE)")
    sys.exit(1 if review.failed else 0)


__all__ = ["check", "review_options", "review_exit"]
