"""Benchmark: the batched faithfulness metrics vs Quantus on the same work, with the same numbers checked first.

Deletion (Quantus ``PixelFlipping``) and MuFidelity (``FaithfulnessCorrelation``) on the same model, images, maps,
baseline (0), step size and subsets; the script asserts that the curves and correlations agree, then times
Quantus, ours with the eager model and ours as the section runs it (the perturbed copies through
``device.inference_copy`` where that is the same and faster), best of ``--repeat``, interleaved, and prints the
ratios.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/bench_faithfulness.py                    # demo model
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/bench_faithfulness.py --model mobilenet  # ../shared
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/bench_faithfulness.py --road  # ROAD imputation per copy

Needs quantus (``pip install reportgen[bench]``). Timings depend on the machine and its load; compare ratios.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reportgen.attribution import faithfulness as FM  # noqa: E402

SHARED = ROOT.parent / "shared" / "models" / "mobilenet_v2_imagenet" / "build.py"


def load(name: str):
    """(model on pixels in [0, 1], input side, channels)."""
    if name == "demo":
        from reportgen import demo
        from reportgen.preprocess import PixelModel, Preprocessing

        pre = Preprocessing(resize=None, input_size=demo.INPUT_SIZE, mean=demo.MEAN, std=demo.STD, source="demo")
        return PixelModel(demo.build_model(), pre).eval(), demo.INPUT_SIZE, 3
    if name == "mobilenet":
        from reportgen.preprocess import PixelModel, Preprocessing

        spec = importlib.util.spec_from_file_location("mb", SHARED)
        mb = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mb)
        pre = Preprocessing(resize=None, input_size=224, mean=(0.5,) * 3, std=(0.5,) * 3, source="shared")
        return PixelModel(mb.build(), pre).eval(), 224, 3
    raise SystemExit(f"unknown --model {name!r}: demo or mobilenet")


def best(fn, repeat: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def road_timing() -> int:
    """Seconds per imputed copy (one sparse factorisation serves the three channels), 224 px, for a scattered
    mask (a random map) and a compact one (a Gaussian blob), at 20 / 50 / 80% of the pixels removed."""
    from reportgen.attribution._imputation import noisy_linear_imputation

    rng = np.random.default_rng(0)
    x = rng.random((3, 224, 224)).astype(np.float32)
    yy, xx = np.mgrid[:224, :224]
    maps = {"scattered (random map)": rng.random((224, 224)),
            "compact (Gaussian blob)": np.exp(-((yy - 100) ** 2 + (xx - 120) ** 2) / 3000.0)}
    for name, m in maps.items():
        row = []
        for f in (0.2, 0.5, 0.8):
            removed = m >= np.quantile(m, 1 - f)
            t = time.perf_counter()
            noisy_linear_imputation(x, removed, 0.01, np.random.default_rng(0))
            row.append(f"{f:.0%}: {time.perf_counter() - t:.3f} s")
        print(f"ROAD imputation, 224 px, {name}: " + ", ".join(row))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--steps", type=int, default=24, help="a multiple of 3 (see --side)")
    ap.add_argument("--side", type=int, default=0, help="input side (0: 24 for demo, 192 for mobilenet): Quantus needs "
                    "3 x pixels-per-step to divide the pixel count, which 28 and 224 px RGB images never allow")
    ap.add_argument("--runs", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64, help="perturbed copies per forward pass (ours)")
    ap.add_argument("--road", action="store_true", help="only time ROAD's noisy linear imputation per 224 px copy")
    a = ap.parse_args(argv)
    if a.road:
        return road_timing()
    import quantus

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    model, side, c = load(a.model)
    side = a.side or (24 if a.model == "demo" else 192)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(a.images, c, side, side, generator=g)
    maps = torch.rand(a.images, side, side, generator=g)
    with torch.inference_mode():
        y = model(x).argmax(1)
    xn, yn, an = x.numpy(), y.numpy(), maps[:, None].numpy()
    n_val = c * side * side
    if n_val % a.steps or (side * side) % (n_val // a.steps):
        raise SystemExit("--steps must divide the pixel count (Quantus needs whole steps)")
    pf = quantus.PixelFlipping(features_in_step=n_val // a.steps, perturb_baseline=0.0, normalise=False, abs=False,
                               disable_warnings=True)
    size = max(1, n_val // 20)
    fc = quantus.FaithfulnessCorrelation(nr_runs=a.runs, subset_size=size, perturb_baseline=0.0, normalise=False,
                                         abs=False, return_aggregate=False, disable_warnings=True)
    np.random.seed(1)
    subsets = torch.from_numpy(np.stack([np.stack([np.random.choice(n_val, size, replace=False)
                                                   for _ in range(a.images)]) for _ in range(a.runs)], 1))

    from reportgen.device import inference_copy

    frozen, why = inference_copy(model, x)
    fast = frozen if frozen is not None else model
    print(f"ours runs the perturbed copies through: {getattr(frozen, 'source', 'the eager model (' + why + ')')}")

    def q_pf():
        return np.asarray(pf(model=model, x_batch=xn, y_batch=yn, a_batch=an, device="cpu", softmax=True))

    def o_pf():
        return FM.deletion_curve(fast, x, y, maps, steps=a.steps, fill=0.0, batch=a.batch).scores[:, 1:]

    def q_fc():
        np.random.seed(1)
        return np.asarray(fc(model=model, x_batch=xn, y_batch=yn, a_batch=an, device="cpu", softmax=True))

    def e_pf():
        return FM.deletion_curve(model, x, y, maps, steps=a.steps, fill=0.0, batch=a.batch).scores[:, 1:]

    def e_fc():
        return FM.faithfulness_correlation(model, x, y, maps, size, baseline=0.0, unit="value", subsets=subsets,
                                           batch=a.batch).corr

    def o_fc():
        return FM.faithfulness_correlation(fast, x, y, maps, size, baseline=0.0, unit="value", subsets=subsets,
                                           batch=a.batch).corr

    print(f"model {a.model}, {a.images} images of {side} px, {a.steps} deletion steps, {a.runs} MuFidelity subsets "
          f"of {size} values, our batch {a.batch}, 1 thread, best of {a.repeat}")
    ok = True
    for name, q, e, o in (("deletion / pixel flipping", q_pf, e_pf, o_pf),
                          ("MuFidelity / faithfulness correlation", q_fc, e_fc, o_fc)):
        tq, te, to = [], [], []
        for _ in range(a.repeat):  # interleaved, best of each
            tq.append(best(q, 1)[0])
            te.append(best(e, 1)[0])
            to.append(best(o, 1)[0])
        rq, re_, ro = q(), e(), o()
        diff = max(float(np.abs(np.asarray(rq) - np.asarray(r)).max()) for r in (re_, ro))
        ok &= diff < 1e-4
        print(f"{name}: Quantus {min(tq):.4f} s, ours eager {min(te):.4f} s ({min(tq) / min(te):.2f}x), ours "
              f"{min(to):.4f} s ({min(tq) / min(to):.2f}x), max |difference| {diff:.1e}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
