"""The dataset stages under torch.distributed (gloo, 2 CPU processes) give the same report.json results."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reportgen.demo import images_dir

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = "card,neighbors,embedding,patches"

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "reportgen", "build", "--model", "demo", "--images", str(images_dir()),
            "--out", str(out), "--preset", "minimal", "--only", SECTIONS, "--max-images", "60",
            "--batch-size", "8", "--threads", "1"]


def _env(tmp: Path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                           "MASTER_PORT", "TORCHELASTIC_RUN_ID")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MPLBACKEND="Agg", XDG_CACHE_HOME=str(tmp), **extra)
    return env


def _results(out: Path) -> dict:
    data = json.loads((out / "report.json").read_text())
    assert not [s["id"] for s in data["sections"] if s["error"]]
    return {s["id"]: s["results"] for s in data["sections"]}


def test_two_gloo_ranks_give_the_same_results_as_one_process(tmp_path):
    one = tmp_path / "one"
    p = subprocess.run(_cmd(one), env=_env(tmp_path / "c1"), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr

    two = tmp_path / "two"
    port = str(_free_port())
    procs = [subprocess.Popen(_cmd(two), env=_env(tmp_path / "c2", RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2",
                                                  MASTER_ADDR="127.0.0.1", MASTER_PORT=port),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    outs = [pr.communicate(timeout=600) for pr in procs]
    assert [pr.returncode for pr in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert "Distributed: 2 processes" in outs[0][1]
    assert outs[1][0] == ""  # rank 1 only scanned its shard: rank 0 wrote the report
    assert _results(two) == _results(one)
