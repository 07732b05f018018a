"""Checks every registered technique must pass, one test case per technique (xplique's pattern): a failure names
its technique, and ``-k saliency`` selects saliency's cases."""

from __future__ import annotations

import dataclasses
import types
import typing

import pytest

from reportgen import registry
from reportgen.config import ConfigError, field_types, make_config

TECHNIQUES = [t.id for t in registry.all_techniques()]


def _numeric(tp: typing.Any) -> bool:
    """Whether an option's type holds numbers (int or float, optional, or a list of them); bools are not."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _numeric(args[0])
    if origin in (typing.Union, types.UnionType):
        return any(_numeric(a) for a in args if a is not type(None))
    if origin in (list, tuple):
        return bool(args) and _numeric(args[0])
    return tp in (int, float)


def _bounded(tp: typing.Any) -> bool:
    """Whether every number in the type carries a ``registry.Range`` (list items included)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return any(isinstance(m, registry.Range) for m in tp.__metadata__) or _bounded(args[0])
    if origin in (typing.Union, types.UnionType):
        return all(_bounded(a) for a in args if a is not type(None) and _numeric(a))
    if origin in (list, tuple):
        return _bounded(args[0])
    return not _numeric(tp)


def _numeric_fields(tid: str) -> dict[str, typing.Any]:
    cls = registry.get(tid).options
    return {n: tp for n, tp in field_types(cls).items() if _numeric(tp)}


@pytest.mark.parametrize("tid", TECHNIQUES)
def test_every_numeric_option_is_bounded(tid):
    loose = [n for n, tp in _numeric_fields(tid).items() if not _bounded(tp)]
    assert not loose, f"{tid}: numeric options without a Range: {loose}"


def _below(tp: typing.Any) -> typing.Any:
    """A value the option's first lower bound refuses (None when the type has no lower bound)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        for m in tp.__metadata__:
            if isinstance(m, registry.Range) and (m.ge is not None or m.gt is not None):
                low = m.ge - 1 if m.ge is not None else m.gt
                return int(low) if _numeric(args[0]) and args[0] is int else low
        return _below(args[0])
    if origin in (typing.Union, types.UnionType):
        return next((v for a in args if a is not type(None) for v in [_below(a)] if v is not None), None)
    if origin in (list, tuple):
        v = _below(args[0])
        return None if v is None else [v]
    return None


@pytest.mark.parametrize("tid", TECHNIQUES)
def test_out_of_range_options_are_refused_when_the_config_is_made(tid):
    """``--set faithfulness.steps=0`` must fail before any work, naming the option, not inside the section."""
    cases = {n: v for n, tp in _numeric_fields(tid).items() if (v := _below(tp)) is not None}
    if not cases:
        pytest.skip(f"{tid} has no numeric option with a lower bound")
    for name, value in cases.items():
        with pytest.raises(ConfigError, match=name):
            make_config("minimal", technique_overrides={tid: {name: value}})


@pytest.mark.parametrize("tid", TECHNIQUES)
def test_preset_values_are_admitted(tid):
    for preset in registry.PRESETS:
        opts = make_config(preset).options(tid)
        assert dataclasses.is_dataclass(opts)


@pytest.mark.parametrize("tid", TECHNIQUES)
def test_declares_its_results(tid):
    """Every technique declares the ``report.json`` results it writes (``docs/results.md`` is generated from it)."""
    from reportgen.results_schema import declared

    assert declared(tid), f"{tid} declares no RESULTS"
