"""reportgen.accel on the CPU: out-of-memory halving and the autocast guard (no GPU needed)."""

import pytest
import torch

from reportgen.accel import autocast_agrees, low_precision_dtype, run_halving


def test_batches_halve_on_out_of_memory_and_cover_everything():
    seen, halved = [], []

    def fn(a, b):
        if b - a > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        seen.append((a, b))
        return list(range(a, b))

    out = run_halving(fn, 10, 16, on_halve=halved.append)
    assert sum(out, []) == list(range(10))
    assert halved == [8, 4, 2] and all(b - a <= 2 for a, b in seen)


def test_other_errors_and_size_one_oom_propagate():
    with pytest.raises(ValueError):
        run_halving(lambda a, b: (_ for _ in ()).throw(ValueError("bad")), 4, 2)
    with pytest.raises(RuntimeError, match="out of memory"):
        run_halving(lambda a, b: (_ for _ in ()).throw(RuntimeError("out of memory")), 4, 1)


def test_no_autocast_on_the_cpu(tiny_model):
    assert low_precision_dtype(torch.device("cpu")) is None
    assert autocast_agrees(tiny_model, torch.rand(2, 3, 32, 32), None) is False
