"""Devices, threads and batch sizes: where and how wide a build computes.

Devices: :func:`resolve_device` (``--device auto`` picks CUDA, then MPS, else the CPU) and
:func:`device_description`. Batch sizes: :func:`device_batch_size` for many small passes (cache-sized on the CPU).

Accelerator helpers: batches that halve on CUDA out-of-memory, and checked low-precision scans.

``run_halving(fn, n, batch)`` evaluates ``fn(start, stop)`` over ``[0, n)`` in batches; when a batch
raises ``torch.cuda.OutOfMemoryError`` the cache is emptied and the batch size halved (down to 1)
before that batch is retried, so a wide GPU batch degrades instead of failing.

``autocast_agrees(model, x, dtype)`` runs a probe batch in float32 and under ``torch.autocast``
(bf16 where the GPU supports it, else fp16) and says whether the top-1 predictions agree on every
image; forward-only scans may then use :func:`scan_autocast`. Never used on the CPU.

Threads (``--threads``, config ``general.threads``): on a loaded CPU, OpenMP threads that compete with other
processes for the same cores wait on each other at every parallel region: measured on a 2-core machine shared
with other jobs, torch with 2 threads ran 10-50x slower than with 1. The automatic choice therefore counts the
cores that are idle NOW: the busy time of this process's CPUs (``os.sched_getaffinity``) is sampled from
``/proc/stat`` over ``SAMPLE_S`` (150 ms), and ``round(n * idle fraction)`` threads are used, at least 1 (where
``/proc/stat`` cannot be read: CPUs minus the 1-minute load average, which lags by minutes and so
under-uses a machine that another job has just left). ``--threads`` and an ``OMP_NUM_THREADS`` set in the
environment win over it.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from typing import TYPE_CHECKING, Callable

import torch

from .cache import MemoKey
from .errors import ReportgenError
from .inspection.hooks import capture_outputs, eval_mode, hookable
from .report import plural

if TYPE_CHECKING:
    from .context import Ctx


def is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


def run_halving(fn, n: int, batch: int, on_halve=None) -> list:
    """``[fn(start, stop) for each batch]`` over ``[0, n)``, halving ``batch`` on CUDA out-of-memory."""
    out, start, batch = [], 0, max(1, int(batch))
    while start < n:
        stop = min(n, start + batch)
        try:
            out.append(fn(start, stop))
        except (torch.cuda.OutOfMemoryError, RuntimeError) as e:
            if not is_oom(e) or batch == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            batch = max(1, batch // 2)
            if on_halve is not None:
                on_halve(batch)
            continue
        start = stop
    return out


def low_precision_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on GPUs that support it, else fp16 on CUDA; None elsewhere (no autocast on the CPU)."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def scan_autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for a forward-only scan, or a no-op when ``dtype`` is None."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def autocast_agrees(model, x: torch.Tensor, dtype: torch.dtype | None) -> bool:
    """True when ``model``'s top-1 predictions on ``x`` are the same in float32 and under autocast."""
    if dtype is None:
        return False
    with torch.inference_mode():
        ref = model(x).float().argmax(1)
        with scan_autocast(x.device, dtype):
            low = model(x).float().argmax(1)
    return bool((ref == low).all())


