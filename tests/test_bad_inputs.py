"""The bad-input corpus (image, file and command-line side), through the real CLI in-process.

Every kind gets: a clear one-line message (no traceback), the documented exit code (0 ok, 1 some section failed,
2 bad input), the rest of the report built where that makes sense, and nothing already on disk lost (the image
folder byte for byte, a previous report, a folder that is not a report).
"""

from __future__ import annotations

import errno
import hashlib
import re
import io
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from reportgen import demo as demo_model
from reportgen.cli import main
from reportgen.demo import images_dir

GOOD = sorted(images_dir().glob("*/*.png"))[:3]


@dataclass
class Case:
    """args: extra CLI arguments; code: expected exit code; message: regex in the one-line error (exit 2) or
    in the skipped-image reason / failed section (exit 0/1); used: images expected in the report."""

    setup: Callable[[Path, Path], list[str]]  # (images folder, tmp) -> extra args
    code: int
    message: str = ""
    used: int | None = None
    check: Callable[[Path, Path], None] | None = None
    patches: list = field(default_factory=list)


def _save(img: Image.Image, path: Path, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)


def _noise(w: int, h: int, mode: str = "RGB") -> Image.Image:
    a = np.random.default_rng(w * 31 + h).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(a).convert(mode)


def _write(name: str | bytes, data: bytes | Callable[[Path], None]):
    def setup(imgs: Path, tmp: Path) -> list[str]:
        p = Path(os.fsdecode(os.path.join(os.fsencode(imgs), os.fsencode(name))))
        if callable(data):
            data(p)
        else:
            p.write_bytes(data)
        return []

    return setup


