"""``--budget`` and ``--plan`` of ``reportgen build`` (applied with one decorator line in :mod:`reportgen.cli`)."""

from __future__ import annotations

from typing import Any, Callable

import click


def budget_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--budget DURATION`` and ``--plan`` to a click command (RunOptions ``budget`` and ``plan_only``)."""
    f = click.option("--plan", "plan_only", is_flag=True,
                     help="Print each section's estimated time (and, with --budget, the reduced options) and exit "
                     "without running the sections.")(f)
    return click.option("--budget", metavar="DURATION",
                         help="Time for the sections, e.g. 90s, 5m, 1h: the most expensive sections' images, steps "
                         "and samples are lowered (never below the minimal preset) to fit the estimate, then, if "
                         "that is not enough, whole sections are left out (the lecture's pictures first); "
                         "report.json's plan holds the estimate and measured time (general.budget in the TOML "
                         "file, in seconds).")(f)
