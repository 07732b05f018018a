"""Scaling of the dataset stages: time and peak memory of a build over N generated images (issue 11).

    python benchmarks/scale.py --n 10000                  # generate 10k small JPEGs, build, report
    python benchmarks/scale.py --n 100000 --dir /big/tmp  # the 100k check (keeps the images for reruns)
    python benchmarks/scale.py --n 200 --sizes 100,200    # what the test suite runs (tiny)

Generates ``N`` synthetic 48x48 JPEGs in 10 class folders (a bright square on noise; once per ``--dir``), then
runs ``reportgen build --model demo --preset standard --only card,neighbors,embedding,patches`` (the stages that
grow with N: the forward pass with per-layer top-k, memory-mapped features and pixel vectors, the blocked
neighbour search, t-SNE on its ``embedding.max_points`` subsample) in a fresh process for each size, cold (empty
cache) and then warm, with ``general.num_workers`` DataLoader worker processes decoding images. Prints wall time,
images/s and peak RSS (VmHWM) of the build process and of its largest worker.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = "card,neighbors,embedding,patches"
_PROBE = ("import resource, runpy, sys\nsys.argv = ['reportgen'] + sys.argv[1:]\n"
          "try:\n    runpy.run_module('reportgen', run_name='__main__')\nfinally:\n"
          "    hwm = [ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0]\n"
          "    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
          "    print('PEAK_RSS_KB', hwm, kids, file=sys.stderr)")


def _write(args) -> None:
    import numpy as np
    from PIL import Image

    root, start, stop, size = args
    rng = np.random.default_rng(start)
    for i in range(start, stop):
        a = (rng.random((size, size, 3)) * 90).astype(np.uint8)
        y, x = rng.integers(0, size - 16, 2)
        a[y:y + 16, x:x + 16] = (60 + 19 * (i % 10), 250 - 17 * (i % 10), 128)
        Image.fromarray(a).save(Path(root) / f"class_{i % 10}" / f"img_{i:06d}.jpg", quality=85)


def generate(root: Path, n: int, size: int = 48, procs: int = 2) -> float:
    """Write n JPEGs under root (skipped when they are already there); returns seconds spent."""
    done = root / f".done-{n}-{size}"
    if done.exists():
        return 0.0
    t = time.perf_counter()
    for k in range(10):
        (root / f"class_{k}").mkdir(parents=True, exist_ok=True)
    step = 2000
    jobs = [(str(root), s, min(n, s + step), size) for s in range(0, n, step)]
    if len(jobs) == 1:
        _write(jobs[0])
    else:
        with Pool(procs) as pool:
            pool.map(_write, jobs)
    done.touch()
    return time.perf_counter() - t


def build(images: Path, out: Path, cache: Path, n: int, workers: int, threads: int) -> tuple[float, float, float, str]:
    cfg = out.parent / f"scale-{workers}.toml"
    cfg.write_text(f"[general]\nnum_workers = {workers}\n")
    cmd = [sys.executable, "-c", _PROBE, "build", "--model", "demo", "--images", str(images), "--out", str(out),
           "--preset", "standard", "--only", SECTIONS, "--max-images", str(n), "--config", str(cfg),
           "--threads", str(threads), "--cache-dir", str(cache), "--cache-size", "0"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    t = time.perf_counter() - t
    peak = [ln.split() for ln in p.stderr.splitlines() if ln.startswith("PEAK_RSS_KB")]
    main_mb, kid_mb = (int(peak[-1][1]) / 1024, int(peak[-1][2]) / 1024) if peak else (float("nan"),) * 2
    status = "ok" if p.returncode == 0 else f"FAILED rc={p.returncode}: {p.stderr[-400:]}"
    return t, main_mb, kid_mb, status


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10000, help="images to generate (the largest size)")
    ap.add_argument("--sizes", default="", help="comma-separated N to build (default: 1000 and --n)")
    ap.add_argument("--dir", default="", help="where the generated images are kept (default: a temp folder)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (general.num_workers)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()] or sorted({min(1000, args.n), args.n})
    with tempfile.TemporaryDirectory(prefix="reportgen-scale-") as tmp:
        images = Path(args.dir) if args.dir else Path(tmp) / "images"
        t = generate(images, args.n)
        print(f"{args.n} synthetic 48x48 JPEGs under {images}" + (f" (generated in {t:.0f} s)" if t else ""))
        print(f"build --preset standard --only {SECTIONS} (demo model), {args.workers} decode workers, "
              f"{args.threads} torch thread(s):")
        ok = True
        for n in sizes:
            cache = Path(tmp) / f"cache-{n}"
            for state in ("cold", "warm"):
                t, main_mb, kid_mb, status = build(images, Path(tmp) / f"out-{n}", cache, n, args.workers,
                                                   args.threads)
                ok &= status == "ok"
                print(f"  N={n:7d} {state}: {t:7.1f} s ({n / t:7.1f} img/s)  peak RSS {main_mb:6.0f} MiB "
                      f"(largest child process {kid_mb:5.0f} MiB, shared pages counted)  {status}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