def fast_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last memory on the CPU (oneDNN convolutions run faster on it: forward of 16
    images at 224 px, ResNet-18 1.17x and MobileNetV2 1.56x; saliency 1.2-1.6x), unchanged elsewhere.
    Only the input's layout changes: the model's parameters are never touched."""
    if x.dim() == 4 and x.device.type == "cpu":
        return x.contiguous(memory_format=torch.channels_last)
    return x

SAMPLE_S = 0.15  # seconds of /proc/stat sampling behind the automatic thread count
_IDLE_FIELDS = (3, 4)  # idle, iowait: columns of a /proc/stat cpuN line after the name


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_set() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def read_cpu_times(path: str = "/proc/stat") -> dict[int, tuple[int, int]]:
    """``{cpu: (idle ticks, total ticks)}`` from ``/proc/stat``'s ``cpuN`` lines (guest time, already counted in
    user time, left out); empty when the file cannot be read."""
    out: dict[int, tuple[int, int]] = {}
    try:
        with open(path, encoding="ascii") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return out
    for line in lines:
        name, _, rest = line.partition(" ")
        if not (name.startswith("cpu") and name[3:].isdigit()):
            continue
        ticks = [int(v) for v in rest.split()[:8]]
        if len(ticks) >= 5:
            out[int(name[3:])] = (sum(ticks[i] for i in _IDLE_FIELDS), sum(ticks))
    return out


def idle_cpus(sample_s: float = SAMPLE_S) -> tuple[int, str]:
    """(CPUs of this process that are idle now, at least 1; why, in words), from two ``/proc/stat`` readings
    ``sample_s`` apart; the 1-minute load average where they cannot be had."""
    allowed = _cpu_set()
    n = len(allowed) if allowed else available_cpus()
    first = read_cpu_times()
    if first:
        time.sleep(sample_s)
        second = read_cpu_times()
        cpus = [c for c in first if c in second and (allowed is None or c in allowed)]
        idle = sum(second[c][0] - first[c][0] for c in cpus)
        total = sum(second[c][1] - first[c][1] for c in cpus)
        if cpus and total > 0:
            frac = min(1.0, max(0.0, idle / total))
            k = max(1, min(n, round(n * frac)))
            return k, f"{k} of {n} CPUs idle over {sample_s * 1000:.0f} ms"
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return n, f"{n} CPUs, no load reading"
    k = max(1, n - round(load))
    return k, f"{n} CPUs minus the 1-minute load average {load:.1f}"


def free_cpus() -> int:
    """CPUs this process may use that are idle now (at least 1): :func:`idle_cpus`."""
    return idle_cpus()[0]


def thread_choice(requested: int | None) -> tuple[int, str]:
    """(intra-op thread count, why): ``requested`` when positive, else an ``OMP_NUM_THREADS`` set in the
    environment (torch already follows it), else :func:`idle_cpus`."""
    if requested and requested > 0:
        return int(requested), "--threads / general.threads"
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp:
        return torch.get_num_threads(), f"OMP_NUM_THREADS={omp}"
    return idle_cpus()


def choose_threads(requested: int | None) -> int:
    """``requested`` when positive, else :func:`free_cpus` (the environment is not consulted)."""
    return int(requested) if requested and requested > 0 else free_cpus()


def apply_threads(requested: int | None, log: Callable[[str], None] | None = None) -> int:
    """Set torch's intra-op thread count for this process (:func:`thread_choice`); returns the number used and
    tells ``log`` how many and why, e.g. ``threads: 2 (2 of 2 CPUs idle over 150 ms)``."""
    n, why = thread_choice(requested)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    if log is not None:
        log(f"threads: {n} ({why})")
    return n


# ----------------------------------------------------------------------------------------------
# devices and batch sizes

CPU_BATCH_BUDGET = 16 << 20  # bytes of the largest activation of one CPU batch (about a last-level cache)


def resolve_device(name: str = "auto") -> torch.device:
    """``name``: an ``options.DeviceName``, or ``cuda:N``. ``auto`` picks CUDA when present, then Apple MPS, else the
    CPU (decided per run, not at import)."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ReportgenError("--device cuda was requested but CUDA is not available on this machine")
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ReportgenError("--device mps was requested but Apple MPS is not available")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise ReportgenError(f"unknown device {name!r}: {e}") from None


