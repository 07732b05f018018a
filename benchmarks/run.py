"""reportgen benchmarks: one command, one report (issue 11).

    python benchmarks/run.py                 # standard workloads (random-init torchvision models at 224)
    python benchmarks/run.py --quick         # smoke test on a tiny model (what the test suite runs)
    python benchmarks/run.py --e2e 250,1000,5000 --threads 2

Prints: this machine's fp32 matmul ceiling; per technique and workload the images/s (positions/s for
occlusion), achieved GFLOP/s (torch.utils.flop_counter) as a fraction of that ceiling, and the ratios
against (a) a naive loop and (b) Captum / pytorch-grad-cam where they implement the same method, after
checking that the maps are equal; for occlusion also the FLOP-count limit of the incremental method;
then end-to-end `standard` builds of the demo model on N generated images (time, peak RSS, report size).

Baseline and candidate run interleaved in one process (candidate, baseline, candidate; best candidate
time), so the ratios hold on a loaded machine even when absolute times do not. Captum and
pytorch-grad-cam are a `bench` extra (pip install -e .[bench]); without them those columns are skipped.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reportgen import optvis  # noqa: E402
from reportgen.device import fast_layout  # noqa: E402
from reportgen.inspection.folding import fold_batchnorm  # noqa: E402
from reportgen.attribution.relu_rules import gradient_rule  # noqa: E402
from reportgen.inspection.hooks import eval_mode, frozen_params  # noqa: E402
from reportgen.attribution.incremental import IncrementalOccluder, occlusion_logits  # noqa: E402
from reportgen.device import cpu_batch_size  # noqa: E402
from reportgen.techniques.occlusion import window_positions  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def interleaved(candidate, baseline):
    """(best candidate time, baseline time, candidate output, baseline output): candidate, baseline, candidate."""
    t1, out = timed(candidate)
    tb, ref = timed(baseline)
    t2, _ = timed(candidate)
    return min(t1, t2), tb, out, ref


def flops_of(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def matmul_ceiling(n: int) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(timed(lambda: torch.mm(a, b))[0] for _ in range(30))  # best of many: the machine is shared
    return 2 * n ** 3 / best / 1e9


def optional(name: str):
    try:
        return __import__(name)
    except Exception:  # noqa: BLE001 - an optional benchmark dependency
        return None


class Tiny(nn.Module):
    """Quick mode's model: VGG-like convs, a residual add, global pooling."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2))
        self.b = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x):
        y = self.a(x)
        return self.head(self.b(y) + y)


def make_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "tiny":
        return Tiny().eval()
    import torchvision

    return calibrate_bn(torchvision.models.get_model(name, weights=None))


