"""ViT-B/16 (issue 18): the shared pass against a plain batched loop, and occlusion time and peak RSS.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/vit_backbone.py [--images 8] [--tiny]

Random-init torchvision ``vit_b_16`` at 224 px (``--tiny``: a 2-block ViT at 32 px, a smoke run). Each measurement
runs in its own subprocess so its peak RSS (``ru_maxrss``) is its own:

* ``shared``: ``ctx.features([ctx.chosen_layer()])`` (the one batched pass: logits, penultimate features and the
  default layer's statistics, now the last encoder block in its 14x14 grid view) vs ``pixel_model(x)`` batch by
  batch under ``inference_mode``; the one-off probes (input sizes and layer layouts, the CPU micro-batch size, the
  layer's receptive field) are timed apart from the pass (``probe_s``, ``batch_probe_s``, ``field_s``, ``pass_s``);
* ``occlusion``: the occlusion section's maps for one image (window 32, stride 16, 169 positions) as the section
  runs them (``method`` recorded: full batched passes, because global attention leaves nothing to reuse) vs the
  plain loop of batched occluded forwards; and the exact incremental engine forced on, for comparison.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _model(tiny: bool):
    import torch
    from torchvision import models as tvm

    torch.manual_seed(0)
    if tiny:
        return tvm.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                                     mlp_dim=32, num_classes=1000).eval(), 32
    return tvm.vit_b_16(weights=None).eval(), 224


def _ctx(tiny: bool, n: int):
    import numpy as np
    from PIL import Image

    from reportgen.build import make_context
    from reportgen.config import make_config
    from reportgen.preprocess import Preprocessing

    model, size = _model(tiny)
    folder = Path(tempfile.mkdtemp()) / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    cfg = make_config("minimal", general={"batch_size": 8})
    pre = Preprocessing(resize=None, input_size=size)
    return make_context(model, folder, pre=pre, config=cfg, device="cpu", class_names=[str(i) for i in range(1000)])


def _measure(what: str, tiny: bool, n: int) -> dict:
    import torch

    torch.set_num_threads(1)
    ctx = _ctx(tiny, n)
    t = time.perf_counter()
    out: dict = {}
    if what == "shared":
        from reportgen.device import device_batch_size
        from reportgen.features.records import field_or_none

        t0 = time.perf_counter()  # the one-off probes every run makes once, timed apart from the pass
        layer = ctx.chosen_layer()
        out["probe_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        out["micro_batch"] = device_batch_size(ctx, cap=ctx.batch_size)
        out["batch_probe_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        field_or_none(ctx, layer)
        out["field_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        feats = ctx.features([layer])
        out["pass_s"] = round(time.perf_counter() - t0, 2)
        out["layer"] = layer
        out["layers"] = list(feats.layers)
    elif what == "plain":
        with torch.inference_mode():
            for s in range(0, len(ctx.images), ctx.batch_size):
                ctx.pixel_model(ctx.images.batch(list(range(s, min(len(ctx.images), s + ctx.batch_size)))))
    elif what in ("occlusion", "occlusion_incremental"):
        from reportgen.techniques.occlusion import attention_reason, occlusion_maps

        window, stride = (32, 16) if not tiny else (8, 4)
        if what == "occlusion_incremental":  # the exact engine forced on (what the section used to do)
            from reportgen import attribution as A
            from reportgen.attribution.incremental import IncrementalOccluder

            occ, why = IncrementalOccluder.build(ctx.pixel_model)
            x = ctx.images.batch([0])
            A.occlusion_grid(ctx.pixel_model, x, [0], window, stride, 0.5, 32, occ is not None, occluder=occ)
            out["method"] = "incremental" if occ is not None else f"full ({why})"
        else:
            res = occlusion_maps(ctx, [0], window, stride, batch_size=16)
            out["method"] = res[0].method
            out["reason"] = attention_reason(ctx)
    elif what == "occlusion_plain":
        from reportgen.attribution import window_positions

        window, stride = (32, 16) if not tiny else (8, 4)
        x = ctx.images.batch([0])
        size = x.shape[-1]
        pos = [(y, xx) for y in window_positions(size, window, stride) for xx in window_positions(size, window, stride)]
        with torch.inference_mode():
            for s in range(0, len(pos), 16):
                chunk = pos[s:s + 16]
                xs = x.repeat(len(chunk), 1, 1, 1)
                for k, (y, xx) in enumerate(chunk):
                    xs[k, :, y:y + window, xx:xx + window] = 0.5
                ctx.pixel_model(xs)
        out["positions"] = len(pos)
    out["seconds"] = round(time.perf_counter() - t, 2)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_s"] = round(ru.ru_utime + ru.ru_stime, 2)  # the whole process, model construction included
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--only", default="plain,shared,occlusion_plain,occlusion,occlusion_incremental")
    ap.add_argument("--child", default=None)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(_measure(a.child, a.tiny, a.images)))
        return
    for what in a.only.split(","):
        cmd = [sys.executable, __file__, "--child", what, "--images", str(a.images)] + (["--tiny"] if a.tiny else [])
        r = subprocess.run(cmd, capture_output=True, text=True)
        line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr.strip().splitlines()[-1]
        print(f"{what}: {line}", flush=True)


if __name__ == "__main__":
    main()
