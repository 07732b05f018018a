#!/usr/bin/env python3
"""The two quick-start commands, each doing its own set-up (only Python >= 3.10 needed).

    python3 dev.py demo [--out DIR] [reportgen demo options]   # build the demo report, offline
    python3 dev.py test [pytest options]                       # run the test suite
    python3 dev.py check                                       # ruff, then mypy (configured in pyproject.toml)

Both create ``.venv`` beside this file on first use and install reportgen (editable) with its
test dependencies (the ``test``, ``crosscheck`` and ``lint`` extras) into it; later runs reinstall only when
``pyproject.toml`` changed. ``test`` sets ``REPORTGEN_REQUIRE_CROSSCHECK=1``: a cross-check whose reference
library is missing fails instead of skipping.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".reportgen-installed"
# test: pytest; crosscheck: Captum, pytorch-grad-cam, Quantus, so the cross-checks run instead of skipping;
# timm, hf: so the timm and Hugging Face model tests run too; mlflow: the export test (mlflow-skinny, ~10 s)
EXTRAS = "test,crosscheck,lint,timm,hf,mlflow"


def _say(msg: str) -> None:
    print(f"[dev.py] {msg}", file=sys.stderr, flush=True)


def ensure_env() -> None:
    if sys.version_info < (3, 10):
        sys.exit(f"reportgen needs Python >= 3.10 (this is {sys.version.split()[0]})")
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if PY.exists() and STAMP.exists() and STAMP.read_text().strip() == want:
        return
    if not PY.exists():
        _say(f"creating virtual environment {VENV}")
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
    _say("installing reportgen and its dependencies into .venv (first run only; torch is large)")
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    cmd = [str(PY), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[{EXTRAS}]"]
    r = subprocess.run(cmd, cwd=ROOT, env=env)
    if r.returncode != 0:
        sys.exit(f"[dev.py] installation failed (exit {r.returncode}): {' '.join(cmd)}")
    STAMP.write_text(want)


def check(env: dict) -> int:
    """The lint and the type checker, both configured in pyproject.toml ([tool.ruff], [tool.mypy])."""
    for tool in (["ruff", "check", "."], ["mypy"]):
        _say("running " + " ".join(tool))
        r = subprocess.run([str(PY), "-m", *tool], cwd=ROOT, env=env).returncode
        if r != 0:
            _say(f"{tool[0]} failed (exit {r})")
            return r
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "setup", "check"):
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    ensure_env()
    env = dict(os.environ, MPLBACKEND="Agg")
    if cmd == "setup":
        return 0
    if cmd == "check":
        return check(env)
    if cmd == "demo":
        return subprocess.run([str(PY), "-m", "reportgen", "demo", *rest], cwd=ROOT, env=env).returncode
    env["REPORTGEN_REQUIRE_CROSSCHECK"] = "1"
    r = subprocess.run([str(PY), "-m", "pytest", "-q", *rest], cwd=ROOT, env=env).returncode
    if r == 5:
        print("[dev.py] pytest collected no tests: that is a failure", file=sys.stderr)
        return 1
    return r


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
