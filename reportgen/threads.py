"""How many CPU threads torch uses for a build (``--threads``, config ``general.threads``).

On a loaded CPU, OpenMP threads that compete with other processes for the same cores wait on each
other at every parallel region: measured on a 2-core machine shared with other jobs, torch with 2
threads ran 10-50x slower than with 1. The automatic choice therefore counts only the cores that
are not already busy: ``max(1, available CPUs - round(1-minute load average))``, unless
``OMP_NUM_THREADS`` is set in the environment.
"""

from __future__ import annotations

import os


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
    import torch

    if not (requested and requested > 0) and os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    n = choose_threads(requested)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
