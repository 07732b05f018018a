"""Time and peak memory of the set-level sections (mistakes, shortcuts, concepts) against the image-set size.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/set_sections.py                      # demo model, 125/250/500
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/set_sections.py --model mobilenet    # ../shared MobileNetV2

``demo``: the shipped Fashion-MNIST model on N images made from its 300 shipped images (shifted copies, 10 class
folders, labels from the folders). ``mobilenet``: the shared MobileNetV2 on the first N of
``../shared/images/imagenet_dev`` (labels from the file names; one image per class, so shortcuts and concepts find
no class with enough images there and only mistakes is timed). Each (size, section) runs in a fresh process with no
cache: the shared feature pass first (timed apart), then the section. Options are set so that the work grows with
N (every class clustered / factorised, no per-class cap), which is the worst case for linearity. CPU seconds
(process time) are printed beside wall time because a shared machine's wall time is noisy. Peak RSS is the
process's VmHWM after the section, and after the feature pass alone (the section's own growth is the difference).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
OVERRIDES = {"shortcuts": {"max_classes": 10, "max_per_class": 100000, "min_images": 4},
             "concepts": {"max_classes": 10, "per_class": 100000, "examples": 2},
             "mistakes": {}}


def _hwm_kb() -> int:
    return int(next(ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM")))


def make_demo_images(root: Path, n: int) -> Path:
    import numpy as np
    from PIL import Image

    from reportgen import demo

    files = sorted(p for p in demo.images_dir().rglob("*.png"))
    for k in range(n):
        src = files[k % len(files)]
        a = np.asarray(Image.open(src).convert("L"))
        shift = k // len(files)
        a = np.roll(a, (shift, -shift), axis=(0, 1))
        d = root / src.parent.name
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(d / f"{k:05d}.png")
    return root


def child(model_kind: str, n: int, section: str, folder: str) -> None:
    import torch

    torch.set_num_threads(1)
    from reportgen import registry
    from reportgen.build import make_context, run_technique
    from reportgen.config import make_config
    from reportgen.preprocess import Preprocessing

    if model_kind == "demo":
        from reportgen import demo

        model, names = demo.build_model(), demo.labels()
        pre = Preprocessing(resize=None, input_size=28, mean=demo.MEAN, std=demo.STD, source="demo")
    else:
        sys.path.insert(0, str(SHARED / "models" / "mobilenet_v2_imagenet"))
        import build as mb  # the shared model's factory

        model, names = mb.build(), mb.labels()
        pre = Preprocessing(resize=256, input_size=224, mean=(0.5,) * 3, std=(0.5,) * 3, source="shared")
    cfg = make_config("standard", general={"max_images": n}, technique_overrides={section: OVERRIDES[section]})
    ctx = make_context(model, folder, class_names=names, pre=pre, config=cfg, device="cpu")
    t0 = time.perf_counter()
    ctx.features()
    t_feat = time.perf_counter() - t0
    hwm_feat = _hwm_kb()
    t0, c0 = time.perf_counter(), time.process_time()
    sec = run_technique(ctx, registry.get(section), strict=True)
    t_sec, c_sec = time.perf_counter() - t0, time.process_time() - c0
    print("RESULT", json.dumps({"images": len(ctx.images), "section": section, "features_s": round(t_feat, 2),
                                "section_s": round(t_sec, 2), "section_cpu_s": round(c_sec, 2),
                                "peak_rss_mb": round(_hwm_kb() / 1024, 1),
                                "peak_rss_after_features_mb": round(hwm_feat / 1024, 1),
                                "summary": _summary(sec)}))


def _summary(sec) -> str:
    r = sec.results
    if sec.id == "mistakes":
        return f"{r['mistakes']} mistakes, {len(r['pairs'])} pairs shown"
    if sec.id == "shortcuts":
        return (f"{len(r['classes'])} classes, {sum(c['clusters'] for c in r['classes'])} clusters, "
                f"{r['candidates']} candidates")
    return f"{len(r['classes'])} classes, {sum(c['crops'] for c in r['classes'])} crops"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["demo", "mobilenet"], default="demo")
    ap.add_argument("--sizes", default="125,250,500")
    ap.add_argument("--sections", default="mistakes,shortcuts,concepts")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], int(a.child[1]), a.child[2], a.child[3])
        return
    sizes = [int(s) for s in a.sizes.split(",")]
    sections = a.sections.split(",") if a.model == "demo" else ["mistakes"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = (make_demo_images(Path(tmp), max(sizes)) if a.model == "demo"
                  else SHARED / "images" / "imagenet_dev")
        print("| images | section | feature pass s | section s (wall) | section CPU s | peak RSS MB | "
              "after feature pass MB | outcome |")
        print("|---|---|---|---|---|---|---|---|")
        for sec in sections:
            for n in sizes:
                out = subprocess.run([sys.executable, __file__, "--child", a.model, str(n), sec, str(folder)],
                                     check=False, capture_output=True, text=True, cwd=ROOT)
                line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
                if line is None:
                    print(f"| {n} | {sec} | failed: {out.stderr.strip().splitlines()[-1:]} |", flush=True)
                    continue
                r = json.loads(line[7:])
                print(f"| {r['images']} | {sec} | {r['features_s']} | {r['section_s']} | {r['section_cpu_s']} | "
                      f"{r['peak_rss_mb']} | "
                      f"{r['peak_rss_after_features_mb']} | {r['summary']} |", flush=True)


if __name__ == "__main__":
    main()
