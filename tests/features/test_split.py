"""The split protocol of reportgen/features/split.py on 2 gloo processes, without a model: shares, a failing share,
a rank whose work differs, an idle rank and a rank left behind by rank 0's next order; none may hang."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import json, sys
from types import SimpleNamespace
import torch
from reportgen.features import split as S

rank, store, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
ctx = SimpleNamespace(ranks=S.Ranks(rank, 2, active=True, log=lambda s: None), config={"from": rank})
seen, log = [], {}

def times10(keys):
    seen.append(list(keys))
    return [k * 10 for k in keys]

def fails_on_1(keys):
    if rank == 1 and keys:
        raise RuntimeError("out of memory on rank 1")
    return times10(keys)

def attempt(name, *a, **k):
    try:
        log[name] = S.split_rows(ctx, *a, **k)
    except S.Diverged as e:
        log[name] = "diverged: " + str(e)

attempt("shared", list(range(6)), times10)
log["seen"] = seen[:]
attempt("have", list(range(6)), times10, {0: 0, 5: 50})
attempt("small", [1, 2], times10)  # under 3 keys: every rank computes them, no message
n = len(seen)
attempt("odd", [1, 2, 3], times10)  # shares [1, 2] and [3]: the single key goes as two
log["seen_odd"] = seen[n:]
attempt("one_share_fails", list(range(4)), fails_on_1)
attempt("keys_differ", [1, 2, 3, 4] if rank == 0 else [9, 9, 9, 9], times10)
if rank == 0:
    attempt("other_idle", list(range(4)), times10)  # rank 1 has left its section: rank 0 computes all
    ctx.ranks.active = False
    with S.section(ctx, "saliency"):  # the next order, while rank 1 is still in its section
        pass
    S.end(ctx)
    log["stats"] = [ctx.ranks.calls, ctx.ranks.full, ctx.ranks.divided]
else:
    def run(sid):  # rank 0's order: this rank's section code meets rank 0's "stop" and leaves
        log["order"] = [sid, ctx.config]
        attempt("left_behind", [7, 8, 9], times10)

    ctx.ranks.active = False
    S.serve(ctx, run)  # answers rank 0's "other_idle" call as idle, runs the order, stops
torch.distributed.destroy_process_group()
json.dump(log, open(out, "w"))
'''


@pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                    reason="torch.distributed with gloo is not available")
def test_split_protocol_on_two_processes(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(tmp_path / "store"), str(tmp_path / f"{r}")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    r0, r1 = (json.loads((tmp_path / f"{r}").read_text()) for r in range(2))
    want = [k * 10 for k in range(6)]
    assert r0["shared"] == r1["shared"] == want  # every rank gets all, in order
    assert r0["seen"] == [[0, 1, 2]] and r1["seen"] == [[3, 4, 5]]  # each computed its contiguous share
    assert r0["have"] == r1["have"] == want
    assert r0["small"] == r1["small"] == [10, 20]
    assert r0["odd"] == r1["odd"] == [10, 20, 30]
    assert r0["seen_odd"] == [[1, 2]] and r1["seen_odd"] == [[3, 3]]
    assert r0["one_share_fails"] == [0, 10, 20, 30]  # rank 0 computed rank 1's failed share
    assert r1["one_share_fails"].startswith("diverged: rank 1 failed its share: RuntimeError: out of memory")
    assert r0["keys_differ"] == [10, 20, 30, 40] and r1["keys_differ"].startswith("diverged")
    assert r0["other_idle"] == [0, 10, 20, 30]
    assert r1["order"] == ["saliency", {"from": 0}]  # the section and rank 0's configuration
    assert r1["left_behind"] == "diverged: rank 0 left the section"
    assert r0["stats"] == [6, 4, 4]  # 6 calls with messages; rank 1 took part in 4 and had work in all 4
