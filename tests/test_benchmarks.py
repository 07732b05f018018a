"""benchmarks/run.py --quick runs end to end on a tiny model (a smoke test; no timing claims)."""

import importlib.util
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_run", RUN)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_quick_runs_and_checks_maps(capsys):
    import torch

    threads = torch.get_num_threads()
    try:
        assert _load().main(["--quick", "--only", "ceiling,occlusion,gradients,threads"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "fp32 matmul ceiling" in out and "FLOP-count limit" in out
    assert "saliency (ours)" in out and "thread(s)" in out


@pytest.mark.slow
def test_benchmark_quick_end_to_end_build(capsys):
    assert _load().main(["--quick", "--only", "e2e"]) == 0
    assert " ok" in capsys.readouterr().out


def test_scale_benchmark_tiny(capsys):
    """benchmarks/scale.py end to end on 120 generated JPEGs (the 10k / 100k runs are in the README)."""
    spec = importlib.util.spec_from_file_location("bench_scale", RUN.parent / "scale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--n", "120", "--sizes", "120", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count(" ok") == 2 and "peak RSS" in out


def test_explorer_page_bytes_benchmark_tiny(monkeypatch):
    """benchmarks/bench_explorer.py --pages-only on 300 synthetic images, the compact threshold at 100: compact
    pages with their shared data are smaller than complete ones (the 10,000-image figures are in RESULTS.md)."""
    import reportgen.render.explorer as ex_mod

    spec = importlib.util.spec_from_file_location("bench_explorer", RUN.parent / "bench_explorer.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(ex_mod, "COMPACT_ABOVE", 100)
    full, compact = mod.page_bytes(300)
    assert (full["pages"], compact["pages"]) == ("complete", "compact") and full["files"] == compact["files"] == 300
    assert compact["shared_data_bytes"] > 0 and compact["total_mb"] < 0.6 * full["total_mb"]
    assert ex_mod.COMPACT_ABOVE == 100  # the benchmark put the threshold back
