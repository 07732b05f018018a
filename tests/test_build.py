"""End-to-end builds on a tiny model: atomic output, failures isolated, XSS, hooks, cache, report.json."""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import CLASSES, make_tiny_cnn, write_image_folder
from reportgen import registry
from reportgen.build import build_report
from reportgen.errors import ImageSetError, LayerError, ModelError, OutputError

TINY = dict(preset="minimal", resize=None, input_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, device="cpu")


@pytest.fixture()
def tiny_build(tmp_path, image_dir):
    def _build(out=None, **kw):
        args = dict(TINY)
        args.update(kw)
        return build_report(make_tiny_cnn(), image_dir, out or tmp_path / "report", labels=CLASSES, **args)

    return _build


def test_build_writes_a_complete_report(tiny_build, tmp_path):
    res = tiny_build(only=["card", "filters", "activations"])
    out = res.out
    assert (out / "index.html").is_file()
    data = json.loads((out / "report.json").read_text())
    assert [s["id"] for s in data["sections"]] == ["card", "filters", "activations"]
    for s in data["sections"]:
        assert s["error"] is None and s["wall_time_s"] >= 0
        for f in s["figures"]:
            assert (out / f).is_file()
    assert data["preprocessing"]["input_size"] == 32
    assert "torch" in data["versions"] and data["device"].startswith("cpu")
    # no leftovers beside the output
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "report") == []


def test_a_failing_technique_is_isolated(tiny_build, monkeypatch):
    @registry.technique("zz_boom", "Boom", references=[], order=999)
    def boom(ctx, opts):
        raise RuntimeError("kaboom in technique")

    try:
        res = tiny_build(only=["card", "zz_boom"])
        assert not res.ok
        html = (res.out / "sections" / "zz_boom.html").read_text() if (res.out / "sections" / "zz_boom.html").exists() \
            else (res.out / "index.html").read_text()
        assert "kaboom in technique" in html
        assert (res.out / "index.html").is_file()
        with pytest.raises(RuntimeError, match="kaboom"):
            tiny_build(only=["zz_boom"], strict=True)
    finally:
        registry.unregister("zz_boom")


def test_xss_in_class_and_file_names_is_escaped(tmp_path):
    evil = "<img src=x onerror=alert(1)>"
    imgs = tmp_path / "imgs"
    write_image_folder(imgs, per_class=1)
    (imgs / "red" / "red_0.png").rename(imgs / "red" / f"{evil}.png")
    names = [evil, "green", "blue", "white"]
    res = build_report(make_tiny_cnn(), imgs, tmp_path / "out", labels=names, only=["card", "activations"], **TINY)
    for page in res.out.rglob("*.html"):
        text = page.read_text()
        assert evil not in text, f"unescaped user data in {page}"
    assert "&lt;img src=x onerror=alert(1)&gt;" in (res.out / "index.html").read_text() + "".join(
        p.read_text() for p in res.out.rglob("*.html"))


def test_pages_load_nothing_from_the_network(tiny_build):
    res = tiny_build(only=["card", "filters"])
    for page in res.out.rglob("*.html"):
        text = page.read_text()
        assert "Content-Security-Policy" in text
        assert "default-src 'none'" in html.unescape(text)
        for m in re.finditer(r'(?:src|href)="([^"]+)"', text):
            url = m.group(1)
            if url.startswith(("http://", "https://", "//")):
                # only plain links to papers may point outside
                tag_start = text.rfind("<", 0, m.start())
                assert text[tag_start:tag_start + 2] == "<a", f"network load in {page}: {url}"


def test_single_file_inlines_everything(tiny_build, tmp_path):
    res = tiny_build(out=tmp_path / "single", only=["card", "filters"], single_file=True)
    html = (res.out / "index.html").read_text()
    assert "data:image/png;base64," in html
    assert 'src="assets/' not in html and "stylesheet" not in html.lower() or "assets/" not in html


