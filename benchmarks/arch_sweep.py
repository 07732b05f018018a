"""Every torchvision (and timm) classification family through the minimal preset: section results, time, peak RSS.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/arch_sweep.py [--images 4] [--only vit_b_16,swin_t]
        [--out arch_sweep.json]
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/arch_sweep.py --source timm [--sections card,attention,...]
        [--timeout 900] [--cpu-timeout 150]

``--source timm``: every timm model module (family) whose smallest variant (fewest parameters, counted on the meta
device: nothing is allocated or downloaded) builds offline with random weights, at its pretrained config's input
size; ``--sections`` limits the sections (default: all).

The smallest variant of each family (the list of ``tests/test_architectures.py``), random init, 1,000 classes, at
its own input size (299 px for Inception v3, 224 px for the rest), on generated images (``--images`` of them;
``--folder`` uses an image folder instead). Each architecture runs in its own subprocess with one torch thread, so
its peak RSS (``ru_maxrss`` of that process) and CPU time are its own. Printed per architecture: sections ok /
unsupported / failed (with the reasons for the last two), the build's wall and CPU time and peak RSS; ``--out`` keeps
them as JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def families(source: str = "torchvision") -> list[str]:
    if source == "timm":
        return timm_families()
    from test_architectures import _smallest_variants

    return _smallest_variants()


def timm_families() -> list[str]:
    """``timm:NAME`` of the smallest variant of every timm model module, by parameter count on the meta device."""
    import torch
    import timm
    from timm.models import _registry

    by_module: dict[str, list[str]] = {}
    for n in timm.list_models():
        by_module.setdefault(_registry._model_to_module.get(n, "?"), []).append(n)
    out = []
    for mod, names in sorted(by_module.items()):
        best = None
        for n in names:
            try:
                with torch.device("meta"):
                    k = sum(p.numel() for p in timm.create_model(n, pretrained=False).parameters())
            except Exception:  # noqa: BLE001 - a variant that does not build offline is not a candidate
                continue
            if best is None or k < best[0]:
                best = (k, n)
        if best is not None:
            out.append(f"timm:{best[1]}")
        else:
            print(f"{mod}: no variant builds offline", flush=True)
    return out


def _make(name: str):
    """(model, input side) of a torchvision family name or a ``timm:NAME``, random init."""
    import torch
    from torchvision import models as tvm

    torch.manual_seed(0)
    if name.startswith("timm:"):
        import timm

        m = timm.create_model(name[5:], pretrained=False)
        return m.eval(), int(m.pretrained_cfg.get("input_size", (3, 224, 224))[-1])
    kw = {"init_weights": False} if name in ("inception_v3", "googlenet") else {}
    return tvm.get_model(name, weights=None, **kw), (299 if name == "inception_v3" else 224)


def _hwm_mb() -> int:
    """VmHWM (peak resident set since the last reset) of this process, MB; 0 where /proc is missing."""
    try:
        for ln in Path("/proc/self/status").read_text().splitlines():
            if ln.startswith("VmHWM:"):
                return int(ln.split()[1]) // 1024
    except OSError:
        pass
    return 0


def _one(name: str, n: int, folder: str | None, sections: list[str] | None = None) -> dict:
    import resource
    import tempfile

    import numpy as np
    import torch
    from PIL import Image

    from reportgen.build import build_report

    torch.set_num_threads(1)
    model, size = _make(name)
    tmp = Path(tempfile.mkdtemp())
    if folder is None:
        imgs = tmp / "imgs"
        imgs.mkdir()
        rng = np.random.default_rng(0)
        for i in range(n):
            Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(imgs / f"im{i}.png")
    else:
        imgs = Path(folder)
    import reportgen.build as B

    peaks: dict[str, int] = {}
    real = B.run_technique

    def measured(ctx, info, strict=False):  # per-section peak RSS: reset the high-water mark, read it after
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        try:
            return real(ctx, info, strict=strict)
        finally:
            peaks[info.id] = _hwm_mb()

    B.run_technique = measured
    t = time.perf_counter()
    res = build_report(model, imgs, tmp / "out", preset="minimal", resize=None, input_size=size, device="cpu",
                       max_images=n, use_cache=False, only=sections or None)
    wall = time.perf_counter() - t
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out = {"name": name, "size": size, "wall_s": round(wall, 1), "cpu_s": round(ru.ru_utime + ru.ru_stime, 1),
           # resetting VmHWM resets ru_maxrss too: the build's peak is the largest of the sections' peaks
           "peak_rss_mb": max([round(ru.ru_maxrss / 1024)] + list(peaks.values())),
           "ok": [], "unsupported": {}, "failed": {}, "layers": {},
           "peak_rss_by_section_mb": peaks,  # in the order the sections ran
           "slowest": sorted(((round(s.wall_time_s, 1), s.id) for s in res.report.sections), reverse=True)[:3]}
    for s in res.report.sections:
        if s.error:
            out["failed"][s.id] = s.error[:200]
        elif "unsupported" in s.results:
            out["unsupported"][s.id] = str(s.results["unsupported"])[:160]
        else:
            out["ok"].append(s.id)
        layer = s.results.get("layer") if isinstance(s.results, dict) else None
        if isinstance(layer, str):
            out["layers"][s.id] = layer
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--folder", default=None, help="an image folder instead of generated images")
    ap.add_argument("--only", default="", help="comma-separated families (default: all)")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    ap.add_argument("--source", choices=["torchvision", "timm"], default="torchvision")
    ap.add_argument("--sections", default="", help="comma-separated section ids (default: all)")
    ap.add_argument("--timeout", type=int, default=0, help="seconds per family before it is reported as timed out")
    ap.add_argument("--cpu-timeout", type=int, default=0,
                    help="CPU seconds per family (RLIMIT_CPU of its process) before it is reported as timed out: "
                         "unlike --timeout, other jobs on the machine do not count")
    ap.add_argument("--list", action="store_true", help="print the families and exit")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        if a.cpu_timeout:
            import resource

            resource.setrlimit(resource.RLIMIT_CPU, (a.cpu_timeout, a.cpu_timeout + 5))  # SIGXCPU, then SIGKILL
        secs = [x for x in a.sections.split(",") if x]
        print("ROW " + json.dumps(_one(a.child, a.images, a.folder, secs)), flush=True)
        return 0
    names = [x for x in a.only.split(",") if x] or families(a.source)
    if a.list:
        print(",".join(names))
        return 0
    rows: list[dict] = []
    for name in names:
        if a.out and rows:  # each row is kept as soon as it is known (a timed-out one too)
            Path(a.out).write_text(json.dumps(rows, indent=1))
        cmd = [sys.executable, __file__, "--child", name, "--images", str(a.images), "--sections", a.sections,
               "--cpu-timeout", str(a.cpu_timeout)]
        if a.folder:
            cmd += ["--folder", a.folder]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout or None,
                               env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
        except subprocess.TimeoutExpired:
            rows.append({"name": name, "timed_out": a.timeout})
            print(f"{name:30s} TIMED OUT after {a.timeout} s", flush=True)
            continue
        row = next((json.loads(ln[4:]) for ln in p.stdout.splitlines() if ln.startswith("ROW ")), None)
        if row is None and a.cpu_timeout and p.returncode in (-24, -9):  # SIGXCPU / SIGKILL past the CPU limit
            rows.append({"name": name, "timed_out_cpu": a.cpu_timeout})
            print(f"{name:30s} TIMED OUT after {a.cpu_timeout} CPU s", flush=True)
            continue
        if row is None:
            row = {"name": name, "crashed": p.returncode, "stderr": p.stderr[-400:]}
        rows.append(row)
        if "crashed" in row:
            print(f"{name:30s} CRASHED rc={row['crashed']}: {row['stderr'][-200:]}", flush=True)
        else:
            print(f"{name:30s} {row['size']} px  ok {len(row['ok']):2d}  unsupported {len(row['unsupported']):2d}  "
                  f"failed {len(row['failed'])}  {row['wall_s']:7.1f} s ({row.get('cpu_s', 0):.0f} s CPU)  "
                  f"peak RSS {row['peak_rss_mb']:5d} MB "
                  f"{dict(sorted(row.get('peak_rss_by_section_mb', {}).items(), key=lambda kv: -kv[1])[:4])}  "
                  f"layer {row['layers'].get('activations', '-')}  slowest {row['slowest']}", flush=True)
            for k, v in {**row["unsupported"], **row["failed"]}.items():
                print(f"    {k}: {v}", flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
