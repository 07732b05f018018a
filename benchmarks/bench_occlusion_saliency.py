"""Benchmark: batched occlusion and saliency vs a naive one-position / one-image-at-a-time loop.

Both implementations run in the same process on the same images; the script checks that they
give the same numbers, then prints the times and the speed-up ratios.

    python benchmarks/bench_occlusion_saliency.py                       # the embedded demo model
    python benchmarks/bench_occlusion_saliency.py --model resnet18 --images DIR --input-size 224
    python benchmarks/bench_occlusion_saliency.py --model path/build.py:build --images DIR \\
        --resize 256 --input-size 224 --mean 0.5 0.5 0.5 --std 0.5 0.5 0.5

``--model`` is ``demo``, a torchvision model name (random weights: nothing is downloaded) or
``file.py:factory``. Timings depend on the machine and its load; compare ratios from one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reportgen.build import make_context  # noqa: E402
from reportgen.config import make_config  # noqa: E402
from reportgen.device import device_batch_size  # noqa: E402
from reportgen.preprocess import Preprocessing  # noqa: E402
from reportgen.techniques._explain import resolve_window  # noqa: E402
from reportgen.techniques.occlusion import naive_occlusion, occlusion_maps  # noqa: E402
from reportgen.techniques._explain import saliency_maps  # noqa: E402


def load_model(spec: str):
    """(model, class names or None, default preprocessing or None) for a --model spec."""
    if spec == "demo":
        from reportgen import demo

        pre = Preprocessing(resize=None, input_size=demo.INPUT_SIZE, mean=demo.MEAN, std=demo.STD, source="demo")
        return demo.build_model(), demo.labels(), pre, demo.images_dir()
    if ":" in spec and spec.split(":", 1)[0].endswith(".py"):
        path, fn = spec.split(":", 1)
        s = importlib.util.spec_from_file_location(Path(path).stem, path)
        mod = importlib.util.module_from_spec(s)
        s.loader.exec_module(mod)
        model = getattr(mod, fn)()
        names = mod.labels() if hasattr(mod, "labels") else None
        return model, names, None, None
    import torchvision

    return torchvision.models.get_model(spec, weights=None).eval(), None, None, None


def timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--images", default=None, help="image folder (default: the demo images)")
    ap.add_argument("--n-images", type=int, default=4, help="images to occlude")
    ap.add_argument("--n-saliency", type=int, default=32, help="images to compute saliency maps of")
    ap.add_argument("--window", type=int, default=None, help="occlusion window in px (default: input/7)")
    ap.add_argument("--stride", type=int, default=None, help="occlusion stride in px (default: window/2)")
    ap.add_argument("--batch-size", type=int, default=0,
                    help="occluded copies per batch (0: what the technique picks, see device.device_batch_size)")
    ap.add_argument("--saliency-batch", type=int, default=0,
                    help="images per saliency backward pass (0: what the technique picks)")
    ap.add_argument("--resize", type=int, default=None)
    ap.add_argument("--input-size", type=int, default=None)
    ap.add_argument("--mean", type=float, nargs=3, default=None)
    ap.add_argument("--std", type=float, nargs=3, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--repeat", type=int, default=1, help="best of N timings")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model, names, pre, default_images = load_model(args.model)
    if pre is None or args.input_size or args.resize or args.mean or args.std:
        base = pre or Preprocessing()
        pre = Preprocessing(
            resize=args.resize if args.resize is not None else base.resize,
            input_size=args.input_size or base.input_size,
            mean=tuple(args.mean) if args.mean else base.mean,
            std=tuple(args.std) if args.std else base.std, source="benchmark")
    images = args.images or default_images
    if images is None:
        ap.error("--images is required for this model")
    cfg = make_config("standard", general={"max_images": max(args.n_images, args.n_saliency)})
    ctx = make_context(model, images, class_names=names, pre=pre, config=cfg, device="cpu")
    idx = list(range(min(args.n_images, len(ctx.images))))
    sidx = list(range(min(args.n_saliency, len(ctx.images))))
    size = pre.size
    window, stride = resolve_window(size, args.window, args.stride)
    fill = np.full(3, 0.5, dtype=np.float32)
    batch = args.batch_size or device_batch_size(ctx)
    sbatch = args.saliency_batch or device_batch_size(ctx, cap=ctx.batch_size)
    print(f"model {args.model}, images at {size}x{size}, torch threads {torch.get_num_threads()}, "
          f"cpu count {os.cpu_count()}")

    # warm-up (allocator, kernels) so neither side pays first-call costs
    occlusion_maps(ctx, idx[:1], window, max(stride, size // 2), batch, fill)
    saliency_maps(ctx, idx[:1], batch_size=1)

    # ---- occlusion
    t_batch, res = timed(lambda: occlusion_maps(ctx, idx, window, stride, batch, fill), args.repeat)
    t_naive, naive = timed(lambda: [naive_occlusion(ctx, r.index, r.target, window, stride, fill) for r in res],
                           args.repeat)
    err = max(float(np.abs(r.grid - g).max()) for r, g in zip(res, naive))
    assert err < 1e-4, f"occlusion: batched and naive differ by {err}"
    npos = res[0].grid.size
    print(f"occlusion  window {window}px stride {stride}px, {npos} positions x {len(idx)} images "
          f"= {npos * len(idx)} forwards")
    print(f"  batched (batch {batch}):          {t_batch:8.3f} s")
    print(f"  naive (1 position per forward): {t_naive:8.3f} s   ratio naive/batched = {t_naive / t_batch:.2f}x"
          f"   max |diff| = {err:.2e}")

    # ---- saliency
    t_sb, sb = timed(lambda: saliency_maps(ctx, sidx, batch_size=sbatch), args.repeat)
    t_sn, sn = timed(lambda: saliency_maps(ctx, sidx, batch_size=1), args.repeat)
    serr = max(float(np.abs(a.map - b.map).max() / max(1e-12, float(b.map.max()))) for a, b in zip(sb, sn))
    # float32 sums in another order (batched convolution kernels): agree to well under 1% of the map's max
    assert serr < 1e-2, f"saliency: batched and one-at-a-time differ by {serr} (relative)"
    print(f"saliency   {len(sidx)} images")
    print(f"  batched ({sbatch} images per backward): {t_sb:8.3f} s")
    print(f"  naive (one image per backward):   {t_sn:8.3f} s   ratio naive/batched = {t_sn / t_sb:.2f}x"
          f"   max rel diff = {serr:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
