"""A build under ``torchrun`` with 2 ranks against the same build in one process: time, and report.json equal.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/bench_ranks.py                     # demo, standard
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/bench_ranks.py --model mobilenet   # ../shared, 10 photos
    ... --only saliency,faithfulness --preset minimal --nproc 2

Each build runs in fresh processes (``python -m reportgen build`` and ``python -m torch.distributed.run
--standalone --nproc-per-node N -m reportgen build``, gloo on the CPU), no cache, ``--threads 1`` per process. Printed:
wall time of the command, CPU seconds of all its processes (children's rusage: the machine may be shared), each
section's time on rank 0, and whether every section's results are equal, timings aside (texture's, style transfer's
and fast style's seconds; ``faithfulness.perturbation_forward``: whether the frozen copy is used is decided by a
timing probe, device.inference_model). Exits 1 when they differ.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# results that are timings (texture, style transfer, fast style) or decided by one (faithfulness's forward)
TIMING = re.compile(r"seconds|_ms_|_s_per_|speed_ratio|perturbation_forward")
SHARED = ROOT.parent / "shared"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(cmd: list[str], log: Path) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                           "MASTER_PORT")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    c0, t0 = _cpu(), time.perf_counter()
    with open(log, "w") as f:
        p = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    if p.returncode not in (0, 1):  # 1: a section failed (reported below)
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}; see {log}")
    return wall, cpu


def _results(out: Path) -> tuple[dict, dict, dict]:
    data = json.loads((out / "report.json").read_text())
    res = {s["id"]: {k: v for k, v in s["results"].items() if not TIMING.search(k)} for s in data["sections"]}
    return res, {s["id"]: s["wall_time_s"] for s in data["sections"]}, {s["id"]: s["error"] for s in data["sections"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["demo", "mobilenet"], default="demo")
    ap.add_argument("--preset", default="standard")
    ap.add_argument("--only", default=None, help="comma-separated sections (default: the preset's)")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--max-images", type=int, default=None)
    a = ap.parse_args(argv)
    if a.model == "demo":
        from reportgen.demo import images_dir

        model = ["--model", "demo", "--images", str(images_dir())]
    else:
        folder = SHARED / "models" / "mobilenet_v2_imagenet"
        if not folder.is_dir():
            print("../shared is absent: nothing to measure")
            return 0
        model = ["--model", f"{folder / 'build.py'}:build", "--labels", str(folder / "labels.txt"), "--resize", "256",
                 "--input-size", "224", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5",
                 "--images", str(SHARED / "images" / "photos")]
    opts = ["--preset", a.preset, "--no-cache", "--threads", "1"] + (["--only", a.only] if a.only else []) + (
        ["--max-images", str(a.max_images)] if a.max_images else [])
    tmp = Path(tempfile.mkdtemp(prefix="bench-ranks-"))
    one, two = tmp / "one", tmp / "two"
    w1, c1 = _run([sys.executable, "-m", "reportgen", "build", *model, "--out", str(one), *opts], tmp / "one.log")
    w2, c2 = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(a.nproc),
                   "-m", "reportgen", "build", *model, "--out", str(two), *opts], tmp / "two.log")
    r1, t1, e1 = _results(one)
    r2, t2, e2 = _results(two)
    print(f"{a.model}, {a.preset}{', ' + a.only if a.only else ''}; logs and reports in {tmp}")
    print(f"{'':28} {'1 process':>12} {f'{a.nproc} ranks':>12}")
    print(f"{'command wall s':28} {w1:12.1f} {w2:12.1f}")
    print(f"{'CPU s, all processes':28} {c1:12.1f} {c2:12.1f}")
    for sid in t1:
        flag = "" if r1[sid] == r2.get(sid) else "   DIFFERENT"
        err = " (failed)" if e1[sid] or e2.get(sid) else ""
        print(f"  {sid:26} {t1[sid]:12.1f} {t2.get(sid, float('nan')):12.1f}{flag}{err}")
    split = [ln for ln in (tmp / "two.log").read_text().splitlines() if ln.startswith("Distributed:")]
    print("\n".join(split))
    same = r1 == r2
    print("report.json results equal" if same else "report.json results DIFFER")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
