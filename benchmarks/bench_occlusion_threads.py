"""Benchmark: the occlusion SECTION at the default thread count right after another CPU-heavy job, old vs new.

What a user waits for: ``run_technique(ctx, occlusion)`` on a fresh context (so the feature pass that gives the
fill colour, the image choice and the maps are all inside), ResNet-18 (torchvision, random init), 224 px, the
``standard`` options (4 images, window 32, stride 16). Each measurement starts right after a 20 s torch job on
all CPUs has finished, the way a build starts right after another one. The thread count is chosen by

- ``old``: CPUs minus the rounded 1-minute load average (reportgen before issue 17);
- ``new``: :func:`reportgen.device.idle_cpus` (CPU idle share over 150 ms from /proc/stat).

Captum's ``Occlusion`` is then timed at 2 threads on the same work (same images, targets, window, stride, fill,
perturbations per evaluation), as a user would call it on the model with softmax, and the ratios printed.

    PYTHONPATH=$PWD python benchmarks/bench_occlusion_threads.py --rounds 3

Timings depend on the machine and its load; compare the ratios within one round.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reportgen import registry  # noqa: E402
from reportgen.build import make_context, run_technique  # noqa: E402
from reportgen.config import make_config  # noqa: E402
from reportgen.device import available_cpus, idle_cpus  # noqa: E402
from reportgen.preprocess import Preprocessing  # noqa: E402
from reportgen.techniques._explain import predict_batch, show_indices  # noqa: E402
from reportgen.techniques._explain import resolve_window  # noqa: E402

HEAVY = ("import time, torch; torch.set_num_threads({n}); a = torch.randn(1024, 1024); t = time.time()\n"
         "while time.time() - t < {s}: a = torch.tanh(a @ a)")


def old_free_cpus() -> tuple[int, str]:
    n, load = available_cpus(), os.getloadavg()[0]
    return max(1, n - int(round(load))), f"{n} CPUs minus load average {load:.2f}"


def heavy_job(seconds: float) -> None:
    subprocess.run([sys.executable, "-c", HEAVY.format(n=available_cpus(), s=seconds)], check=True)


def context(model, images: Path):
    cfg = make_config("standard", only=["occlusion"])
    pre = Preprocessing(resize=None, input_size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    return make_context(model, images, class_names=[f"c{k}" for k in range(1000)], pre=pre, config=cfg,
                        device="cpu", cache=None)


def section_time(model, images: Path) -> tuple[float, dict]:
    ctx = context(model, images)
    t = time.perf_counter()
    sec = run_technique(ctx, registry.get("occlusion"), strict=True)
    return time.perf_counter() - t, sec.params


def captum_time(model, images: Path, params: dict) -> float:
    from captum.attr import Occlusion

    ctx = context(model, images)
    window, stride = resolve_window(ctx.pre.size, None, None)
    fill = torch.as_tensor(ctx.features().mean_rgb).view(1, 3, 1, 1)
    bt = predict_batch(ctx, show_indices(ctx, 4))
    prob = torch.nn.Sequential(ctx.pixel_model, torch.nn.Softmax(dim=1))
    t = time.perf_counter()
    with torch.no_grad():
        for k in range(len(bt.idx)):
            x = bt.x[k:k + 1].float()
            Occlusion(prob).attribute(x, sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
                                      baselines=fill.expand_as(x), target=int(bt.targets[k]),
                                      perturbations_per_eval=int(params["batch_size"]))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--heavy", type=float, default=20.0, help="seconds of the CPU-heavy job before each timing")
    ap.add_argument("--images", type=int, default=4)
    args = ap.parse_args()
    import torchvision
    from PIL import Image

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    tmp = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    for k in range(args.images):
        Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(tmp / f"img{k}.png")
    torch.set_num_threads(1)
    section_time(model, tmp)  # warm-up: imports, oneDNN primitives
    print(f"ResNet-18, 224 px, {args.images} images, occlusion section (standard); {available_cpus()} CPUs")
    for r in range(args.rounds):
        row = {}
        for policy, choose in (("old", old_free_cpus), ("new", idle_cpus)):
            heavy_job(args.heavy)
            n, why = choose()
            torch.set_num_threads(n)
            t, params = section_time(model, tmp)
            row[policy] = (n, why, t)
        torch.set_num_threads(2)
        t_cap = captum_time(model, tmp, params)
        print(f"round {r + 1} (load average now {os.getloadavg()[0]:.2f}): captum Occlusion at 2 threads "
              f"{t_cap:.2f} s, {params['positions_per_image']} positions/image, batch {params['batch_size']}")
        for policy, (n, why, t) in row.items():
            print(f"  {policy}: {n} thread(s) ({why}): section {t:.2f} s, {t_cap / t:.2f}x captum")


if __name__ == "__main__":
    main()
