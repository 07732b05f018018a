"""Time of the faithfulness section when it scores the maps the report already has, against recomputing them.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/bench_faith_reuse.py                    # demo model
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/bench_faith_reuse.py --model mobilenet  # ../shared, 10 photos
    ... --old /path/to/an/older/checkout     # also time that tree's faithfulness (the code before the map store)

Each mode runs in a fresh process, no cache, one thread, ``--preset`` (default standard) with the attribution
sections, sanity and faithfulness enabled:
* ``reuse``: the attribution sections and sanity run first (each timed), then faithfulness, which scores their maps;
* ``alone``: faithfulness alone in the same configuration: it computes every map and check itself;
* ``old`` (with ``--old``): the older tree's faithfulness alone in the same configuration.
The faithfulness results of ``reuse`` and ``alone`` must be equal (same maps, same scores: the script exits 1
otherwise). CPU seconds (process time) are printed beside wall time: the machine may be shared.
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
SHARED = ROOT.parent / "shared"
SECTIONS = ["saliency", "smoothgrad", "integrated_gradients", "gradcam", "guided_backprop", "occlusion", "attention",
            "sanity"]


def child(model_kind: str, preset: str, mode: str) -> None:
    import torch

    torch.set_num_threads(1)
    from reportgen import registry
    from reportgen.build import make_context, run_technique
    from reportgen.config import make_config
    from reportgen.preprocess import Preprocessing

    if model_kind == "demo":
        from reportgen import demo

        model, names, folder = demo.build_model(), demo.labels(), demo.images_dir()
        pre = Preprocessing(resize=None, input_size=demo.INPUT_SIZE, mean=demo.MEAN, std=demo.STD, source="demo")
    else:
        sys.path.insert(0, str(SHARED / "models" / "mobilenet_v2_imagenet"))
        import build as mb  # the shared model's factory

        model, names, folder = mb.build(), mb.labels(), SHARED / "images" / "photos"
        pre = Preprocessing(resize=256, input_size=224, mean=(0.5,) * 3, std=(0.5,) * 3, source="shared")
    cfg = make_config(preset, only=SECTIONS + ["faithfulness"])
    ctx = make_context(model, folder, class_names=names, pre=pre, config=cfg, device="cpu")
    ctx.features()
    times = {}
    for tid in (SECTIONS if mode == "reuse" else []) + ["faithfulness"]:
        t0, c0 = time.perf_counter(), time.process_time()
        sec = run_technique(ctx, registry.get(tid), strict=True)
        times[tid] = [round(time.perf_counter() - t0, 2), round(time.process_time() - c0, 2)]
    r = sec.results
    print("RESULT", json.dumps({"times": times, "methods": r["methods"], "images": r["images"],
                                "maps_reused": r.get("maps_reused")}))


def run(tree: Path, model: str, preset: str, mode: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", model, preset, mode],
                         env=env, capture_output=True, text=True, cwd=str(tree))
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def max_difference(a: dict, b: dict) -> float:
    """The largest absolute difference between the numbers of two runs' method rows (inf when they differ in
    anything else)."""
    rows_a, rows_b = ({m["method"]: m for m in r["methods"]} for r in (a, b))
    if set(rows_a) != set(rows_b):
        return float("inf")
    worst = 0.0
    for m, ra in rows_a.items():
        for k, v in ra.items():
            w = rows_b[m][k]
            if isinstance(v, (int, float)) and isinstance(w, (int, float)):
                worst = max(worst, abs(float(v) - float(w)))
            elif isinstance(v, list) and isinstance(w, list) and len(v) == len(w):
                worst = max([worst] + [abs(float(p) - float(q)) for p, q in zip(v, w)])
            elif v != w and k not in ("rank", "sanity"):
                return float("inf")
    return worst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["demo", "mobilenet"], default="demo")
    ap.add_argument("--preset", default="standard")
    ap.add_argument("--old", type=Path, help="an older checkout whose faithfulness section to time as well")
    ap.add_argument("--json", type=Path, help="write every mode's results here")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(*a.child)
        return
    if a.model == "mobilenet" and not (SHARED / "models" / "mobilenet_v2_imagenet").is_dir():
        print("../shared is absent: nothing to measure")
        return
    res = {"reuse": run(ROOT, a.model, a.preset, "reuse"), "alone": run(ROOT, a.model, a.preset, "alone")}
    if a.old:
        res["old"] = run(a.old, a.model, a.preset, "alone")
    print(f"{a.model}, preset {a.preset}, {len(res['reuse']['images'])} images scored; seconds wall / CPU")
    for tid, (w, c) in res["reuse"]["times"].items():
        print(f"  {tid:22s} {w:8.1f} / {c:8.1f}" + ("   (reuses the maps above)" if tid == "faithfulness" else ""))
    for mode in ("alone", "old"):
        if mode in res:
            w, c = res[mode]["times"]["faithfulness"]
            print(f"  faithfulness, {mode:6s}   {w:8.1f} / {c:8.1f}")
    print("  maps reused:", res["reuse"]["maps_reused"])
    same = res["reuse"]["methods"] == res["alone"]["methods"]
    print("  scores of reuse == alone:", same, f"(largest difference {max_difference(res['reuse'], res['alone']):.2g})")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    if "old" in res:
        old = {m["method"]: m["score"] for m in res["old"]["methods"]}
        new = {m["method"]: m["score"] for m in res["reuse"]["methods"]}
        print("  score (insertion - deletion), old -> new:",
              ", ".join(f"{m} {old[m]:.3f} -> {new.get(m, float('nan')):.3f}" for m in old))
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
