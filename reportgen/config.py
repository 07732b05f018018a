"""One typed configuration with named presets, loadable from TOML, overridable from the CLI.

Resolution order (later wins): dataclass defaults -> preset -> TOML file -> CLI flags / ``--set``.

Every value, from any of them or set in Python, is checked against its field's type by :func:`check_config`
before any work: ``Literal[...]`` choices and ``Annotated[int, registry.Range(ge=1)]`` bounds (see
docs/adding-a-technique.md). A bad value is a :class:`ConfigError` (exit 2) naming the option, the value and
what is allowed, with a close match for a mistyped choice.

TOML layout::

    preset = "standard"
    only = ["card", "saliency"]      # optional
    skip = ["embedding"]             # optional

    [general]
    batch_size = 16
    layer = "features.12"

    [techniques.occlusion]
    window = 32
    stride = 16
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from . import registry
from .registry import Preset
from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class GeneralOptions:
    """Options shared by every technique."""

    batch_size: Annotated[int, registry.Range(ge=1)] = 32
    """Images per forward/backward batch."""
    max_images: Annotated[int, registry.Range(ge=1)] | None = None
    """Use at most this many images of the set (None: all)."""
    seed: int = 0
    """Seed for every random choice (sampling, t-SNE, noise), so reports are reproducible."""
    layer: str | None = None
    """Dotted name of the layer that layer-level techniques inspect (None: the last convolution)."""
    classes: list[Annotated[int, registry.Range(ge=0)]] | None = None
    """Class indices for class-level techniques (None: the most predicted classes)."""
    num_workers: Annotated[int, registry.Range(ge=0)] = 0
    """DataLoader worker processes that decode and resize images ahead of the feature pass (0: in this process)."""
    style_images: str | None = None
    """Folder of style images for texture/gram/style sections (None: the paintings shipped with reportgen)."""
    texture_images: str | None = None
    """Folder of texture images for the texture and gram sections (None: the textures shipped with reportgen)."""
    reference_images: str | None = None
    """Folder of reference images (e.g. the training set) the data_issues section checks for copies (leakage)."""
    threads: Annotated[int, registry.Range(ge=0)] = 0
    """torch CPU threads (0: the CPUs idle now, sampled from /proc/stat over 150 ms, at least 1; an
    OMP_NUM_THREADS in the environment wins; see reportgen.device)."""
    budget: Annotated[float, registry.Range(gt=0)] | None = None
    """Seconds the sections may take (``--budget 5m``): the most expensive sections' options are lowered to fit the
    estimate, never below the minimal preset (see reportgen.planning). None: no budget, nothing changes."""


# Preset overrides of the general options.
GENERAL_PRESETS: dict[str, dict[str, Any]] = {
    "minimal": {"batch_size": 16, "max_images": 24},
    "standard": {},
    "full": {},
}


@dataclass
class Config:
    preset: Preset = "standard"
    general: GeneralOptions = field(default_factory=GeneralOptions)
    techniques: dict[str, Any] = field(default_factory=dict)  # id -> options dataclass
    only: list[str] | None = None
    skip: list[str] = field(default_factory=list)

    def options(self, technique_id: str) -> Any:
        return self.techniques[technique_id]

    def enabled(self) -> list[registry.TechniqueInfo]:
        """Techniques to run, in report order."""
        out = []
        for t in registry.all_techniques():
            if self.only is not None:
                if t.id not in self.only:
                    continue
            elif self.preset not in t.runs_in:
                continue
            if t.id in self.skip:
                continue
            out.append(t)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "general": dataclasses.asdict(self.general),
            "techniques": {k: dataclasses.asdict(v) for k, v in sorted(self.techniques.items())},
            "only": self.only,
            "skip": list(self.skip),
        }


# ----------------------------------------------------------------------------------------------
# option values: checked here, once, against the field's type (``Literal`` choices, ``Annotated[...,
# registry.Range(...)]`` bounds), whether they come from TOML, ``--set`` or Python


class _Refused(Exception):
    """A value the type does not admit (the message says what is allowed; the caller adds where)."""


_HINTS: dict[type, dict[str, Any]] = {}


def field_types(cls: type) -> dict[str, Any]:
    """The resolved type of each field of options dataclass ``cls`` (``Annotated`` kept), cached per class."""
    if cls not in _HINTS:
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except Exception:  # noqa: BLE001 - a class defined in a function: resolve what can be resolved
            ns = {**vars(typing), **vars(sys.modules.get(cls.__module__, typing))}
            hints = {}
            for f in dataclasses.fields(cls):
                try:
                    hints[f.name] = eval(f.type, ns) if isinstance(f.type, str) else f.type
                except Exception:  # noqa: BLE001
                    hints[f.name] = Any
        _HINTS[cls] = {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}
    return _HINTS[cls]


def describe_type(tp: Any) -> str:
    """What an option admits, in words: ``black | grey | blur``, ``int >= 1 or None``, ``list of float > 0``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        ranges = [str(m) for m in tp.__metadata__ if isinstance(m, registry.Range)]
        choices = [str(m) for m in tp.__metadata__ if isinstance(m, registry.Choices)]
        return " ".join(choices or [describe_type(args[0]), *ranges])
    if origin is typing.Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("None" if a is type(None) else describe_type(a) for a in args)
    if origin in (list, tuple):
        return f"list of {describe_type(args[0]) if args else 'values'}"
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "None")


def allowed_values(cls: type, name: str) -> str:
    """What option ``name`` of options dataclass ``cls`` admits, in words (``reportgen techniques -v``, docs)."""
    return describe_type(field_types(cls)[name])


