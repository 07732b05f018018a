"""The failure sections' compute at scale (issue 30): slices and data_issues on N synthetic rows, memory-mapped as
the feature pass stores them (reportgen/features/rowstore.py): time and peak RSS, each in a fresh process.

    python benchmarks/bench_failures.py                    # 100,000 rows, 1280-D features (MobileNetV2's), 1000 classes
    python benchmarks/bench_failures.py --n 5000 --dim 256 # a quick look

Rows: penultimate features (float16, N x dim) from 100 Gaussian clusters; pixel vectors (float16, N x 3072, the
32 x 32 x 3 the feature pass keeps) from smooth random images; logits (float32, N x classes) of a model right on
~85% of rows, with a planted slice (one cluster wrong) and 1% of labels swapped; 20 planted near-duplicate pairs.
The matrices are written to .npy files first and opened with mmap_mode="r", as the cached pass serves them. The
child process reports its wall time per stage, VmHWM (peak resident memory, which counts the pages of the mapped
files it has read: the OS drops those under pressure) and, sampled every 50 ms, the peak of its anonymous memory
(RssAnon: what it allocates itself), which must not grow like N x dim.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, {root!r})
from reportgen.failures.slices import auto_clusters, find_slices, top_probability
from reportgen.failures.duplicates import near_pairs, exact_groups
from reportgen.failures.labelnoise import confident_learning
import threading
peak = {{"RssAnon": 0, "RssFile": 0}}
def watch():  # anonymous memory (what the process allocates) apart from mapped file pages the OS may drop
    while True:
        for ln in open("/proc/self/status"):
            k = ln.split(":")[0]
            if k in peak:
                peak[k] = max(peak[k], int(ln.split()[1]))
        time.sleep(0.05)
threading.Thread(target=watch, daemon=True).start()
d = {folder!r}
feat = np.load(d + "/feat.npy", mmap_mode="r"); pix = np.load(d + "/pix.npy", mmap_mode="r")
logits = np.load(d + "/logits.npy", mmap_mode="r"); labels = np.load(d + "/labels.npy")
planted = np.load(d + "/planted.npy"); dups = np.load(d + "/dups.npy")
out, t = {{}}, time.perf_counter()
def stage(name):
    global t
    now = time.perf_counter(); out[name] = round(now - t, 2); t = now
conf = top_probability(logits); preds = np.concatenate([np.asarray(logits[s:s + 8192]).argmax(1)
                                                        for s in range(0, len(labels), 8192)])
stage("top_probability_s")
res = find_slices(feat, conf, preds == labels, k=auto_clusters(len(labels), 5), seed=0)
stage("slices_s")
best = res.slices[0].members if res.slices else np.zeros(0, int)
out["slices"] = len(res.slices); out["planted_recall"] = round(len(np.intersect1d(best, planted)) / len(planted), 3)
li = confident_learning(logits, labels)
stage("confident_learning_s")
out["label_issues"] = int(len(li.images))
exact = exact_groups(pix, lambda i: str(i))  # hash of the row index: no image to decode here
stage("exact_candidates_s")
pairs = near_pairs(pix, feat, pixel_threshold=0.98, feature_threshold=0.8, k=5, seed=0)
stage("near_duplicates_s")
found = {{(p.a, p.b) for p in pairs}}
out["near_pairs"] = len(pairs); out["planted_pairs_found"] = sum((int(a), int(b)) in found for a, b in dups)
out["peak_rss_mb"] = int([ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0]) // 1024
out["peak_anon_mb"] = peak["RssAnon"] // 1024; out["peak_mapped_file_mb"] = peak["RssFile"] // 1024
out["load_avg_1min"] = open("/proc/loadavg").read().split()[0]
print(json.dumps(out))
"""


def make_rows(folder: Path, n: int, dim: int, classes: int, seed: int = 0) -> None:
    """Write the synthetic matrices block by block (the generator itself stays in bounded memory too)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4.0, (100, dim)).astype(np.float32)
    cl = rng.integers(0, 100, n)
    labels = (cl * classes // 100 + rng.integers(0, max(1, classes // 100), n)) % classes
    feat = np.lib.format.open_memmap(folder / "feat.npy", "w+", np.float16, (n, dim))
    pix = np.lib.format.open_memmap(folder / "pix.npy", "w+", np.float16, (n, 3072))
    logits = np.lib.format.open_memmap(folder / "logits.npy", "w+", np.float32, (n, classes))
    for s in range(0, n, 8192):
        m = min(8192, n - s)
        feat[s:s + m] = centres[cl[s:s + m]] + rng.normal(0, 1.0, (m, dim)).astype(np.float32)
        small = rng.random((m, 3, 4, 4), dtype=np.float32)
        pix[s:s + m] = np.repeat(np.repeat(small, 8, 2), 8, 3).reshape(m, -1) + rng.normal(0, 0.05, (m, 3072))
        z = rng.normal(0, 1, (m, classes)).astype(np.float32)
        right = (rng.random(m) < 0.85) & (cl[s:s + m] != 7)  # cluster 7: the planted slice, mostly wrong
        z[np.arange(m), np.where(right, labels[s:s + m], (labels[s:s + m] + 1) % classes)] += 6
        logits[s:s + m] = z
    swapped = rng.choice(n, n // 100, replace=False)
    labels[swapped] = (labels[swapped] + 3) % classes
    dups = np.stack([rng.choice(n // 2, 20, replace=False), n // 2 + rng.choice(n // 2, 20, replace=False)], 1)
    for a, b in dups:  # a slightly noisy copy of row a at row b
        pix[b] = pix[a].astype(np.float32) + rng.normal(0, 0.01, 3072).astype(np.float32)
        feat[b] = feat[a].astype(np.float32) + rng.normal(0, 0.1, dim).astype(np.float32)
    for arr in (feat, pix, logits):
        arr.flush()
    np.save(folder / "labels.npy", labels)
    np.save(folder / "planted.npy", np.flatnonzero(cl == 7))
    np.save(folder / "dups.npy", np.sort(dups, 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--box", type=float, default=1800, help="seconds before the child is killed")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        make_rows(Path(d), args.n, args.dim, args.classes)
        gen = time.perf_counter() - t
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        try:
            p = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), folder=d)], env=env,
                               capture_output=True, text=True, timeout=args.box, check=False)
        except subprocess.TimeoutExpired:
            print(json.dumps({"n": args.n, "timed_out_after_s": args.box}))
            return
        line = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
        res = json.loads(line[-1]) if line else {"error": p.stderr[-800:]}
        mb = sum(f.stat().st_size for f in Path(d).glob("*.npy")) / 2**20
        print(json.dumps({"n": args.n, "dim": args.dim, "classes": args.classes, "generate_s": round(gen, 1),
                          "rows_on_disk_mb": round(mb), **res}, indent=1))


if __name__ == "__main__":
    main()