def _truncated_jpeg(p: Path) -> None:
    buf = io.BytesIO()
    _noise(64, 64).save(buf, format="JPEG", quality=90)
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def _png_bomb(p: Path) -> None:
    """A tiny file that declares 30000 x 30000 pixels (900 MP)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", 30000, 30000) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    p.write_bytes(bytes(data))


def _img16(ext: str):
    def make(p: Path) -> None:
        a = (np.linspace(0, 65535, 48 * 48).reshape(48, 48)).astype(np.uint16)
        _save(Image.fromarray(a), p)

    return make


def _gif(p: Path) -> None:
    frames = [_noise(40, 40).convert("P"), _noise(41, 40).convert("P").resize((40, 40))]
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _symlink_loop(imgs: Path, tmp: Path) -> list[str]:
    os.symlink("loop_b.png", imgs / "loop_a.png")
    os.symlink("loop_a.png", imgs / "loop_b.png")
    os.symlink("..", imgs / "up")  # a folder link back up: no endless walk
    return []


def _unreadable(imgs: Path, tmp: Path) -> list[str]:
    p = imgs / "secret.png"
    _save(_noise(30, 30), p)
    os.chmod(p, 0)
    return []


def _only_bad(imgs: Path, tmp: Path) -> list[str]:
    for p in list(imgs.iterdir()):
        p.unlink()
    (imgs / "a.png").write_bytes(b"")
    (imgs / "b.jpg").write_bytes(b"not a jpeg at all")
    (imgs / "c.gif").write_bytes(b"GIF89a")
    return []


def _single_file(imgs: Path, tmp: Path) -> list[str]:
    return ["--images", str(next(iter(sorted(imgs.glob("*.png")))))]


def _glob(imgs: Path, tmp: Path) -> list[str]:
    _save(_noise(30, 30), imgs / "other.jpg")
    return ["--images", str(imgs / "*.png")]  # quoted: the shell did not expand it


def _labels(lines: list[str]):
    def setup(imgs: Path, tmp: Path) -> list[str]:
        f = tmp / "labels.txt"
        f.write_text("\n".join(lines) + "\n")
        return ["--labels", str(f)]

    return setup


HOSTILE = '<img src=x onerror=alert(1)>&"\''


def _no_raw_html(text: str):
    def check(out: Path, tmp: Path) -> None:
        for page in out.rglob("*.html"):
            assert text not in page.read_text(encoding="utf-8"), f"unescaped {text!r} in {page}"

    return check


def _shows(text: str):
    def check(out: Path, tmp: Path) -> None:
        assert any(text in p.read_text(encoding="utf-8") for p in out.rglob("*.html")), f"{text!r} not shown"

    return check


def _out_into_images(imgs: Path, tmp: Path) -> list[str]:
    return ["--out", str(imgs / "report")]


def _out_not_a_report(imgs: Path, tmp: Path) -> list[str]:
    victim = tmp / "thesis"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    return ["--out", str(victim)]


def _thesis_intact(out: Path, tmp: Path) -> None:
    assert (tmp / "thesis" / "thesis.tex").read_text() == "years of work"


def _previous_report(imgs: Path, tmp: Path) -> list[str]:
    """Build once (the previous report), then make the disk full in the middle of writing the next one."""
    r = _cli(["--out", str(tmp / "out")], imgs)
    assert r.exit_code == 0, r.output
    (tmp / "before.json").write_text(json.dumps(_tree(tmp / "out")))
    calls = {"n": 0}
    real = Path.write_bytes

    def full(self, data):
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    def no_link(*a, **k):  # a full disk refuses new directory entries too (unchanged assets are hard-linked)
        raise OSError(errno.ENOSPC, "No space left on device")

    _previous_report.patch = [(Path, "write_bytes", full), (os, "link", no_link)]
    return ["--no-cache"]


def _previous_intact(out: Path, tmp: Path) -> None:
    assert _tree(tmp / "out") == json.loads((tmp / "before.json").read_text())
    assert not [p for p in tmp.iterdir() if p.name.startswith(".out.")]


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


FACTORY_CALLS: list[int] = []
_BUILD_DEMO = demo_model.build_model


def _recording_factory():
    FACTORY_CALLS.append(1)
    return _BUILD_DEMO()


def _option(*args: str):
    """A bad option value (``--set`` or a TOML file): refused before the model factory runs."""

    def setup(imgs: Path, tmp: Path) -> list[str]:
        FACTORY_CALLS.clear()
        extra = []
        for a in args:
            if a.startswith("[techniques."):  # a TOML file's text
                (tmp / "bad.toml").write_text(a.replace("; ", "\n"))
                extra += ["--config", str(tmp / "bad.toml")]
            else:
                extra += ["--set", a]
        return extra

    setup.patch = ("reportgen.demo.build_model", _recording_factory)
    return setup


def _factory_not_called(out: Path, tmp: Path) -> None:
    assert FACTORY_CALLS == [], "the model was loaded before the bad option was refused"


def _factory_called(out: Path, tmp: Path) -> None:
    assert FACTORY_CALLS == [1]


CASES: dict[str, Case] = {
    "truncated JPEG": Case(_write("cut.jpg", _truncated_jpeg), 0, "truncated", used=3),
    "zero-byte file": Case(_write("empty.png", b""), 0, "empty file", used=3),
    "PNG decompression bomb": Case(_write("bomb.png", _png_bomb), 0, "too large", used=3),
    "16-bit PNG": Case(_write("deep.png", _img16("png")), 0, used=4),
    "16-bit TIFF": Case(_write("deep.tif", _img16("tif")), 0, used=4),
    "CMYK JPEG": Case(_write("cmyk.jpg", lambda p: _save(_noise(40, 40, "CMYK"), p, format="JPEG")), 0, used=4),
    "palette PNG": Case(_write("pal.png", lambda p: _save(_noise(40, 40).convert("P"), p)), 0, used=4),
    "RGBA PNG": Case(_write("alpha.png", lambda p: _save(_noise(40, 40, "RGBA"), p)), 0, used=4),
    "1x1 image": Case(_write("dot.png", lambda p: _save(Image.new("RGB", (1, 1), (200, 10, 10)), p)), 0, used=4),
    "10000x200 panorama": Case(_write("pano.jpg", lambda p: _save(_noise(10000, 200), p, quality=70)), 0, used=4),
    "animated GIF": Case(_write("anim.gif", _gif), 0, used=4),
    "symlink loop": Case(_symlink_loop, 0, "symbolic links", used=3),
    "unreadable file": Case(_unreadable, 0, "Permission denied", used=3),
    "non-UTF-8 file name": Case(_write(b"caf\xe9.png", lambda p: _save(_noise(30, 30), p)), 0, used=4,
                                check=_shows("caf\\xe9.png")),
    "HTML-hostile file name": Case(_write(HOSTILE.replace("/", "") + ".png", lambda p: _save(_noise(30, 30), p)),
                                   0, used=4, check=_no_raw_html("<img src=x onerror")),
    "folder of only bad images": Case(_only_bad, 2, r"none of the 3 image files .* could be read"),
    "images as a single file": Case(_single_file, 0, used=1),
    "images as a glob": Case(_glob, 0, used=3),
    "missing image folder": Case(lambda i, t: ["--images", str(t / "nowhere")], 2, "does not exist"),
    "folder without images": Case(lambda i, t: [p.unlink() for p in i.iterdir()] and (i / "a.txt").write_text("x")
                                  and ["--images", str(i)], 2, "no images found"),
    "labels: too few lines": Case(_labels([f"c{k}" for k in range(9)]), 2, "9 class names .* outputs 10"),
    "labels: too many lines": Case(_labels([f"c{k}" for k in range(11)]), 2, "11 class names .* outputs 10"),
    "labels with HTML": Case(_labels([HOSTILE] + [f"c{k}" for k in range(9)]), 0, used=3,
                             check=_no_raw_html("<img src=x onerror")),
    "layer-name typo": Case(lambda i, t: ["--layer", "feature.8"], 2, r"feature\.8.*Close names: features\.8"),
    "non-conv layer for filters": Case(lambda i, t: ["--only", "card,filters", "--set", "filters.layer=classifier"],
                                       1, "not a Conv2d", used=3),
    "--out inside --images": Case(_out_into_images, 2, "inside the image folder"),
    "--out is not a report": Case(_out_not_a_report, 2, "not a reportgen report", check=_thesis_intact),
    "out of disk space while writing": Case(_previous_report, 2, "no space left on device", check=_previous_intact),
    "unknown technique id": Case(lambda i, t: ["--only", "card,salency"], 2, "salency"),
    "malformed --set": Case(lambda i, t: ["--set", "filters"], 2, "technique.option=value"),
    "unreadable --cache-size": Case(lambda i, t: ["--cache-size", "lots"], 2, "cache-size"),
    # option values, checked against the options dataclasses' types before the model is loaded
    "unknown option choice": Case(_option("integrated_gradients.baseline=blu"), 2,
                                  r"integrated_gradients\.baseline: 'blu' .*did you mean blur\?.*"
                                  r"allowed: black \| grey \| blur", check=_factory_not_called),
    "negative size": Case(_option("occlusion.window=-3"), 2, r"occlusion\.window: '-3' is out of range; "
                          r"allowed: int >= 1 or None", check=_factory_not_called),
    "zero count": Case(_option("saliency.max_images=0"), 2, r"saliency\.max_images: '0' is out of range; "
                       r"allowed: int >= 1", check=_factory_not_called),
    "probability above 1": Case(_option("segmentation.fg_quantile=1.5"), 2, r"fg_quantile: '1\.5' .*<= 1",
                                check=_factory_not_called),
    "float where int": Case(_option("occlusion.stride=2.5"), 2, r"occlusion\.stride: expected an integer, "
                            r"got '2\.5'", check=_factory_not_called),
    "unknown option name": Case(_option("occlusion.windw=8"), 2, r"unknown option 'windw' \(did you mean window",
                                check=_factory_not_called),
    "wrong section id in --set": Case(_option("occlusoin.window=8"), 2,
                                      r"unknown technique 'occlusoin'\. Did you mean occlusion",
                                      check=_factory_not_called),
    "bad choice in a TOML file": Case(_option('[techniques.occlusion]; fill = "gray"'), 2,
                                      r"occlusion\.fill: 'gray' .*did you mean grey", check=_factory_not_called),
    "good option values (control)": Case(_option("occlusion.window=8", "integrated_gradients.baseline=grey"), 0,
                                         used=3, check=_factory_called),
}


def _cli(extra: list[str], imgs: Path) -> "object":
    args = ["build", "--model", "demo", "--images", str(imgs), "--preset", "minimal", "--only", "card",
            "--device", "cpu"]
    # later options win: a case may override --images, --out or --only
    return CliRunner().invoke(main, args + extra, catch_exceptions=False)


def test_corpus_has_enough_kinds():
    assert len(CASES) >= 25


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_input(kind, tmp_path, monkeypatch):
    case = CASES[kind]
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for k, src in enumerate(GOOD):
        (imgs / f"good_{k}.png").write_bytes(src.read_bytes())
    unreadable_as_root = kind == "unreadable file" and os.geteuid() == 0
    extra = case.setup(imgs, tmp_path)
    before = _tree(imgs) if os.geteuid() == 0 or kind != "unreadable file" else None
    if unreadable_as_root:  # root reads anything: simulate what chmod 000 does for everyone else
        real = Path.read_bytes

        def denied(self):
            if self.name == "secret.png":
                raise PermissionError(errno.EACCES, "Permission denied", str(self))
            return real(self)

        monkeypatch.setattr(Path, "read_bytes", denied)
    patch = getattr(case.setup, "patch", None)
    for p in [patch] if isinstance(patch, tuple) else patch or []:
        monkeypatch.setattr(*p)
    out = tmp_path / "out"
    if "--out" not in extra:
        extra = ["--out", str(out)] + extra
    result = _cli(extra, imgs)
    monkeypatch.undo()
    if kind == "unreadable file":
        os.chmod(imgs / "secret.png", 0o644)
    stderr = result.stderr
    assert result.exit_code == case.code, f"{kind}: exit {result.exit_code}\n{result.output}"
    assert "Traceback" not in result.output
    if case.code == 2:
        errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1, stderr
        assert re.search(case.message, errors[0]), f"{kind}: {errors[0]}"
        if "--out" in extra and extra[extra.index("--out") + 1] == str(out):
            assert not out.exists() or kind == "out of disk space while writing"
    else:
        data = json.loads((out / "report.json").read_text(encoding="utf-8"))
        if case.used is not None:
            assert data["images"]["count"] == case.used, data["images"]
        if case.message and case.code == 0:
            reasons = " | ".join(s["reason"] for s in data["skipped_images"])
            assert re.search(case.message, reasons), f"{kind}: skipped reasons: {reasons}"
            assert all("\n" not in s["reason"] for s in data["skipped_images"])
        if case.code == 1:
            failed = [s for s in data["sections"] if s["error"]]
            assert failed and re.search(case.message, failed[0]["error"])
            assert any(not s["error"] for s in data["sections"])  # the rest of the report is built
            assert "1 section failed" in stderr
    if before is not None:
        assert _tree(imgs) == before, "the image folder changed"
    if case.check:
        case.check(out, tmp_path)
