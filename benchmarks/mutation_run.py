"""Run the mutants mutmut 3 generated, one forked child per mutant (docs/mutation.md).

    mutmut run "reportgen.attribution.metrics.x_spearman*"    # once: generates mutants/ and the test stats
    OMP_NUM_THREADS=1 python benchmarks/mutation_run.py [--workers N] [--retry-timeouts] [--with-tests FILE] MODULE ...

MODULE: a mutated module's path below ``reportgen/`` without ``.py`` (``attribution/faithfulness``). Why not
``mutmut run`` itself: its fork-server runner stalled on this suite (workers that imported torch and the test
modules stopped taking mutants after a few dozen), and a fresh process per mutant spends ~8 s importing torch and
the cross-check libraries. Here one parent imports them once and forks a child per mutant; the child sets
``MUTANT_UNDER_TEST`` (mutmut's trampolines read it at each call) and runs, with ``-x``, the tests mutmut's stats
say reach the mutated function, fastest first. A child over its CPU limit gets SIGXCPU (a timeout, counted apart).
Verdicts go into mutmut's own ``mutants/**/*.py.meta`` (the codes ``mutmut results`` and
``benchmarks/mutation_table.py`` read); a mutant with a verdict is not run again unless ``--retry-timeouts`` and
it timed out. ``--with-tests FILE`` (repeatable) runs a test file outside mutmut's selection (the MobileNet-sized
incremental-occlusion and attention tests, left out of ``pyproject.toml``'s selection as slow) after the selected
tests, for every mutant they have not killed yet; each adds ``EXTRA_S`` CPU seconds to the limit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import time
from math import ceil
from pathlib import Path

#: CPU seconds a child may use: (the tests' measured duration + CONSTANT) x MULTIPLIER, at least FLOOR
CONSTANT, MULTIPLIER, FLOOR = 10.0, 4.0, 60
TIMEOUT = -24  # mutmut's code for SIGXCPU
EXTRA_S = 120


def _child(name: str, tests: list[str], limit: int) -> None:
    import pytest
    from mutmut.mutation.trampoline import set_mutant_under_test

    resource.setrlimit(resource.RLIMIT_CPU, (limit, limit + 5))
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    set_mutant_under_test(name)
    code = pytest.main(["-p", "no:cacheprovider", "-q", "-x", "-p", "no:randomly", *tests])
    os._exit(int(code))


def _verdict(status: int) -> int:
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    sig = os.WTERMSIG(status)
    return TIMEOUT if sig in (signal.SIGXCPU, signal.SIGKILL) else -sig


class Meta:
    """One module's ``.py.meta``: mutmut's verdicts by mutant name, saved after each result."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = json.loads(path.read_text())

    @property
    def codes(self) -> dict[str, int | None]:
        return self.data["exit_code_by_key"]

    def record(self, name: str, code: int, seconds: float) -> None:
        self.codes[name] = code
        self.data.setdefault("durations_by_key", {})[name] = round(seconds, 2)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=4))
        tmp.replace(self.path)


def _todo(meta: Meta, retry_timeouts: bool) -> list[str]:
    return [k for k, v in meta.codes.items() if v is None or (retry_timeouts and v in (TIMEOUT, 24, 152))]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("modules", nargs="+")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--retry-timeouts", action="store_true")
    ap.add_argument("--with-tests", action="append", default=[], metavar="FILE")
    ap.add_argument("--screen", action="append", default=[], metavar="FILE")
    args = ap.parse_args(argv)
    root = Path("mutants").resolve()
    stats = json.loads((root / "mutmut-stats.json").read_text())
    by_fn: dict[str, list[str]] = stats["tests_by_mangled_function_name"]
    durations: dict[str, float] = stats["duration_by_test"]
    os.chdir(root)
    sys.path.insert(0, str(root))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    # bytecode caches on: a mutated module holds every mutant (faithfulness.py: 1.2 MB) and pytest rewrites each test
    # module; compiled afresh in every child they took 3.4 of a child's 6.4 s
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False
    import importlib

    import numpy  # noqa: F401  (imported once here, shared by every forked child)
    import pytest  # noqa: F401
    import torch

    torch.set_num_threads(1)
    import reportgen.build  # noqa: F401
    for path in sorted((root / "reportgen").rglob("*.py.meta")):  # every mutated module, compiled once
        importlib.import_module(".".join(path.relative_to(root).with_suffix("").with_suffix("").parts))
    for extra in ("captum.attr", "pytorch_grad_cam", "quantus", "scipy.stats", "sklearn.linear_model", "cv2"):
        try:
            __import__(extra)
        except ImportError:
            pass
    for module in args.modules:
        meta = Meta(root / "reportgen" / f"{module}.py.meta")
        todo = _todo(meta, args.retry_timeouts)
        left: list[str] = []
        print(f"{module}: {len(todo)} of {len(meta.codes)} mutants to run", flush=True)
        running: dict[int, tuple[str, float]] = {}
        t0, done = time.perf_counter(), 0
        while todo or running:
            while todo and len(running) < args.workers:
                name = todo.pop(0)
                tests = sorted(by_fn.get(name.partition("__mutmut_")[0], []), key=lambda t: durations.get(t, 1.0))
                if not tests and not args.with_tests and not args.screen:
                    meta.record(name, 33, 0.0)
                    continue
                if args.screen:
                    tests, limit = list(args.screen), FLOOR
                else:
                    limit = max(FLOOR, ceil((sum(durations.get(t, 1.0) for t in tests) + CONSTANT) * MULTIPLIER))
                    limit += EXTRA_S * len(args.with_tests)
                    tests += args.with_tests
                pid = os.fork()
                if pid == 0:
                    _child(name, tests, limit)
                running[pid] = (name, time.perf_counter())
            if not running:
                continue
            pid, status = os.wait()
            name, start = running.pop(pid)
            code = _verdict(status)
            if args.screen and code not in (1, TIMEOUT):
                left.append(name)  # not killed by the screen: the full selection decides
            else:
                meta.record(name, code, time.perf_counter() - start)
            done += 1
            if done % 25 == 0:
                rate = done / (time.perf_counter() - t0) * 60
                print(f"{module}: {done} run, {len(todo)} left, {rate:.1f}/min", flush=True)
        if args.screen:
            print(f"{module}: screened, {len(left)} left for the full selection: {' '.join(left)}", flush=True)
        else:
            (root / f"{module.replace('/', '.')}.done").touch()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
