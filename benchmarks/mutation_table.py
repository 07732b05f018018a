"""Per-module table of a mutmut 3 run (docs/mutation.md), read from ``mutants/**/*.py.meta``.

Run from the repository root after ``mutmut run``: ``python benchmarks/mutation_table.py [MODULE ...]``
(module paths such as ``reportgen/attribution/cam.py``; default: every mutated module). Columns: mutants,
killed (a test failed), timeout (counted apart: on a loaded machine a slow mutant can time out, so each is
re-checked by hand), survived, no tests (no selected test reaches the function), not checked.
Survivor names are listed under the table, so each can be killed or named equivalent in docs/mutation.md.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 37}
TIMEOUT = {24, -24, 36, 152, 255}
SURVIVED = {0}
NO_TESTS = {5, 33}


def module_counts(meta: Path) -> tuple[Counter, list[str]]:
    codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
    c: Counter = Counter()
    survivors = []
    for name, code in codes.items():
        kind = ("not checked" if code is None else "killed" if code in KILLED else "survived" if code in SURVIVED
                else "timeout" if code in TIMEOUT else "no tests" if code in NO_TESTS else f"other({code})")
        c[kind] += 1
        c["mutants"] += 1
        if kind in ("survived", "no tests", "timeout"):
            survivors.append(f"{name} ({kind})")
    return c, survivors


def main(argv: list[str]) -> int:
    root = Path("mutants")
    metas = sorted(root.glob("reportgen/**/*.py.meta"))
    if argv:
        metas = [root / f"{m}.meta" for m in argv]
    cols = ["mutants", "killed", "timeout", "survived", "no tests", "not checked"]
    print("| module | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    listed = []
    for meta in metas:
        c, surv = module_counts(meta)
        if not c["mutants"]:
            continue
        name = str(meta.relative_to(root))[:-len(".meta")]
        print(f"| `{name}` | " + " | ".join(str(c[k]) for k in cols) + " |")
        listed += surv
    for s in listed:
        print("-", s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
