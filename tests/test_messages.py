"""What the command line says (issue 31, item 6): complete one-line errors (click's parameter errors too), counts
in the right number, progress with the time left in a log file, and no Hugging Face progress bar in the log.
(Which model a comparison's log lines are about: tests/test_untrained.py, which runs the one comparison.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from reportgen.cli import main
from reportgen.demo import images_dir
from reportgen.publish import console

ROOT = Path(__file__).resolve().parents[1]


def _errors(result) -> list[str]:
    return [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]


def test_model_file_not_found_lists_every_form_uncut(tmp_path):
    r = CliRunner().invoke(main, ["build", "--model", str(tmp_path / "missing" / "model.pt"), "--images",
                                  str(images_dir()), "--out", str(tmp_path / "out")], catch_exceptions=False)
    assert r.exit_code == 2, r.output
    (line,) = _errors(r)
    assert "model file not found" in line
    assert "timm:" in line and "Hugging Face" in line, line
    assert not line.endswith("..."), line


@pytest.mark.parametrize("flag, value", [("--mean", "0.5,0.5"), ("--std", "a,b,c"), ("--input-size", "3"),
                                         ("--preset", "huge")])
def test_parameter_errors_are_one_line(flag, value, tmp_path):
    r = CliRunner().invoke(main, ["build", "--model", "demo", "--images", str(images_dir()), "--out",
                                  str(tmp_path / "out"), flag, value], catch_exceptions=False)
    assert r.exit_code == 2, r.output
    assert "Usage:" not in r.output and "Try '" not in r.output, r.output
    (line,) = _errors(r)
    assert flag in line and "--help" in line, line
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1, r.stderr


def test_help_and_version_still_exit_0():
    bare = CliRunner().invoke(main, [])  # no command: click's help, as before
    assert "Usage:" in bare.output and "Commands:" in bare.output and not _errors(bare)
    assert CliRunner().invoke(main, ["--help"]).exit_code == 0
    assert CliRunner().invoke(main, ["--version"]).exit_code == 0
    assert CliRunner().invoke(main, ["build", "--help"]).exit_code == 0


def test_plural():
    assert console.plural(1, "step") == "1 step"
    assert console.plural(0, "step") == "0 steps"
    assert console.plural(2, "thread") == "2 threads"
    assert console.plural(1200, "image") == "1,200 images"
    assert console.plural(3, "query", "queries") == "3 queries"


def test_no_count_with_a_parenthesised_plural_in_the_code():
    """'{n} layer(s)' and friends: every count of a thing is written through console.plural (or a phrase that
    fits every number)."""
    slips = []
    for path in sorted((ROOT / "reportgen").rglob("*.py")):
        for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\}[\w ]*\w\(s\)", line) or re.search(r"\{[^{}]*\} (threads|cores)\b", line):
                slips.append(f"{path.relative_to(ROOT)}:{k}: {line.strip()}")
    assert not slips, "\n".join(slips)


def test_one_step_and_one_thread_in_the_log(tmp_path):
    r = CliRunner().invoke(main, ["build", "--model", "demo", "--images", str(sorted(images_dir().glob("*/*.png"))[0]),
                                  "--out", str(tmp_path / "out"), "--preset", "minimal", "--only", "card",
                                  "--device", "cpu", "--no-cache", "--threads", "1"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert not re.search(r"\b1 (steps|threads|images|layers)\b", r.stderr), r.stderr
    assert "1 thread" in r.stderr, r.stderr


def test_progress_in_a_log_prints_the_time_left_at_most_every_30_s(capsys):
    now = [0.0]

    def clock():
        return now[0]

    seen = []
    for i in console.progress(range(10), "Scanning", clock=clock):
        seen.append(i)
        now[0] += 10.0  # each step takes 10 s: 100 s in all
    err = capsys.readouterr().err.splitlines()
    assert seen == list(range(10))
    assert err[0].strip() == "Scanning (10 steps)"
    lines = err[1:]
    assert len(lines) == 3, err  # after 30, 60 and 90 s, never more often
    assert "3/10 done" in lines[0] and "about 1 min 10 s left" in lines[0], lines
    assert all("left" in ln for ln in lines)


def test_eta_text():
    assert console.eta_text(5, 10, 50.0) == "5/10 done, 50 s so far, about 50 s left"
    assert console.eta_text(7, None, 3700.0) == "7 done, 1 h 01 min so far"


def test_hugging_face_loading_is_quiet(tmp_path, monkeypatch):
    """transformers' own progress bars and warnings are off while the folder loads, and back on after."""
    transformers = pytest.importorskip("transformers")
    from transformers.utils import logging as hf_logging

    from reportgen import loading

    folder = tmp_path / "hf"
    config = transformers.ViTConfig(image_size=32, patch_size=16, num_channels=3, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32, num_labels=3)
    transformers.ViTForImageClassification(config).save_pretrained(folder)
    real = transformers.AutoModelForImageClassification.from_pretrained
    state = {}

    def spy(*a, **kw):
        state["bar"] = hf_logging.is_progress_bar_enabled()
        state["verbosity"] = hf_logging.get_verbosity()
        return real(*a, **kw)

    monkeypatch.setattr(transformers.AutoModelForImageClassification, "from_pretrained", spy)
    before = (hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity())
    loaded = loading.load_model(str(folder))
    assert loaded.kind == "huggingface"
    assert state == {"bar": False, "verbosity": hf_logging.ERROR}
    assert (hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()) == before
    json.dumps(loaded.notes)
