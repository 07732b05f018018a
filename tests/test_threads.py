"""--threads / general.threads: explicit counts are used, the automatic one counts only free CPUs."""

import os

import pytest
import torch

from reportgen import device as threads


def test_explicit_thread_count_is_used_and_restorable():
    before = torch.get_num_threads()
    try:
        assert threads.apply_threads(1) == 1 and torch.get_num_threads() == 1
        assert threads.choose_threads(3) == 3
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("load, expect", [(0.0, 4), (1.4, 3), (2.6, 1), (9.0, 1)])
def test_automatic_count_subtracts_busy_cpus(monkeypatch, load, expect):
    monkeypatch.setattr(threads, "available_cpus", lambda: 4)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert threads.choose_threads(0) == threads.choose_threads(None) == expect


def test_threads_is_a_general_option_and_a_build_flag():
    from click.testing import CliRunner

    from reportgen.cli import main
    from reportgen.config import make_config

    assert make_config("standard", general={"threads": 2}).general.threads == 2
    assert "--threads" in CliRunner().invoke(main, ["build", "--help"]).output


def test_omp_num_threads_in_the_environment_wins_over_the_automatic_choice(monkeypatch):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        monkeypatch.setattr(threads, "available_cpus", lambda: 8)
        monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
        assert threads.apply_threads(0) == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert threads.choose_threads(0) == 8
    finally:
        torch.set_num_threads(before)