def device_description(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    if dev.type == "cpu":
        return f"cpu ({plural(os.cpu_count() or 1, 'core')}, {plural(torch.get_num_threads(), 'thread')})"
    return dev.type

#: what this module measures once per run (``DEVICE_BATCH_SIZE.at(cap, budget)``)
DEVICE_BATCH_SIZE: MemoKey[int] = MemoKey("device.batch_size")
GRAPH_BYTES_PER_IMAGE: MemoKey[int] = MemoKey("device.graph_bytes_per_image")
FORWARD_MACS: MemoKey[int | None] = MemoKey("device.forward_macs")
INFERENCE_MODEL: MemoKey[torch.nn.Module | None] = MemoKey("device.inference_model")


def device_batch_size(ctx: Ctx, cap: int = 64, budget: int = CPU_BATCH_BUDGET) -> int:
    """A batch size for many small forward passes (occlusion): ``cap`` on a GPU; on the CPU as many
    images as keep the model's largest intermediate activation within ``budget`` bytes.

    On a CPU, big batches of a large-resolution network spill its activations out of the caches
    and run slower per image than small ones (MobileNetV2 at 224 px: ~25 ms/image at batch 4 vs
    ~60 ms at batch 64 on 2 cores), while small models gain from batching. Memoised per run.
    """
    if ctx.device.type != "cpu":
        return cap
    if not hookable(ctx.model):  # no hooks to measure activations with: a cautious fixed size
        return int(max(1, min(cap, 8)))

    def probe() -> int:
        return cpu_batch_size(ctx.model, ctx.pixel_model, ctx.pre.size, ctx.device, cap, budget)

    return ctx.memo(DEVICE_BATCH_SIZE.at(cap, budget), probe)


def leaf_output_bytes(model, forward, size: int, device=None) -> list[int]:
    """Bytes of each leaf module's output for one ``size`` px image through ``forward`` (an inference pass)."""
    leaves = {n: m for n, m in model.named_modules() if n and not list(m.children())}
    x = torch.zeros(1, 3, size, size, device=device)
    with eval_mode(model), torch.inference_mode(), capture_outputs(leaves) as outs:
        forward(x)
    return [t.numel() * t.element_size() for t in outs.values() if isinstance(t, torch.Tensor)]


def cpu_batch_size(model, forward, size: int, device=None, cap: int = 64, budget: int = CPU_BATCH_BUDGET) -> int:
    """Images per CPU batch that keep ``model``'s largest intermediate activation (measured on one ``size`` px
    image through ``forward``) within ``budget`` bytes; at most ``cap``."""
    biggest = max(leaf_output_bytes(model, forward, size, device) + [3 * size * size * 4])
    return int(max(1, min(cap, budget // max(1, biggest))))


#: bytes of saved activations one forward + backward pass may hold (CPU: RAM; a GPU: device memory)
GRAPH_BUDGET = 1 << 30


def graph_batch_size(ctx: Ctx, cap: int | None = None, budget: int | None = None) -> int:
    """Images per forward + backward pass: as many as keep the pass's autograd graph within ``budget`` bytes.

    The graph of one image is taken as the sum of every leaf module's output for one input of the run's size
    (measured once per run, what autograd saves for the backward pass, to within a small factor), so a gradient
    section holds a bounded amount of activations whatever the model: ViT-B/16 at 224 px keeps ~0.1 GB per image,
    so at most ~8 images per pass, where a ResNet-18 allows the run's whole batch. At most ``cap`` (default: the
    run's batch size); on a GPU the budget is a quarter of the device's memory when that is larger.
    """
    cap = int(cap or ctx.batch_size)
    budget = int(GRAPH_BUDGET if budget is None else budget)
    if ctx.device.type == "cuda":
        budget = max(budget, torch.cuda.get_device_properties(ctx.device).total_memory // 4)
    if not hookable(ctx.model):
        return int(max(1, min(cap, 8)))

    per_image = ctx.memo(GRAPH_BYTES_PER_IMAGE,
                         lambda: sum(leaf_output_bytes(ctx.model, ctx.pixel_model, ctx.pre.size, ctx.device)))
    return int(max(1, min(cap, budget // max(1, per_image))))


#: multiply-accumulates per image the presets' perturbation counts are set for (ResNet-18 at 224 px: 1.8 G)
REFERENCE_MACS = 2e9


def count_macs(forward, size: int, device=None) -> int:
    """Multiply-accumulates of one inference pass of a ``size`` px image through ``forward``: half the floating
    point operations :class:`torch.utils.flop_counter.FlopCounterMode` counts at the ATen level (every
    convolution, matrix product and fused attention, however the model calls them; element-wise work is not
    counted). The input requires a gradient so that fused inference kernels the counter cannot see (the native
    multi-head attention fast path) are not taken."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    x = torch.zeros(1, 3, size, size, device=device, requires_grad=True)
    with torch.enable_grad(), counter:
        forward(x)
    return int(counter.get_total_flops() // 2)


def forward_macs(ctx: Ctx) -> int | None:
    """:func:`count_macs` of the run's model at its input size, once per run; None when it cannot be counted."""
    if not hookable(ctx.model):
        return None

    def probe() -> int | None:
        try:
            with eval_mode(ctx.model):
                return count_macs(ctx.pixel_model, ctx.pre.size, ctx.device)
        except Exception:  # noqa: BLE001 - a model the counter cannot follow: no scaling
            return None

    return ctx.memo(FORWARD_MACS, probe)


def cost_factor(ctx: Ctx) -> float:
    """How many times :data:`REFERENCE_MACS` one forward pass of the run's model costs (at least 1; 1 when it
    cannot be counted). Counts of forward passes set for the reference are divided by it where a section allows
    (its ``scale_with_cost`` option), and the section says so. Deterministic: MACs, not seconds."""
    macs = forward_macs(ctx)
    return 1.0 if not macs else max(1.0, macs / REFERENCE_MACS)


#: the frozen inference copy is used only when it is at least this many times faster on the probe batch
FROZEN_MIN_GAIN = 1.2


class FrozenForward(torch.nn.Module):
    """A frozen TorchScript graph behind an ``nn.Module`` (no parameters, no submodules to hook), for passes
    that only read the logits."""

    def __init__(self, graph, source: str):
        super().__init__()
        self.graph = (graph,)  # a tuple: not registered as a submodule (a frozen graph has no train/eval flag)
        self.source = source

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.graph[0](x)


def _time(fn, x: torch.Tensor, repeat: int = 2) -> float:
    fn(x)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - t)
    return best


def inference_copy(model: torch.nn.Module, example: torch.Tensor, tol: float = 1e-4,
                   min_gain: float = FROZEN_MIN_GAIN) -> tuple[torch.nn.Module | None, str]:
    """``(copy, why)``: ``model`` traced, frozen and optimised for inference (``torch.jit.trace``, ``freeze``,
    ``optimize_for_inference``: BatchNorm folded into the convolutions, oneDNN kernels), for forward-only passes
    that read nothing but the logits (perturbation metrics, occlusion by full passes). Used only when, on
    ``example`` and on half of it (another batch size, so a size baked in by the trace is caught), its logits
    equal the model's to ``tol`` relative to their largest magnitude, and it is at least ``min_gain`` times
    faster; else ``(None, why not)``. CPU only: a GPU gains from the wide batches instead. Measured (1 thread,
    channels-last batches): 2.5x on the demo CNN, 2.7x on MobileNetV2, 1.1x on ResNet-18, slower (so unused) on
    ViT-B/16, Swin-T, ConvNeXt-T and EfficientNet-B0."""
    if example.device.type != "cpu":
        return None, "not on the CPU"
    if len(example) < 2:
        return None, "a probe batch of at least 2 images is needed"
    x = fast_layout(example.float())
    try:
        with eval_mode(model), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = torch.jit.optimize_for_inference(torch.jit.freeze(
                torch.jit.trace(model, x, check_trace=False).eval()))
            for probe in (x, x[: len(x) // 2]):
                ref, got = model(probe).float(), graph(probe).float()
                if ref.shape != got.shape or (ref - got).abs().max() > tol * max(1.0, float(ref.abs().max())):
                    return None, "the traced graph does not give the model's logits"
            eager, frozen = _time(model, x), _time(graph, x)
    except Exception as e:  # noqa: BLE001 - any model the tracer cannot follow keeps its eager forward
        return None, f"not traceable ({type(e).__name__})"
    if frozen * min_gain > eager:
        return None, f"not faster ({eager / frozen:.2f}x on the probe batch)"
    return FrozenForward(graph, f"frozen TorchScript copy, {eager / frozen:.1f}x faster on the probe batch"), ""


def inference_model(ctx: Ctx) -> torch.nn.Module:
    """The module forward-only perturbation passes use: :func:`inference_copy` of the pixel model where it is
    the same and faster (probed once per run on a batch of :func:`device_batch_size` images of the run, at most
    8), else ``ctx.pixel_model``. Only tried on a model with BatchNorm (what folding removes): on LayerNorm models
    (ViT, Swin, ConvNeXt) the frozen copy measured slower, and its trace and timing would cost a heavy model tens
    of seconds and a second copy of its weights for nothing."""
    def probe():
        n = max(2, min(device_batch_size(ctx), 8))
        idx = list(range(min(n, len(ctx.images))))
        if len(idx) < 2 or not hookable(ctx.model):
            return None
        if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in ctx.model.modules()):
            return None
        example = ctx.to_device(ctx.images.batch(idx))
        copy = inference_copy(ctx.pixel_model, example)[0]
        from .features.split import agree

        if agree(ctx, "inference_copy", copy is not None) != (copy is not None):  # torchrun: rank 0's choice
            copy = inference_copy(ctx.pixel_model, example, min_gain=0.0)[0] if copy is None else None
        return copy

    return ctx.memo(INFERENCE_MODEL, probe) or ctx.pixel_model


def gradient_batch_size(ctx: Ctx, cap: int = 64) -> int:
    """Copies per gradient pass: cache-sized (:func:`device_batch_size`) and a bounded graph
    (:func:`graph_batch_size`), whichever is smaller."""
    return min(device_batch_size(ctx, cap=cap), graph_batch_size(ctx, cap=cap))
