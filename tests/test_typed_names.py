"""The names a report is made of are typed values written once (issue 29.5): note kinds, tones, placements, run
kinds, presets, colour schemes and device names are ``Literal`` types, and everything that lists them reads them."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from click.testing import CliRunner

from reportgen import options, registry, report
from reportgen.cli import main
from reportgen.render import html, text, themes


def _field_type(cls, name: str):
    return typing.get_type_hints(cls)[name]


@pytest.mark.parametrize("cls, name, alias", [
    (report.Note, "kind", report.NoteKind), (report.GridItem, "tone", report.Tone),
    (report.Section, "placement", report.Placement), (report.RunInfo, "kind", report.RunKind | None),
])
def test_report_fields_are_literals(cls, name, alias):
    assert _field_type(cls, name) == alias
    for f in dataclasses.fields(cls):
        if f.name == name:
            assert f.default in typing.get_args(alias) or f.default is None


def test_renderer_reads_the_names():
    assert set(html.NOTE_KINDS) == set(typing.get_args(report.NoteKind))
    assert {t for t in typing.get_args(report.Tone) if t} <= text.TONES
    assert set(report.PLACEMENTS) == set(typing.get_args(report.Placement))


def test_presets_written_once():
    assert registry.PRESETS == typing.get_args(registry.Preset)
    from reportgen.config import Config

    assert _field_type(Config, "preset") == registry.Preset


def test_roles_written_once_and_read_by_the_budget():
    from reportgen.planning.plan import LEAVE_OUT_ORDER

    assert registry.ROLES == typing.get_args(registry.Role)
    assert set(LEAVE_OUT_ORDER) < set(registry.ROLES)  # the overview is never left out
    roles = {t.id: t.role for t in registry.all_techniques()}
    assert roles["card"] == "overview" and set(roles.values()) == set(registry.ROLES)
    with pytest.raises(ValueError, match="role must be one of"):
        registry.technique("not_registered_role", "x", role="decoration")  # type: ignore[arg-type]


def test_color_schemes_are_the_builtin_themes():
    assert themes.COLOR_SCHEMES == typing.get_args(themes.ColorScheme)
    assert set(themes.COLOR_SCHEMES) <= set(themes.available_themes())
    assert themes.load_theme(themes.DEFAULT_THEME).color_scheme == themes.DEFAULT_THEME


def test_device_help_names_every_device():
    assert options.DEVICE_NAMES == typing.get_args(options.DeviceName)
    out = CliRunner().invoke(main, ["build", "--help"]).output
    assert all(n in out for n in options.DEVICE_NAMES)


def test_every_device_name_resolves_or_says_why():
    from reportgen.device import resolve_device
    from reportgen.errors import ReportgenError

    for name in options.DEVICE_NAMES:
        try:
            assert resolve_device(name).type in ("cpu", "cuda", "mps")
        except ReportgenError as e:  # cuda / mps on a machine without them
            assert name in str(e)
