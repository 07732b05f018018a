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

Threads (``--threads``, config ``general.threads``): On a loaded CPU, OpenMP threads that compete with other processes for the same cores wait on each
other at every parallel region: measured on a 2-core machine shared with other jobs, torch with 2
threads ran 10-50x slower than with 1. The automatic choice therefore counts only the cores that
are not already busy: ``max(1, available CPUs - round(1-minute load average))``, unless
``OMP_NUM_THREADS`` is set in the environment.
"""

from __future__ import annotations

import contextlib
import os

import torch

from .errors import ReportgenError
from .inspection.hooks import capture_outputs, eval_mode, hookable


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

def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def free_cpus() -> int:
    """CPUs this process may use minus those the 1-minute load average says are busy (at least 1)."""
    n = available_cpus()
    try:
        busy = int(round(os.getloadavg()[0]))
    except (AttributeError, OSError):
        busy = 0
    return max(1, n - busy)


def choose_threads(requested: int | None) -> int:
    """``requested`` when positive, else :func:`free_cpus`."""
    return int(requested) if requested and requested > 0 else free_cpus()


def apply_threads(requested: int | None) -> int:
    """Set torch's intra-op thread count for this process; returns the number used. Without an explicit
    count, an ``OMP_NUM_THREADS`` set in the environment is respected (torch already follows it)."""
    if not (requested and requested > 0) and os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    n = choose_threads(requested)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


# ----------------------------------------------------------------------------------------------
# devices and batch sizes

CPU_BATCH_BUDGET = 16 << 20  # bytes of the largest activation of one CPU batch (about a last-level cache)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, then Apple MPS, else the CPU (decided per run, not at import)."""
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
        return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    return dev.type


def device_batch_size(ctx, cap: int = 64, budget: int = CPU_BATCH_BUDGET) -> int:
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

    return ctx.memo(f"device_batch_size:{cap}:{budget}", probe)


def cpu_batch_size(model, forward, size: int, device=None, cap: int = 64, budget: int = CPU_BATCH_BUDGET) -> int:
    """Images per CPU batch that keep ``model``'s largest intermediate activation (measured on one ``size`` px
    image through ``forward``) within ``budget`` bytes; at most ``cap``."""
    leaves = {n: m for n, m in model.named_modules() if n and not list(m.children())}
    x = torch.zeros(1, 3, size, size, device=device)
    with eval_mode(model), torch.inference_mode(), capture_outputs(leaves) as outs:
        forward(x)
    biggest = max([t.numel() * t.element_size() for t in outs.values() if isinstance(t, torch.Tensor)]
                  + [x.numel() * x.element_size()])
    return int(max(1, min(cap, budget // max(1, biggest))))
