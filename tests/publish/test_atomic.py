"""Output safety with real processes: the lock on --out, SIGKILL at random moments, stale temp folders,
single-file output, the cache outside the published folder, and a full disk."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import CLASSES, make_tiny_cnn
from reportgen.build import build_report
from reportgen.demo import images_dir
from reportgen.errors import OutputError
from reportgen.publish.atomic import OutputBusyError, OutputLock, clean_stale

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
DEMO = dict(preset="minimal", only=["card", "filters"], device="cpu", max_images=20)


def _env(tmp_path: Path) -> dict:
    return dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT),
                XDG_CACHE_HOME=str(tmp_path / "xdg"))


def assert_complete(out: Path) -> dict:
    """A whole report: index, report.json, every page and every figure it lists."""
    assert (out / "index.html").is_file(), f"{out} has no index.html"
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    for s in data["sections"]:
        assert (out / s["page"].split("#")[0]).is_file()
        for f in s["figures"]:
            assert (out / f).is_file(), f"missing {f}"
    assert "</html>" in (out / "index.html").read_text(encoding="utf-8")
    return data


def leftovers(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


FORK_SERVER = r"""
import os, sys, signal, torch
torch.set_num_threads(1)  # no OpenMP pool: forking is safe
from reportgen.build import build_report
from reportgen.demo import images_dir
out = sys.argv[1]
print("READY", flush=True)
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:  # the child builds again and again until it is killed
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        k = 0
        while True:
            build_report("demo", images_dir(), out, preset="minimal", only=["card", "filters"], device="cpu",
                         max_images=20, use_cache=(k % 2 == 0), seed=k % 3)
            k += 1
    print(pid, flush=True)
    os.waitpid(pid, 0)  # the test kills it
    print("REAPED", flush=True)
"""


def test_sigkill_at_random_moments_keeps_the_previous_report(tmp_path):
    """SIGKILL a build at 12 random moments (computing, rendering, swapping): a complete report is always in
    place, and the next build removes every temp folder left behind."""
    out = tmp_path / "rep"
    build_report("demo", images_dir(), out, **DEMO)  # the previous report
    assert_complete(out)
    server = subprocess.Popen([sys.executable, "-c", FORK_SERVER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=_env(tmp_path), cwd=tmp_path)
    rng = random.Random(1234)
    delays = []
    try:
        assert server.stdout.readline().strip() == "READY"
        for _ in range(12):
            server.stdin.write("go\n")
            server.stdin.flush()
            pid = int(server.stdout.readline())
            delay = rng.uniform(0.02, 0.7)
            delays.append(round(delay, 2))
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
            assert server.stdout.readline().strip() == "REAPED"
            assert_complete(out)  # never half a report, never none
    finally:
        server.kill()
        server.wait(timeout=30)
    assert (out / "index.html").is_file()
    left = leftovers(tmp_path, "rep")
    build_report("demo", images_dir(), out, **DEMO)  # the next build cleans up after the killed ones
    assert_complete(out)
    assert leftovers(tmp_path, "rep") == [], f"after kills at {delays}s, {left} were left and not cleaned"


def test_clean_stale_restores_a_report_left_aside(tmp_path):
    """A kill between the two renames of the fallback swap leaves no OUT but .OUT.old-*: it is put back."""
    out = tmp_path / "rep"
    old = tmp_path / ".rep.old-1234abcd"
    old.mkdir()
    (old / "report.json").write_text("{}")
    (tmp_path / ".rep.tmp-deadbeef" / "assets").mkdir(parents=True)
    (tmp_path / ".other.tmp-1").mkdir()  # another output's temp folder is not ours to remove
    removed = clean_stale(out)
    assert (out / "report.json").is_file()
    assert removed == [".rep.tmp-deadbeef"]
    assert (tmp_path / ".other.tmp-1").is_dir()


HOLDER = r"""
import sys, time
from reportgen.publish.atomic import OutputLock
with OutputLock(__import__("pathlib").Path(sys.argv[1])):
    print("LOCKED", flush=True)
    sys.stdin.readline()