def calibrate_bn(model: nn.Module) -> nn.Module:
    """Random-init BatchNorm statistics (mean 0, var 1) leave e.g. MobileNetV2's logits input-independent
    (~1e-10): set them to the statistics of 16 seeded random images, so the maps compared are not flat."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model.eval()
    for m in bns:
        m.momentum = None  # cumulative average
        m.reset_running_stats()
    g = torch.Generator().manual_seed(3)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(8, 3, 224, 224, generator=g))
    return model.eval()


# ---------------------------------------------------------------- occlusion
def bench_occlusion(name, size, window, stride, batch, ceiling, captum):
    model = make_model(name)
    g = torch.Generator().manual_seed(1)
    img = torch.rand(1, 3, size, size, generator=g)
    fill = torch.full((3,), 0.5)
    pos = window_positions(size, window, stride)
    ys = torch.tensor([y for y in pos for _ in pos])
    xs = torch.tensor([x for _ in pos for x in pos])
    P = len(ys)
    with torch.inference_mode():
        target = int(model(img).argmax())
    occ, why = IncrementalOccluder.build(model)
    if occ is None:
        print(f"  {name}: incremental occlusion unavailable ({why})")
        return

    def ours():
        with torch.inference_mode():
            return occlusion_logits(occ, img, ys, xs, fill, window, window, batch)[:, target]

    def naive():  # the plain batched loop: every occluded copy through the whole network (channels_last)
        out = []
        with torch.inference_mode():
            for s in range(0, P, batch):
                x = img.repeat(len(ys[s:s + batch]), 1, 1, 1)
                for b, (y, x0) in enumerate(zip(ys[s:s + batch].tolist(), xs[s:s + batch].tolist())):
                    x[b, :, y:y + window, x0:x0 + window] = 0.5
                x = x.contiguous(memory_format=torch.channels_last)
                out.append(model(x)[:, target])
        return torch.cat(out)

    ours()  # warm-up
    t_ours, t_naive, p, p_ref = interleaved(ours, naive)
    err = float((p - p_ref).abs().max())
    f_inc = flops_of(ours)
    with torch.inference_mode():
        f_full = flops_of(lambda: model(img)) * P
    gf = f_inc / t_ours / 1e9
    print(f"  {name:13s} {size}px window {window} stride {stride}: {P} positions, batch {batch}")
    print(f"    incremental      {t_ours:7.2f} s  {P / t_ours:7.1f} pos/s  {gf:6.1f} GFLOP/s "
          f"({gf / ceiling:5.1%} of ceiling)  [{f_inc / 1e9:.0f} GFLOP vs {f_full / 1e9:.0f} full]")
    print(f"    plain batched    {t_naive:7.2f} s  ratio {t_naive / t_ours:5.2f}x   "
          f"FLOP-count limit {f_full / f_inc:4.2f}x   max |d logit| {err:.1e} "
          f"(target logit spans {float(p_ref.min()):.4g}..{float(p_ref.max()):.4g})")
    assert err <= 1e-5 * max(1.0, float(p_ref.abs().max())), f"occlusion maps differ by {err}"
    if captum is None:
        print("    captum: not installed (pip install -e .[bench]), skipped")
        return
    from captum.attr import Occlusion

    def cap():
        with torch.no_grad():
            return Occlusion(model).attribute(img, sliding_window_shapes=(3, window, window),
                                              strides=(3, stride, stride), baselines=0.5, target=target,
                                              perturbations_per_eval=batch)

    t_ours2, t_cap, _, attr = interleaved(ours, cap)
    # Captum as a user calls it (model and input in the default memory format), on the target's logit (a
    # random-init network's softmax is nearly flat: logits make the equality check meaningful). Captum's map:
    # mean over the covering windows of f(x) - f(occluded); ours: the same from the position grid.
    with torch.inference_mode():
        base = float(model(img)[0, target])
    R = np.zeros((len(pos), size))
    for i, y0 in enumerate(pos):
        R[i, y0:y0 + window] = 1
    grid = p.reshape(len(pos), len(pos)).double().numpy()
    heat = (R.T @ grid @ R) / (R.T @ np.ones_like(grid) @ R)
    cerr = float(np.abs((base - heat) - attr[0, 0].double().numpy()).max())
    print(f"    captum Occlusion {t_cap:7.2f} s  ratio {t_cap / min(t_ours, t_ours2):5.2f}x   "
          f"FLOP-count limit {f_full / f_inc:4.2f}x   max |d map| {cerr:.1e}")
    assert cerr <= 1e-5 * max(1.0, float(p_ref.abs().max())), f"occlusion map differs from captum's by {cerr}"


# ---------------------------------------------------------------- gradients
def bench_gradients(name, size, n, batch, ceiling, captum, gradcam):
    model = make_model(name)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(n, 3, size, size, generator=g)
    with torch.no_grad():
        tgt = model(x).argmax(1)
    acts = {type(m).__name__ for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU,
                                                                    nn.GELU, nn.SiLU, nn.Hardswish))}
    same_rule = acts <= {"ReLU"}  # captum / grad-cam guided backprop only replace nn.ReLU
    folded, n_folded = fold_batchnorm(model)  # what saliency_maps uses (ctx.output_model)
    fwd = flops_of(lambda: folded(x))  # forward of what runs; a backward to the input costs about 2x more

    def grads(rule, xs, ts, layout=lambda t: t, m=model, bs=batch):  # what saliency_maps / guided_backprop do
        with eval_mode(m), frozen_params(m), torch.enable_grad(), gradient_rule(m, rule):
            out = []
            for s in range(0, len(xs), bs):
                xi = layout(xs[s:s + bs].clone()).requires_grad_(True)
                z = m(xi)
                (gr,) = torch.autograd.grad(z.gather(1, ts[s:s + bs, None]).sum(), xi)
                out.append(gr.contiguous())
        return torch.cat(out)

    def naive_loop():  # one image at a time, .backward() with weight gradients (what a plain script does)
        out = []
        for i in range(n):
            xi = x[i:i + 1].clone().requires_grad_(True)
            model.zero_grad(set_to_none=True)
            model(xi)[0, tgt[i]].backward()
            out.append(xi.grad.abs().amax(1))
        model.zero_grad(set_to_none=True)
        return torch.cat(out)

    own = cpu_batch_size(model, model, size, cap=batch)  # what saliency_maps picks on a CPU (device_batch_size)

    def ours():
        return grads("backprop", x, tgt, m=folded, bs=own).abs().amax(1)

    def ours_channels_last():
        return grads("backprop", x, tgt, layout=fast_layout, m=folded).abs().amax(1)

    ours()
    t_ours, t_naive, s, s_ref = interleaved(ours, naive_loop)
    t_cl, t_o2, s_cl, _ = interleaved(ours_channels_last, ours)
    rel = float((s - s_ref).abs().max() / s_ref.abs().max())
    gf = 2 * fwd / t_ours / 1e9  # backward to the input only (frozen weights): about one forward more
    print(f"  {name:13s} {size}px, {n} images; ours: batch {own} (cache-sized, what the technique picks on a CPU), "
          f"{n_folded} Conv->BatchNorm pairs folded (reportgen.inspection.folding); others: batch {batch}")
    print(f"    saliency (ours)  {t_ours:7.2f} s  {n / t_ours:7.1f} img/s  ~{gf:6.1f} GFLOP/s "
          f"({gf / ceiling:5.1%} of ceiling, forward + input-only backward ~2x forward FLOPs)")
    print(f"    naive loop       {t_naive:7.2f} s  ratio {t_naive / t_ours:5.2f}x   max rel diff {rel:.1e}")
    print(f"    channels_last    {t_cl:7.2f} s  ratio {t_o2 / t_cl:5.2f}x  max rel diff "
          f"{float((s_cl - s).abs().max() / s.abs().max()):.1e} (not used: its input gradients are not consistent "
          "across batch sizes on oneDNN)")
    if captum is not None:
        from captum.attr import GuidedBackprop, Saliency

        def cap_sal():
            return torch.cat([Saliency(model).attribute(x[s:s + batch], target=tgt[s:s + batch], abs=True).amax(1)
                              for s in range(0, n, batch)])

        t_o, t_c, _, s_c = interleaved(ours, cap_sal)
        cerr = float((s - s_c).abs().max() / s_c.abs().max())
        print(f"    captum Saliency  {t_c:7.2f} s  ratio {t_c / t_o:5.2f}x   max rel diff {cerr:.1e}")

        def cap_sal_own():  # Captum given our batch size too: what the folding alone gains
            return torch.cat([Saliency(model).attribute(x[s:s + own], target=tgt[s:s + own], abs=True).amax(1)
                              for s in range(0, n, own)])

        t_o, t_c, _, _ = interleaved(ours, cap_sal_own)
        print(f"    captum Saliency at batch {own}: {t_c:7.2f} s  ratio {t_c / t_o:5.2f}x")

        def gb():  # what guided_backprop does (ctx.output_model_with: folded where its layer survives)
            return grads("guided", x, tgt, m=folded, bs=own)

        def cap_gb():
            return torch.cat([GuidedBackprop(model).attribute(x[s:s + batch], target=tgt[s:s + batch])
                              for s in range(0, n, batch)])

        if not same_rule:
            print("    guided backprop: Captum and pytorch-grad-cam change nn.ReLU only, this model's activations "
                  f"are {', '.join(sorted(acts))}: not the same method, not compared")
            return
        gb()
        t_o, t_c, a, b = interleaved(gb, cap_gb)
        gerr = float((a - b).abs().max() / b.abs().max())
        print(f"    guided backprop  {t_o:7.2f} s  captum GuidedBackprop {t_c:7.2f} s  ratio {t_c / t_o:5.2f}x   "
              f"max rel diff {gerr:.1e}")
    else:
        print("    captum: not installed (pip install -e .[bench]), skipped")
    if gradcam is None or not same_rule:
        return
    from pytorch_grad_cam import GuidedBackpropReLUModel

    k = min(n, 4)

    def gc():
        gbm = GuidedBackpropReLUModel(model, device=torch.device("cpu"))
        return [gbm(x[i:i + 1], target_category=int(tgt[i])) for i in range(k)]

    t_c, ref = timed(gc)
    t_o, a = timed(lambda: grads("guided", x[:k], tgt[:k], m=folded))
    a = a.permute(0, 2, 3, 1).numpy()
    gerr = max(float(np.abs(a[i] - ref[i]).max() / np.abs(ref[i]).max()) for i in range(k))
    print(f"    pytorch-grad-cam GuidedBackpropReLUModel ({k} images, one at a time) {t_c:7.2f} s  "
          f"ratio {t_c / t_o:5.2f}x vs ours batched   max rel diff {gerr:.1e}")


def bench_class_vis(name, size, classes, steps):
    """Class visualisation: optvis.render on the folded model vs the plain loop a script would write (Adam on
    the pixels, the model as loaded: parameters requiring gradients, BatchNorm unfolded)."""
    model = make_model(name)
    folded, _ = fold_batchnorm(model)
    t = torch.tensor(classes)
    init = torch.rand(len(classes), 3, size, size, generator=torch.Generator().manual_seed(3)) * 0.2 + 0.4

    def ours():
        res = optvis.render(folded, optvis.objectives.class_logit(t), optvis.pixel_image(init=init.clone()),
                            optimizer="adam", steps=steps, lr=0.05, evaluate_final=True)
        return res.final_logits.gather(1, t[:, None])[:, 0]

    def plain():
        xi = init.clone().requires_grad_(True)
        opt = torch.optim.Adam([xi], lr=0.05)
        for _ in range(steps):
            opt.zero_grad()
            (-model(xi.clamp(0, 1)).gather(1, t[:, None]).sum()).backward()
            opt.step()
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            return model(xi.clamp(0, 1)).gather(1, t[:, None])[:, 0]

    for p in model.parameters():
        p.requires_grad_(True)
    t_o, t_p, a, b = interleaved(ours, plain)
    print(f"  {name:13s} {size}px, {len(classes)} classes x {steps} Adam steps: ours {t_o:6.2f} s, plain loop "
          f"{t_p:6.2f} s, ratio {t_p / t_o:5.2f}x   final class logits ours {a.mean():.2f} vs plain {b.mean():.2f}")


# ---------------------------------------------------------------- threads
def bench_threads(name, size, n):
    """Forward throughput with 1..all CPUs as torch threads, interleaved (1, k, 1, k...)."""
    from reportgen.device import available_cpus, free_cpus

    model = make_model(name)
    x = torch.rand(n, 3, size, size)
    before = torch.get_num_threads()
    counts = sorted({1, available_cpus()})
    best = {k: float("inf") for k in counts}
    try:
        with torch.inference_mode():
            model(x[:1])
            for _ in range(2):
                for k in counts:
                    torch.set_num_threads(k)
                    best[k] = min(best[k], timed(lambda: model(x))[0])
    finally:
        torch.set_num_threads(before)
    print(f"  {name} {size}px forward of {n} images; the automatic --threads choice now: {free_cpus()} "
          f"(load average {os.getloadavg()[0]:.1f})")
    for k in counts:
        print(f"    {k} thread(s): {n / best[k]:7.1f} img/s   ({best[1] / best[k]:4.2f}x of 1 thread)")


# ---------------------------------------------------------------- end to end
def write_images(root: Path, n: int, size: int = 28) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    classes = [f"class_{k}" for k in range(10)]
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a = (rng.random((size, size)) * 80).astype(np.uint8)
        y, x = rng.integers(0, size - 10, 2)
        a[y:y + 10, x:x + 10] = 200 + (i % 10) * 5
        Image.fromarray(a).convert("RGB").save(root / classes[i % 10] / f"img_{i:06d}.png")


def bench_build(sizes, threads, preset="standard"):
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="reportgen-bench-") as tmp:
            images, out = Path(tmp) / "images", Path(tmp) / "out"
            write_images(images, n)
            cmd = [sys.executable, "-c", "import sys, runpy; sys.argv = sys.argv[1:]; "
                   "sys.argv[0] = 'reportgen';\ntry:\n    runpy.run_module('reportgen', run_name='__main__')\n"
                   "finally:\n    print('PEAK_RSS_KB', [ln.split()[1] for ln in open('/proc/self/status') "
                   "if ln.startswith('VmHWM')][0], file=sys.stderr)",
                   "reportgen", "build", "--model", "demo", "--images", str(images), "--out", str(out),
                   "--preset", preset, "--no-cache", "--threads", str(threads)]
            env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
            t, proc = timed(lambda cmd=cmd, env=env: subprocess.run(cmd, env=env, capture_output=True, text=True))
            peak = [ln for ln in proc.stderr.splitlines() if ln.startswith("PEAK_RSS_KB")]
            rss = int(peak[-1].split()[1]) / 1024 if peak else float("nan")
            size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file() and ".cache" not in f.parts) \
                if out.exists() else 0
            status = "ok" if proc.returncode == 0 else f"FAILED rc={proc.returncode}: {proc.stderr[-300:]}"
            print(f"  N={n:6d}  {preset} build {t:7.1f} s  ({n / t:6.1f} img/s)  peak RSS {rss:7.0f} MiB  "
                  f"report {size / 2**20:6.1f} MiB  {status}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny model, tiny sizes, no timing claims")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared 2-core machine)")
    ap.add_argument("--e2e", default="250,1000", help="image counts for the end-to-end builds ('' = none)")
    ap.add_argument("--only", default="ceiling,occlusion,gradients,classvis,threads,e2e",
                    help="comma-separated sections")
    ap.add_argument("--batch", type=int, default=16, help="occluded copies / images per pass")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", module="captum")
    torch.set_num_threads(args.threads)
    only = set(args.only.split(","))
    captum, gradcam = optional("captum"), optional("pytorch_grad_cam")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"reportgen benchmarks: torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{os.cpu_count()} CPUs, load average {load:.1f} at start"
          f"{'  [--quick: smoke test, numbers mean nothing]' if args.quick else ''}")
    n_mm = 256 if args.quick else 1024
    ceiling = matmul_ceiling(n_mm)
    if "ceiling" in only:
        print(f"fp32 matmul ceiling ({torch.get_num_threads()} thread(s), {n_mm}x{n_mm}): {ceiling:.1f} GFLOP/s "
              "(re-measured before each workload; fractions use the best so far)")
    if "occlusion" in only:
        print("occlusion (exact incremental inference vs full forwards)")
        work = [("tiny", 32, 8, 4)] if args.quick else [("vgg16", 224, 32, 16), ("resnet18", 224, 32, 16),
                                                        ("mobilenet_v2", 224, 32, 16)]
        for name, size, w, s in work:
            ceiling = max(ceiling, matmul_ceiling(n_mm))  # the best seen: the load changes during the run
            bench_occlusion(name, size, w, s, args.batch, ceiling, captum)
    if "gradients" in only:
        print("saliency and guided backprop (gradient of the class score w.r.t. the input)")
        work = [("tiny", 32, 4)] if args.quick else [("resnet18", 224, 32), ("mobilenet_v2", 224, 32)]
        for name, size, n in work:
            ceiling = max(ceiling, matmul_ceiling(n_mm))
            bench_gradients(name, size, n, args.batch, ceiling, captum, gradcam)
    if "classvis" in only:
        print("class visualisation (gradient ascent on the input)")
        work = [("tiny", 32, [0, 1], 5)] if args.quick else [("resnet18", 224, [1, 207, 530, 950], 20),
                                                              ("mobilenet_v2", 224, [1, 207, 530, 950], 20)]
        for name, size, cls, steps in work:
            bench_class_vis(name, size, cls, steps)
    print(f"fp32 matmul ceiling, best seen: {ceiling:.1f} GFLOP/s")
    if "threads" in only:
        print("threads (torch intra-op threads; reportgen build --threads N, default: the CPUs not busy)")
        bench_threads(*(("tiny", 32, 8) if args.quick else ("resnet18", 224, 16)))
    if "e2e" in only and args.e2e:
        sizes = [20] if args.quick else [int(v) for v in args.e2e.split(",") if v]
        print(f"end-to-end: `reportgen build --model demo --preset {'minimal' if args.quick else 'standard'}` "
              "on generated 28-px images")
        bench_build(sizes, args.threads, "minimal" if args.quick else "standard")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
