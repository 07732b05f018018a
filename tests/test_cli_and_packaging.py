"""The command line, the generated docs, and a wheel that works from another folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from reportgen import registry
from reportgen.cli import main

ROOT = Path(__file__).resolve().parents[1]

FACTORY = '''
import sys
sys.path.insert(0, {tests!r})
from conftest import make_tiny_cnn

def build():
    return make_tiny_cnn()
'''


@pytest.fixture()
def factory_file(tmp_path):
    p = tmp_path / "net.py"
    p.write_text(FACTORY.format(tests=str(ROOT / "tests")))
    return p


def test_help_is_complete():
    r = CliRunner().invoke(main, ["build", "--help"])
    assert r.exit_code == 0
    for flag in ["--model", "--weights", "--images", "--out", "--labels", "--preset", "--config", "--only", "--skip",
                 "--layer", "--device", "--theme", "--single-file", "--input-size", "--resize", "--mean", "--std",
                 "--max-images", "--seed", "--strict", "--trust-weights"]:
        assert flag in r.output, flag
    for cmd in ["layers", "techniques", "demo"]:
        assert CliRunner().invoke(main, [cmd, "--help"]).exit_code == 0


def test_techniques_lists_the_registry():
    r = CliRunner().invoke(main, ["techniques"])
    assert r.exit_code == 0
    for t in registry.all_techniques():
        assert t.id in r.output


def test_docs_are_generated_from_the_registry():
    from reportgen.docs import techniques_markdown

    doc = ROOT / "docs" / "techniques.md"
    assert doc.read_text() == techniques_markdown(), (
        "docs/techniques.md is stale: run `python -m reportgen techniques --markdown > docs/techniques.md`")


def test_layers_command(factory_file):
    r = CliRunner().invoke(main, ["layers", "--model", f"{factory_file}:build", "--input-size", "32"])
    assert r.exit_code == 0, r.output
    assert "features.0" in r.output and "Conv2d" in r.output and "8x32x32" in r.output


def test_build_command_end_to_end(factory_file, image_dir, tmp_path):
    out = tmp_path / "rep"
    r = CliRunner().invoke(main, [
        "build", "--model", f"{factory_file}:build", "--images", str(image_dir), "--out", str(out),
        "--preset", "minimal", "--only", "card,filters", "--input-size", "32", "--resize", "32",
        "--device", "cpu", "--theme", "dark"])
    assert r.exit_code == 0, r.output
    assert "Report written to" in r.output and "index.html" in r.output
    assert json.loads((out / "report.json").read_text())["theme"] == "dark"


def test_build_command_bad_layer_is_a_clear_error(factory_file, image_dir, tmp_path):
    r = CliRunner().invoke(main, [
        "build", "--model", f"{factory_file}:build", "--images", str(image_dir), "--out", str(tmp_path / "o"),
        "--preset", "minimal", "--only", "activations", "--layer", "features.99", "--input-size", "32",
        "--device", "cpu"])
    assert r.exit_code == 2  # a --layer typo is bad input: nothing is built, close names are suggested
    assert "no layer named 'features.99'" in (r.output + (r.stderr if r.stderr_bytes else ""))
    assert "Traceback" not in r.output and not (tmp_path / "o").exists()


def test_build_command_empty_folder(factory_file, tmp_path):
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(main, ["build", "--model", f"{factory_file}:build", "--images", str(tmp_path / "empty"),
                                  "--out", str(tmp_path / "o"), "--device", "cpu", "--input-size", "32"])
    assert r.exit_code == 2
    assert "error: no images found" in r.output and "Traceback" not in r.output


def test_wheel_carries_templates_and_themes_and_works_elsewhere(tmp_path, factory_file, image_dir):
    """`pip install .` (not editable) must work from any folder: templates and themes are in the wheel."""
    wheel_dir = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheel_dir), str(ROOT)], check=True, capture_output=True)
    (whl,) = wheel_dir.glob("reportgen-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    assert any(n.startswith("reportgen/_data/templates/") for n in names)
    assert any(n.startswith("reportgen/_data/themes/dark/") for n in names)
    assert any(n.startswith("reportgen/demo/images/") for n in names)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(whl)],
                   check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import reportgen, reportgen._resources as r, sys\n"
        f"assert reportgen.__file__.startswith({str(target)!r}), reportgen.__file__\n"
        f"assert str(r.templates_dir()).startswith({str(target)!r})\n"
        "from reportgen.cli import main\n"
        f"sys.argv = ['reportgen', 'build', '--model', {f'{factory_file}:build'!r}, '--images', {str(image_dir)!r},"
        " '--out', 'rep', '--preset', 'minimal', '--only', 'card,filters', '--input-size', '32', '--device', 'cpu']\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    env["MPLBACKEND"] = "Agg"
    r = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (elsewhere / "rep" / "index.html").is_file()


def test_example_report_is_current_with_the_registry():
    """example_reports/demo is regenerated whenever sections change (`python3 dev.py demo --out
    example_reports/demo --no-cache`): it must hold a section for every registered technique of its preset (vargrad
    runs in the full preset only), none failed."""
    data = json.loads((ROOT / "example_reports" / "demo" / "report.json").read_text())
    preset = data["config"]["preset"]
    assert [s["id"] for s in data["sections"]] == [t.id for t in registry.all_techniques() if preset in t.runs_in]
    assert all(s["error"] is None for s in data["sections"])
    for s in data["sections"]:
        assert (ROOT / "example_reports" / "demo" / s["page"]).is_file()


@pytest.mark.parametrize("name", ["demo", "mobilenet_v2"])
def test_example_reports_are_whole_and_small(name):
    """Every picture of a shipped example rendered (no placeholder), every page and asset present, under 20 MB
    (the 10-photo MobileNetV2 card: 18.7 MB with 31 sections, the explorer, unit and image pages; 14.5 MB with 27)."""
    root = ROOT / "example_reports" / name
    data = json.loads((root / "report.json").read_text())
    assert all(s["error"] is None for s in data["sections"])
    pages = [root / "index.html"] + [root / s["page"] for s in data["sections"]]
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert "could not be rendered" not in html, page
        for src in re.findall(r'src="(\.\./)?(assets/[0-9a-f]+\.(?:png|jpg|svg))"', html):
            assert (root / src[1]).is_file(), (page, src)
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 20e6


def test_photographs_become_jpeg_and_exact_pictures_stay_png():
    import io

    import numpy as np
    from PIL import Image

    from reportgen.render.assets import encode_array

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:160, 0:160]
    photo = np.stack([(128 + 60 * np.sin(xx / 9.0 + c) + rng.normal(0, 12, xx.shape)).clip(0, 255)
                      for c in range(3)], -1).astype(np.uint8)
    data, mime = encode_array(photo)
    assert mime == "image/jpeg"
    back = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    assert np.abs(back - photo).mean() < 8  # quality 92: close to the original (its i.i.d. noise, sd 12, suffers most)
    assert encode_array(photo, pixelated=True)[1] == "image/png"  # exact pixels where they matter
    assert encode_array(photo[:64, :64])[1] == "image/png"  # small pictures stay PNG
    flat = np.zeros((160, 160, 3), np.uint8)
    flat[40:80, 40:80] = 255
    assert encode_array(flat)[1] == "image/png"  # graphics: PNG is already smaller
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    assert encode_array(rgba)[1] == "image/png"  # transparency needs PNG