def _convert(value: Any, tp: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        out = _convert(value, args[0])
        for r in tp.__metadata__:
            if isinstance(r, registry.Range) and out is not None and not r.admits(out):
                raise _Refused(f"{value!r} is out of range")
            if isinstance(r, registry.Choices) and out is not None:
                out = _convert(out, typing.Literal[tuple(r.values())])  # type: ignore[misc]
        return out
    if origin is typing.Literal:
        for a in args:
            if value == a or (isinstance(value, str) and not isinstance(a, str) and value.strip() == str(a)):
                return a
        import difflib

        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise _Refused(f"{value!r} is not one of the choices{hint}")
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        arms = [a for a in args if a is not type(None)]
        errors = []
        for a in sorted(arms, key=lambda a: typing.get_origin(a) is not typing.Literal):  # choices first
            try:
                return _convert(value, a)
            except _Refused as e:
                errors.append(str(e))
        raise _Refused(errors[0] if len(errors) == 1 or "did you mean" in errors[0] else f"cannot use {value!r}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise _Refused(f"expected a list, got {value!r}")
        inner = args[0] if args else Any
        return [_convert(v, inner) for v in value]
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise _Refused(f"expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise _Refused(f"expected an integer, got {value!r}")
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise _Refused(f"expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise _Refused(f"expected a number, got {value!r}")
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise _Refused(f"expected a number, got {value!r}") from None
        if not math.isfinite(out):
            raise _Refused(f"expected a finite number, got {value!r}")
        return out
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise _Refused(f"expected a string, got {value!r}")
        return str(value)
    return value


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` (TOML, CLI text or Python) as field type ``tp``, or ConfigError naming ``where``, the value and
    what is allowed."""
    try:
        return _convert(value, tp)
    except _Refused as e:
        raise ConfigError(f"{where}: {e}; allowed: {describe_type(tp)}") from None


def check_options(obj: Any, where: str) -> Any:
    """Check (and convert in place) every field of options dataclass ``obj``; ConfigError on the first bad one."""
    for name, tp in field_types(type(obj)).items():
        setattr(obj, name, _coerce(getattr(obj, name), tp, f"{where}.{name}"))
    return obj


def check_config(cfg: Config) -> Config:
    """:func:`check_options` on the general options and every technique's: the one check every configuration
    passes (made by :func:`make_config`, or by hand and handed to ``make_context``) before any work."""
    check_options(cfg.general, "general")
    for tid, opts in cfg.techniques.items():
        check_options(opts, f"techniques.{tid}")
    return cfg


def _apply(obj: Any, values: dict[str, Any], where: str) -> Any:
    fields = field_types(type(obj))
    for k, v in values.items():
        if k not in fields:
            import difflib

            close = difflib.get_close_matches(k, list(fields), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"{where}: unknown option {k!r}{hint}; known: {', '.join(fields)}")
        setattr(obj, k, _coerce(v, fields[k], f"{where}.{k}"))
    return obj


def make_config(
    preset: str = "standard",
    toml_path: str | Path | None = None,
    general: dict[str, Any] | None = None,
    technique_overrides: dict[str, dict[str, Any]] | None = None,
    only: list[str] | None = None,
    skip: list[str] | None = None,
) -> Config:
    """Build a Config: preset, then the TOML file, then explicit overrides (CLI)."""
    data: dict[str, Any] = {}
    if toml_path is not None:
        p = Path(toml_path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {p} is not valid TOML: {e}") from None
        unknown = set(data) - {"preset", "general", "techniques", "only", "skip", "model", "model_a", "model_b"}
        if unknown:
            raise ConfigError(f"config file {p}: unknown top-level keys {sorted(unknown)}")
        if "preset" in data and preset == "standard":
            preset = data["preset"]
    if preset not in registry.PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(registry.PRESETS)}")

    cfg = Config(preset=preset)
    _apply(cfg.general, GENERAL_PRESETS.get(preset, {}), "general")
    for t in registry.all_techniques():
        cfg.techniques[t.id] = t.default_options(preset)

    _apply(cfg.general, data.get("general", {}), "general")
    for tid, vals in data.get("techniques", {}).items():
        _known(tid, "config file")
        _apply(cfg.techniques[tid], vals, f"techniques.{tid}")
    if "only" in data:
        cfg.only = list(data["only"])
    if "skip" in data:
        cfg.skip = list(data["skip"])

    _apply(cfg.general, {k: v for k, v in (general or {}).items() if v is not None}, "general")
    for tid, vals in (technique_overrides or {}).items():
        _known(tid, "--set")
        _apply(cfg.techniques[tid], vals, f"techniques.{tid}")
    if only:
        cfg.only = list(only)
    if skip:
        cfg.skip = list(cfg.skip) + list(skip)
    for tid in (cfg.only or []) + cfg.skip:
        _known(tid, "only/skip (--only, --skip)")
    return check_config(cfg)


def _known(tid: str, where: str) -> None:
    try:
        registry.get(tid)
    except KeyError as e:
        raise ConfigError(f"{where}: {e.args[0]}") from None


def parse_set(items: list[str]) -> dict[str, dict[str, Any]]:
    """Parse ``--set technique.option=value`` items into nested overrides."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"--set expects technique.option=value, got {item!r}")
        key, value = item.split("=", 1)
        tid, opt = key.split(".", 1)
        out.setdefault(tid, {})[opt] = value
    return out
