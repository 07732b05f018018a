"""Every-point embedding for the explorer (issue 21): time and peak RSS of the layout at N generated points,
openTSNE (FFT) vs scikit-learn t-SNE on the same points, and the load time of the explorer data in Chromium.

    python benchmarks/bench_explorer.py                       # 10k and 100k, both methods (sklearn time-boxed)
    python benchmarks/bench_explorer.py --sizes 2000 --box 60 # a quick look
    python benchmarks/bench_explorer.py --load-only           # explorer data load time only
    python benchmarks/bench_explorer.py --pages-only          # image pages' bytes at 10,000 images, both kinds

Points: a mixture of 100 Gaussian clusters in 512-D (float16, as the feature store keeps them), centres at
distance ~4 sigma, seeded. Each (method, N) runs in a fresh process (so VmHWM is its own peak) with one thread,
the whole pipeline the section runs: centring, PCA to 2 and to 50, the neighbour search, t-SNE (750 iterations).
A run that exceeds ``--box`` seconds is killed and reported as such, with the extrapolation from the smaller size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, {root!r})
from reportgen.techniques._layout import layout
n, method = {n}, {method!r}
rng = np.random.default_rng(0)
centres = rng.normal(0, 4.0, (100, 512)).astype(np.float32)
x = (centres[rng.integers(0, 100, n)] + rng.normal(0, 1.0, (n, 512)).astype(np.float32)).astype(np.float16)
t = time.perf_counter()
c0 = time.process_time()
tm = {{}}
lay = layout(x, seed=0, method=method, threads=1, timings=tm)
dt = time.perf_counter() - t
cpu = time.process_time() - c0
hwm = [ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0]
print(json.dumps({{"n": n, "method": method, "points": int(len(lay.idx)), "seconds": dt, "cpu_seconds": cpu,
                  "peak_rss_mb": int(hwm) / 1024, "used": lay.method, "stages_s": tm,
                  "load_avg_1min": open('/proc/loadavg').read().split()[0]}}))
"""


def run_one(n: int, method: str, box: float) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), n=n, method=method)], check=False,
                             env=env,
                             capture_output=True, text=True, timeout=box)
    except subprocess.TimeoutExpired:
        return {"n": n, "method": method, "timed_out_after_s": box}
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not line:
        return {"n": n, "method": method, "error": out.stderr[-500:], "wall": time.perf_counter() - t}
    return json.loads(line[-1])


def load_time(n: int) -> dict:
    """Render a synthetic explorer of ``n`` points (its data, not the ``n`` image pages) and time, in headless
    Chromium from file://, the navigation start to the first complete draw of every point (best of 3 loads)."""
    import tempfile
    import time as _t

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "tests" / "render"))
    import reportgen.render.explorer as ex_mod
    from cdp import Browser, find_chromium
    from explorer_fixture import synthetic_report_dir

    ex_mod.image_pages = lambda *a, **k: []  # the benchmark times the explorer's data, not 100k page writes
    with tempfile.TemporaryDirectory() as d:
        out = synthetic_report_dir(Path(d), n)
        b = Browser(find_chromium())
        try:
            b.open_page()
            b.viewport(1280, 900)
            runs = []
            for _ in range(3):
                b.navigate((out / "explorer.html").as_uri())
                t = _t.monotonic()
                drawn = "window.__rgExplorer && window.__rgExplorer.drawn > 0"
                while not b.evaluate(drawn) and _t.monotonic() - t < 30:
                    _t.sleep(0.05)
                runs.append(b.evaluate("[window.__rgExplorer.loadMs, window.__rgExplorer.buildMs, "
                                       "window.__rgExplorer.drawn]"))
        finally:
            b.close()
        size = sum(p.stat().st_size for p in (out / "assets").glob("explorer-data-*"))
    best = min(runs, key=lambda r: r[0])
    return {"n": n, "load_ms": round(best[0]), "parse_build_draw_ms": round(best[1]), "drawn": best[2],
            "data_bytes": size, "runs_ms": [round(r[0]) for r in runs]}


def page_bytes(n: int) -> list[dict]:
    """Bytes the per-image pages add at ``n`` synthetic images (the pictures they link to not counted), written
    complete (the threshold raised above ``n``) and as the renderer chooses (compact above COMPACT_ABOVE)."""
    import gzip
    import shutil
    import tempfile

    sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "render"), str(ROOT / "tests")]
    import reportgen.render.explorer as ex_mod
    from explorer_fixture import synthetic_report_dir

    out, default = [], ex_mod.COMPACT_ABOVE
    for kind, above in (("complete", n), ("default", default)):
        ex_mod.COMPACT_ABOVE = above
        tmp = Path(tempfile.mkdtemp())
        try:
            t = time.perf_counter()
            d = synthetic_report_dir(tmp, n)
            wall = time.perf_counter() - t
            pages = [q.read_bytes() for q in (d / "images").glob("*.html")]
            data = [q.read_bytes() for q in (d / "assets").glob("pages-*.js")]
            raw = sum(map(len, pages)) + sum(map(len, data))
            gz = sum(len(gzip.compress(b, 6)) for b in pages + data)
            out.append({"n": n, "pages": kind if above >= n else "compact", "files": len(pages),
                        "mean_page_bytes": round(sum(map(len, pages)) / len(pages)),
                        "shared_data_bytes": sum(map(len, data)), "total_mb": round(raw / 1e6, 2),
                        "gzip_mb": round(gz / 1e6, 2), "render_s": round(wall, 1)})
        finally:
            ex_mod.COMPACT_ABOVE = default
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--methods", default="opentsne,sklearn")
    ap.add_argument("--box", type=float, default=600.0, help="seconds before a run is killed")
    ap.add_argument("--load-only", action="store_true")
    ap.add_argument("--load-n", type=int, default=100_000)
    ap.add_argument("--pages-only", action="store_true")
    ap.add_argument("--pages-n", type=int, default=10_000)
    a = ap.parse_args()
    if a.pages_only:
        for r in page_bytes(a.pages_n):
            print(json.dumps(r), flush=True)
        return
    if not a.load_only:
        for n in [int(s) for s in a.sizes.split(",")]:
            for m in a.methods.split(","):
                print(json.dumps(run_one(n, m, a.box)), flush=True)
    print(json.dumps(load_time(a.load_n)), flush=True)


if __name__ == "__main__":
    main()
