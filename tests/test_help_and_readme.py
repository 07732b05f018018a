"""The README and --help name every model form and command there is, and `reportgen techniques` says per technique
what the presets change (issue 31, item 7)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from click.testing import CliRunner

from reportgen import registry
from reportgen.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def _help(*args: str) -> str:
    r = CliRunner().invoke(main, [*args, "--help"])
    assert r.exit_code == 0, r.output
    return " ".join(r.output.split())


def test_model_help_names_timm_and_hugging_face_folders():
    for cmd in ("build", "compare", "layers"):
        text = _help(cmd)
        assert "timm:NAME" in text and "Hugging Face" in text, cmd


def test_theme_help_says_theme_folders_work():
    for cmd in ("build", "demo", "render", "site"):
        text = _help(cmd)
        theme = text[text.index("--theme"):][:300]
        assert "folder" in theme, (cmd, theme)


def test_main_help_lists_site_and_compare():
    text = _help()
    assert "reportgen site" in text and "reportgen compare" in text


def test_readme_names_timm_hugging_face_and_site():
    text = README.read_text(encoding="utf-8")
    table = text[text.index("`--model` accepts:"):text.index("`--weights` is loaded")]
    assert "`timm:" in table and "Hugging Face" in table
    assert "reportgen site " in text


def _preset_differences(info) -> str:
    """What the presets change for this technique, written out independently of the CLI."""
    fields = [f.name for f in dataclasses.fields(info.options)]
    vals = {p: info.default_options(p) for p in info.runs_in}
    changed = [f for f in fields if len({repr(getattr(v, f)) for v in vals.values()}) > 1]
    return ", ".join(changed)


def test_techniques_lists_what_each_preset_changes():
    r = CliRunner().invoke(main, ["techniques"])
    assert r.exit_code == 0, r.output
    out = "\n" + r.output
    preset_lines = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("presets")]
    assert len(set(preset_lines)) > 1, preset_lines  # not the same words for every technique
    for info in registry.all_techniques():
        block = out[out.index(f"\n{info.id} ") + 1:].splitlines()
        rest = block[1:]
        lines = rest[:next((k for k, ln in enumerate(rest) if not ln.startswith(" ")), len(rest))]
        line = " ".join(" ".join(lines).split("papers:")[0].split())
        changed = _preset_differences(info)
        if changed:
            for name in changed.split(", "):
                assert re.search(rf"\b{name}\b", line), (info.id, name, line)
        else:
            assert "the same options in every preset" in line, (info.id, line)