def test_previous_report_survives_a_crash(tiny_build, tmp_path, monkeypatch):
    res = tiny_build(only=["card"])
    before = (res.out / "index.html").read_bytes()

    import reportgen.build as b

    def crash(*a, **k):
        raise KeyboardInterrupt("simulated Ctrl-C during rendering")

    monkeypatch.setattr("reportgen.render.render_report", crash)
    with pytest.raises(KeyboardInterrupt):
        tiny_build(only=["card", "filters"])
    assert (res.out / "index.html").read_bytes() == before
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".report")]
    assert leftovers == [], f"temporary folders left behind: {leftovers}"
    assert b  # keep import


def test_killed_build_leaves_previous_report(tmp_path, image_dir):
    """A real SIGTERM to a running CLI build: the old report stays, no temp folder remains."""
    out = tmp_path / "rep"
    script = tmp_path / "run.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from conftest import make_tiny_cnn, CLASSES\n"
        "from reportgen import registry\n"
        "from reportgen.report import Section\n"
        "from reportgen.build import build_report\n"
        "@registry.technique('zz_slow', 'Slow', order=999)\n"
        "def slow(ctx, opts):\n"
        "    print('STARTED', flush=True); time.sleep(60); return Section('zz_slow', 'Slow')\n"
        f"build_report(make_tiny_cnn(), {str(image_dir)!r}, {str(out)!r}, labels=CLASSES, only=sys.argv[1:],"
        " preset='minimal', resize=None, input_size=32, device='cpu')\n"
    )
    env = dict(os.environ, MPLBACKEND="Agg")
    subprocess.run([sys.executable, str(script), "card"], check=True, env=env, timeout=120)
    before = (out / "index.html").read_bytes()
    p = subprocess.Popen([sys.executable, str(script), "card", "zz_slow"], stdout=subprocess.PIPE, env=env, text=True)
    assert "STARTED" in p.stdout.readline()
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)
    assert p.returncode != 0
    assert (out / "index.html").read_bytes() == before
    assert [x.name for x in tmp_path.iterdir() if ".tmp-" in x.name] == []


def test_refuses_to_replace_a_folder_that_is_not_a_report(tiny_build, tmp_path):
    victim = tmp_path / "precious"
    victim.mkdir()
    (victim / "thesis.tex").write_text("do not delete")
    with pytest.raises(OutputError, match="not a reportgen report"):
        tiny_build(out=victim)
    assert (victim / "thesis.tex").read_text() == "do not delete"


def test_second_build_reuses_the_cache(tiny_build, tmp_path):
    r1 = tiny_build(only=["card", "filters", "activations"])
    r2 = tiny_build(only=["card", "filters", "activations"], theme="dark")
    assert all(s.cached for s in r2.report.sections)
    data = json.loads((r2.out / "report.json").read_text())
    assert data["cache"]["hits"] >= 3 and data["theme"] == "dark"
    assert r1.out == r2.out
    r3 = tiny_build(only=["card"], seed=5)  # a different seed is a different result
    assert not r3.report.sections[0].cached


def test_clear_errors_for_bad_input(tmp_path, image_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageSetError):
        build_report(make_tiny_cnn(), empty, tmp_path / "o", **TINY)
    with pytest.raises(LayerError, match="Close names: features"):
        build_report(make_tiny_cnn(), image_dir, tmp_path / "o", layer="feature.3", only=["activations"],
                     strict=True, **TINY)

    class Backbone(torch.nn.Module):  # returns feature maps, not class scores
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(ModelError, match="not a classifier"):
        build_report(Backbone(), image_dir, tmp_path / "o", **TINY)
    with pytest.raises(ModelError, match="class names"):
        build_report(make_tiny_cnn(), image_dir, tmp_path / "o", labels=["a", "b"], **TINY)
    assert not (tmp_path / "o").exists()


def test_out_of_memory_is_reported_in_the_section(tiny_build):
    @registry.technique("zz_oom", "OOM", order=999)
    def oom(ctx, opts):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    try:
        res = tiny_build(only=["zz_oom"])
        err = res.report.sections[0].error
        assert "ran out of memory" in err and "--batch-size" in err
    finally:
        registry.unregister("zz_oom")
