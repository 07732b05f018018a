"""Devices, threads and batch sizes: where and how wide a build computes.

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
