"""Bad input is refused before the work it would waste (issue 31, item 5): an output that cannot be created and a
missing image folder before the model is loaded, a wrong ``--layer`` right after it, before any image is read.

The tests record the ORDER of calls (model loader, image reader), never time.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from reportgen import build as build_mod
from reportgen import loading
from reportgen.cli import main
from reportgen.demo import images_dir


@pytest.fixture()
def calls(monkeypatch):
    """The names of the expensive steps in the order they ran: 'load' (the model) and 'images' (the image set)."""
    seen: list[str] = []
    real_load, real_discover = loading.load_model, build_mod.discover_images

    def load(*a, **kw):
        seen.append("load")
        return real_load(*a, **kw)

    def discover(*a, **kw):
        seen.append("images")
        return real_discover(*a, **kw)

    monkeypatch.setattr(loading, "load_model", load)
    monkeypatch.setattr(build_mod, "discover_images", discover)
    return seen


def _build(*extra: str, images: str | None = None, out: str | None = None):
    args = ["build", "--model", "demo", "--images", images or str(images_dir()), "--out", out or "unused",
            "--preset", "minimal", "--only", "card", "--device", "cpu", "--no-cache", *extra]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _one_error(result) -> str:
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output
    return errors[0]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (a folder nothing can be created in)")
def test_uncreatable_output_is_refused_before_the_model_loads(calls):
    r = _build(out="/proc/reportgen-cannot-exist")
    assert r.exit_code == 2, r.output
    assert "/proc" in _one_error(r)
    assert calls == []


def test_output_under_a_file_is_refused_before_the_model_loads(calls, tmp_path):
    (tmp_path / "a_file").write_text("x")
    r = _build(out=str(tmp_path / "a_file" / "report"))
    assert r.exit_code == 2, r.output
    _one_error(r)
    assert calls == []


def test_missing_image_folder_is_refused_before_the_model_loads(calls, tmp_path):
    r = _build(images=str(tmp_path / "no_such_folder"), out=str(tmp_path / "out"))
    assert r.exit_code == 2, r.output
    assert "no_such_folder" in _one_error(r)
    assert calls == []
    assert not (tmp_path / "out").exists()


def test_glob_matching_nothing_is_refused_before_the_model_loads(calls, tmp_path):
    r = _build(images=str(tmp_path / "*.jpg"), out=str(tmp_path / "out"))
    assert r.exit_code == 2, r.output
    assert "matches" in _one_error(r)
    assert calls == []


def test_wrong_layer_is_refused_after_loading_before_reading_images(calls, tmp_path):
    r = _build("--layer", "features.99", out=str(tmp_path / "out"))
    assert r.exit_code == 2, r.output
    assert "features.99" in _one_error(r)
    assert calls == ["load"]


def test_a_good_build_loads_then_reads(calls, tmp_path):
    """The control: the same recording sees both steps, in this order, when nothing is wrong."""
    r = _build(out=str(tmp_path / "out"))
    assert r.exit_code == 0, r.output
    assert calls[:2] == ["load", "images"]


def test_compare_refuses_a_missing_image_folder_and_a_wrong_layer_early(calls, tmp_path):
    base = ["compare", "--model", "demo", "--model", "demo", "--out", str(tmp_path / "cmp"), "--preset", "minimal",
            "--device", "cpu", "--no-cache", "--technique", "saliency"]
    r = CliRunner().invoke(main, base + ["--images", str(tmp_path / "none")], catch_exceptions=False)
    assert r.exit_code == 2 and calls == [], r.output
    r = CliRunner().invoke(main, base + ["--images", str(images_dir()), "--layer", "nope.3"], catch_exceptions=False)
    assert r.exit_code == 2, r.output
    assert "nope.3" in _one_error(r)
    assert "images" not in calls


def test_root_can_write_anywhere_but_proc_still_fails(tmp_path):
    """check_out's probe is a real file creation, not os.access (which says yes to root everywhere)."""
    from reportgen.errors import OutputError
    from reportgen.publish.atomic import check_out

    check_out(tmp_path / "fine")  # a normal place passes
    assert not any(p.name.startswith(".") and "probe" in p.name for p in tmp_path.iterdir())
    if os.path.isdir("/proc/self"):
        with pytest.raises(OutputError):
            check_out(Path("/proc/x"))