"""


def test_second_concurrent_build_fails_or_waits(tmp_path):
    """Two real processes: a second build into a locked --out exits 2 with a clear message, or waits (--wait)."""
    out = tmp_path / "rep"
    env = _env(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "LOCKED"
        cmd = [sys.executable, "-m", "reportgen", "demo", "--out", str(out), "--preset", "minimal",
               "--only", "card", "--device", "cpu"]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 2, r.stderr
        err = r.stderr.strip().splitlines()[-1]
        assert err.startswith("error: another reportgen build is writing") and "--wait" in err
        assert "Traceback" not in r.stderr and not out.exists()

        waiter = subprocess.Popen(cmd + ["--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env)
        t0 = time.time()
        seen = ""
        while "Waiting for another build" not in seen and time.time() - t0 < 60:
            seen += waiter.stderr.readline()
        assert "Waiting for another build" in seen
        time.sleep(0.3)
        assert waiter.poll() is None and not out.exists()  # still queued
        holder.stdin.write("\n")
        holder.stdin.flush()
        waiter.communicate(timeout=120)
        assert waiter.returncode == 0
        assert_complete(out)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert leftovers(tmp_path, "rep") == []


def test_lock_is_exclusive_in_process(tmp_path):
    out = tmp_path / "x" / "rep"  # works before OUT (or its parent) exists
    with OutputLock(out):
        assert (tmp_path / "x" / ".rep.lock").is_file()
        with pytest.raises(OutputBusyError, match="--wait"):
            OutputLock(out).acquire()
    with OutputLock(out):  # released: free again
        pass
    assert not (tmp_path / "x" / ".rep.lock").exists()


def test_single_file_out_is_one_file(tmp_path):
    out = tmp_path / "report.html"
    res = build_report("demo", images_dir(), out, **DEMO)
    assert res.index == out and out.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "xdg"] or \
        sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    text = out.read_text(encoding="utf-8")
    assert text.count("<h1") == 1
    blob = text.split('<script type="application/json" id="reportgen-report">')[1].split("</script>")[0]
    data = json.loads(blob)
    assert [s["id"] for s in data["sections"]] == ["card", "filters"]
    assert 'src="assets/' not in text and "data:image/png;base64," in text
    # a second build replaces it; a file that is not a report is never replaced
    build_report("demo", images_dir(), out, **DEMO)
    victim = tmp_path / "notes.html"
    victim.write_text("<p>mine</p>")
    with pytest.raises(OutputError, match="not a reportgen report"):
        build_report("demo", images_dir(), victim, **DEMO)
    assert victim.read_text() == "<p>mine</p>"


def test_cache_is_not_published(tmp_path, monkeypatch):
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    out = tmp_path / "rep"
    r1 = build_report(make_tiny_cnn(), _images(tmp_path), out, labels=CLASSES, preset="minimal", resize=None,
                      input_size=32, device="cpu", only=["card", "filters"])
    assert not (out / ".cache").exists() and not any(p.suffix == ".pkl" for p in out.rglob("*"))
    assert list((xdg / "reportgen").glob("*/*.pkl"))
    r2 = build_report(make_tiny_cnn(), _images(tmp_path), out, labels=CLASSES, preset="minimal", resize=None,
                      input_size=32, device="cpu", only=["card", "filters"])
    assert all(s.cached for s in r2.report.sections) and r1.out == r2.out
    own = tmp_path / "own-cache"
    build_report(make_tiny_cnn(), _images(tmp_path), out, labels=CLASSES, preset="minimal", resize=None,
                 input_size=32, device="cpu", only=["card"], cache_dir=own, cache_size="1K")
    assert own.is_dir() and sum(p.stat().st_size for p in own.glob("*/*.pkl")) <= 1024  # the cap holds


def _images(tmp_path: Path) -> Path:
    from conftest import write_image_folder

    d = tmp_path / "imgs"
    return d if d.is_dir() else write_image_folder(d, per_class=2)


def test_cache_commands(tmp_path):
    env = _env(tmp_path)
    d = tmp_path / "xdg" / "reportgen" / "ab"
    d.mkdir(parents=True)
    (d / ("ab" + "0" * 62 + ".pkl")).write_bytes(b"x" * 100)
    run = lambda *a: subprocess.run([sys.executable, "-m", "reportgen", "cache", *a], capture_output=True,  # noqa
                                    text=True, env=env, timeout=60)
    r = run("info")
    assert r.returncode == 0 and "Entries: 1" in r.stdout and str(tmp_path / "xdg" / "reportgen") in r.stdout
    r = run("clear")
    assert r.returncode == 0 and "Removed 1 entries" in r.stdout
    assert not list((tmp_path / "xdg" / "reportgen").glob("*/*.pkl"))


def test_full_disk_while_writing_keeps_the_previous_report(tmp_path, monkeypatch):
    out = tmp_path / "rep"
    build_report("demo", images_dir(), out, **DEMO)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    import reportgen.render.assets as assets

    calls = {"n": 0}
    real = Path.write_bytes

    def full(self, data):
        calls["n"] += 1
        if calls["n"] > 3:  # a few files get written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    def no_link(*a, **k):  # a full disk refuses new directory entries too (unchanged assets are hard-linked)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    monkeypatch.setattr(os, "link", no_link)
    with pytest.raises(OutputError, match="no space left on device"):
        build_report("demo", images_dir(), out, use_cache=False, **DEMO)
    monkeypatch.undo()
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert leftovers(tmp_path, "rep") == []
    assert assets  # patched through Path.write_bytes, which AssetStore uses
