"""What the command line prints while it works: log lines, progress (a bar on a terminal; in a log file a line at
most every :data:`LOG_EVERY_S` seconds with the count done and the time left), counted nouns (:func:`plural`), and
one-line errors, click's usage errors included (:class:`OneLineErrors`)."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Iterable, Iterator

import click

from ..report import plural

#: in a non-terminal log, a progress line at most this often (seconds)
LOG_EVERY_S = 30.0


def duration(seconds: float) -> str:
    """'45 s', '3 min 05 s', '1 h 02 min'."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def eta_text(done: int, total: int | None, elapsed: float) -> str:
    """'12/40 done, 1 min 05 s so far, about 3 min 02 s left' (no estimate without a total or a finished step)."""
    if not total:
        return f"{done:,} done, {duration(elapsed)} so far"
    text = f"{done:,}/{total:,} done, {duration(elapsed)} so far"
    if 0 < done < total:
        text += f", about {duration(elapsed / done * (total - done))} left"
    return text


def log(msg: str) -> None:
    click.echo(msg, err=True)


def progress(iterable: Iterable, desc: str = "", total: int | None = None, *,
             clock: Callable[[], float] = time.monotonic, every_s: float = LOG_EVERY_S) -> Iterator[Any]:
    """A progress bar on stderr; when stderr is not a terminal (a log file, CI), a first line with the step count,
    then a line with the count done and the time left at most every ``every_s`` seconds."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if sys.stderr.isatty():
        with click.progressbar(iterable, length=total, label=f"      {desc}", file=sys.stderr,
                               show_eta=True, show_pos=True, width=30) as bar:
            yield from bar
        return
    log(f"      {desc}" + (f" ({plural(total, 'step')})" if total else ""))
    t0 = last = clock()
    for done, item in enumerate(iterable):
        yield item  # the caller works on it until it asks for the next one
        now = clock()
        if now - last >= every_s:
            last = now
            log(f"      {desc}: {eta_text(done + 1, total, now - t0)}")


def one_line(e: BaseException | str, limit: int | None = 600) -> str:
    """The message of ``e`` on one line, cut at ``limit`` characters (None: never; reportgen's own messages are
    written complete, only foreign exceptions are cut)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if limit is None or len(text) <= limit else text[:limit - 3] + "..."


class _NeverRaised(click.ClickException):
    pass


#: click >= 8.2 raises this (a UsageError) for a group called without a command; older click prints help itself
_NO_ARGS_IS_HELP: type[click.ClickException] = getattr(click.exceptions, "NoArgsIsHelpError", _NeverRaised)


class OneLineErrors(click.Group):
    """A click group whose usage errors (a bad ``--mean``, a missing ``--model``) print one ``error:`` line and exit
    2, like reportgen's own bad-input errors, instead of click's usage block."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except _NO_ARGS_IS_HELP as e:  # `reportgen` alone: click's help, as before
            e.show()
            sys.exit(e.exit_code)
        except click.UsageError as e:
            where = e.ctx.command_path if e.ctx is not None else "reportgen"
            log(f"error: {one_line(e.format_message(), None)} (see {where} --help)")
            sys.exit(2)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            log("Aborted!")
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)  # as click's standalone mode: --help, --version: 0
