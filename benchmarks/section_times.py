"""Per-section wall and CPU time of a build of a random-init torchvision model on generated images (issue 28.4).

    PYTHONPATH=TREE OMP_NUM_THREADS=1 python benchmarks/section_times.py NAME N PRESET OUT.json [THREADS] [SECTIONS]

NAME: a torchvision model (``get_model(NAME, weights=None)`` after ``torch.manual_seed(0)``), N generated 224 px
images (as ``arch_sweep.py``), PRESET, THREADS torch threads (default 1; 0: the build's own choice), SECTIONS a
comma-separated subset. Each section's process CPU seconds (around ``run_technique``) are printed as it ends (with
the load average) and written to OUT.json with its wall time, the build's totals and the faithfulness rows. TREE may
be an older checkout (its ``run_technique`` is wrapped the same way).
"""
from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def main(argv: list[str]) -> None:
    name, n, preset, out = argv[0], int(argv[1]), argv[2], argv[3]
    threads = int(argv[4]) if len(argv) > 4 else 1
    only = argv[5].split(",") if len(argv) > 5 and argv[5] else None
    if threads:
        torch.set_num_threads(threads)
    from torchvision import models as tvm

    import reportgen.build as B

    torch.manual_seed(0)
    model, size = tvm.get_model(name, weights=None).eval(), 224
    imgs = Path(tempfile.mkdtemp()) / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(imgs / f"im{i}.png")
    real, cpu = B.run_technique, {}

    def measured(ctx, info, strict=False):
        t0 = time.process_time()
        try:
            return real(ctx, info, strict=strict)
        finally:
            cpu[info.id] = round(time.process_time() - t0, 1)
            load = open("/proc/loadavg").read().split()[0]
            print(f"{info.id:24s} cpu {cpu[info.id]:7.1f}  load {load}", flush=True)

    B.run_technique = measured
    t, c0 = time.perf_counter(), time.process_time()
    kw = dict(preset=preset, resize=None, input_size=size, device="cpu", max_images=n, use_cache=False)
    if only:
        kw["only"] = only
    if threads == 0:
        kw["threads"] = 0
    res = B.build_report(model, imgs, imgs.parent / "out", **kw)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    row = {"name": name, "images": n, "preset": preset, "threads": torch.get_num_threads(),
           "wall_s": round(time.perf_counter() - t, 1), "build_cpu_s": round(time.process_time() - c0, 1),
           "peak_rss_mb": round(ru.ru_maxrss / 1024), "sections": {}}
    for s in res.report.sections:
        r = s.results if isinstance(s.results, dict) else {}
        row["sections"][s.id] = {"wall_s": round(s.wall_time_s or 0, 1), "cpu_s": cpu.get(s.id),
                                 "error": (s.error or "")[:150] or None,
                                 "unsupported": str(r["unsupported"])[:100] if "unsupported" in r else None}
    fa = next((s for s in res.report.sections if s.id == "faithfulness"), None)
    if fa is not None and isinstance(fa.results, dict):
        row["faithfulness"] = {k: fa.results.get(k) for k in ("methods", "maps_reused", "per_image_score")}
    Path(out).write_text(json.dumps(row, indent=1))
    print("WALL", row["wall_s"], "CPU", row["build_cpu_s"])


if __name__ == "__main__":
    main(sys.argv[1:])
