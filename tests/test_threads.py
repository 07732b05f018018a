"""--threads / general.threads: explicit counts are used; the automatic one counts the CPUs idle now
(two /proc/stat readings), falling back to the load average; OMP_NUM_THREADS wins over it."""

import os

import pytest
import torch

from reportgen import device as threads


def _stat(*cpus: tuple[int, int]) -> str:
    """A /proc/stat text: per CPU (busy ticks, idle ticks), split over user/system and idle/iowait."""
    total = [sum(c[0] for c in cpus), sum(c[1] for c in cpus)]
    lines = [f"cpu  {total[0] - total[0] // 3} 0 {total[0] // 3} {total[1]} 0 0 0 0 0 0"]
    lines += [f"cpu{k} {b - b // 3} 0 {b // 3} {i - i // 4} {i // 4} 0 0 0 7 0" for k, (b, i) in enumerate(cpus)]
    return "\n".join(lines + ["intr 1 2 3", "ctxt 99"]) + "\n"


@pytest.fixture
def readings(monkeypatch, tmp_path):
    """Feed two /proc/stat readings (no real sleep): ``readings(first, second, cpus)``."""

    def use(first: str, second: str, cpus: set[int]):
        files = [tmp_path / "a", tmp_path / "b"]
        files[0].write_text(first)
        files[1].write_text(second)
        order = iter(files)
        real = threads.read_cpu_times
        monkeypatch.setattr(threads, "read_cpu_times", lambda path="/proc/stat": real(str(next(order))))
        monkeypatch.setattr(threads.time, "sleep", lambda s: None)
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(cpus))
        monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))  # must not be consulted

    return use


def test_explicit_thread_count_is_used_and_restorable():
    before = torch.get_num_threads()
    try:
        assert threads.apply_threads(1) == 1 and torch.get_num_threads() == 1
        assert threads.choose_threads(3) == 3
        assert threads.thread_choice(3) == (3, "--threads / general.threads")
    finally:
        torch.set_num_threads(before)


def test_reads_per_cpu_idle_and_total_ticks(tmp_path):
    p = tmp_path / "stat"
    p.write_text(_stat((30, 70), (90, 10)))
    assert threads.read_cpu_times(str(p)) == {0: (70, 100), 1: (10, 100)}  # guest time is not counted twice
    assert threads.read_cpu_times(str(tmp_path / "missing")) == {}


@pytest.mark.parametrize("delta, expect", [
    ([(0, 15), (0, 15), (0, 15), (0, 15)], 4),  # all idle: a load average of 9 (a finished job) is ignored
    ([(15, 0), (0, 15), (0, 15), (0, 15)], 3),
    ([(15, 0), (15, 0), (8, 7), (0, 15)], 1),  # 22 of 60 ticks idle: round(4 * 0.37) = 1
    ([(15, 0), (15, 0), (15, 0), (15, 0)], 1),  # all busy: still 1
])
def test_automatic_count_is_the_idle_share_of_the_cpus(readings, delta, expect):
    start = [(1000, 5000)] * 4
    readings(_stat(*start), _stat(*[(b + db, i + di) for (b, i), (db, di) in zip(start, delta)]), {0, 1, 2, 3})
    n, why = threads.idle_cpus()
    assert n == expect and why == f"{expect} of 4 CPUs idle over 150 ms"


def test_only_the_cpus_of_this_process_count(readings):
    # cpu0 and cpu1 (not ours) are busy, ours (2, 3) idle
    readings(_stat((0, 0), (0, 0), (0, 0), (0, 0)), _stat((20, 0), (20, 0), (0, 20), (0, 20)), {2, 3})
    assert threads.idle_cpus() == (2, "2 of 2 CPUs idle over 150 ms")


def test_without_proc_stat_the_load_average_is_used(monkeypatch):
    monkeypatch.setattr(threads, "read_cpu_times", lambda path="/proc/stat": {})
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    for load, expect in [(0.0, 4), (1.4, 3), (2.6, 1), (9.0, 1)]:
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        n, why = threads.idle_cpus()
        assert n == expect and "load average" in why


def test_threads_is_a_general_option_and_a_build_flag():
    from click.testing import CliRunner

    from reportgen.cli import main
    from reportgen.config import make_config

    assert make_config("standard", general={"threads": 2}).general.threads == 2
    assert "--threads" in CliRunner().invoke(main, ["build", "--help"]).output


def test_omp_num_threads_in_the_environment_wins_and_the_log_says_why(monkeypatch, readings):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        readings(_stat(*[(0, 0)] * 8), _stat(*[(0, 10)] * 8), set(range(8)))
        said = []
        assert threads.apply_threads(0, log=said.append) == 1 and torch.get_num_threads() == 1
        assert said == ["threads: 1 (OMP_NUM_THREADS=1)"]
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert threads.choose_threads(0) == 8
    finally:
        torch.set_num_threads(before)


def test_the_build_logs_how_many_threads_and_why(tmp_path, image_dir, monkeypatch):
    from conftest import CLASSES, make_tiny_cnn

    from reportgen.build import build_report

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "idle_cpus", lambda sample_s=threads.SAMPLE_S: (1, "1 of 2 CPUs idle over 150 ms"))
    said: list[str] = []
    before = torch.get_num_threads()
    try:
        build_report(make_tiny_cnn(), image_dir, tmp_path / "r", labels=CLASSES, preset="minimal", only=["card"],
                     resize=None, input_size=32, device="cpu", use_cache=False, log=said.append)
    finally:
        torch.set_num_threads(before)
    assert "threads: 1 (1 of 2 CPUs idle over 150 ms)" in said
