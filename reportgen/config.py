"""One typed configuration with named presets, loadable from TOML, overridable from the CLI.

Resolution order (later wins): dataclass defaults -> preset -> TOML file -> CLI flags / ``--set``.

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
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import registry
from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class GeneralOptions:
    """Options shared by every technique."""

    batch_size: int = 32
    """Images per forward/backward batch."""
    max_images: int | None = None
    """Use at most this many images of the set (None: all)."""
    seed: int = 0
    """Seed for every random choice (sampling, t-SNE, noise), so reports are reproducible."""
    layer: str | None = None
    """Dotted name of the layer that layer-level techniques inspect (None: the last convolution)."""
    classes: list[int] | None = None
    """Class indices for class-level techniques (None: the most predicted classes)."""
    num_workers: int = 0
    """DataLoader worker processes that decode and resize images ahead of the feature pass (0: in this process)."""
    style_images: str | None = None
    """Folder of style images for texture/gram/style sections (None: the paintings shipped with reportgen)."""
    texture_images: str | None = None
    """Folder of texture images for the texture and gram sections (None: the textures shipped with reportgen)."""
    threads: int = 0
    """torch CPU threads (0: the CPUs not already busy by the 1-minute load average, at least 1;
    see reportgen.device)."""


# Preset overrides of the general options.
GENERAL_PRESETS: dict[str, dict[str, Any]] = {
    "minimal": {"batch_size": 16, "max_images": 24},
    "standard": {},
    "full": {},
}


@dataclass
class Config:
    preset: str = "standard"
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


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert a TOML or CLI value against a dataclass field type."""
    if isinstance(tp, str):
        tp = eval(tp, vars(typing), {})  # annotations are strings under `from __future__`
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: cannot use {value!r} ({'; '.join(errors)})")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        return [_coerce(v, inner, where) for v in value]
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        return str(value)
    return value


def _apply(obj: Any, values: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for k, v in values.items():
        if k not in fields:
            import difflib

            close = difflib.get_close_matches(k, list(fields), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"{where}: unknown option {k!r}{hint}; known: {', '.join(fields)}")
        setattr(obj, k, _coerce(v, fields[k].type, f"{where}.{k}"))
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
        registry.get(tid)  # raises with suggestions
        _apply(cfg.techniques[tid], vals, f"techniques.{tid}")
    if "only" in data:
        cfg.only = list(data["only"])
    if "skip" in data:
        cfg.skip = list(data["skip"])

    _apply(cfg.general, {k: v for k, v in (general or {}).items() if v is not None}, "general")
    for tid, vals in (technique_overrides or {}).items():
        try:
            registry.get(tid)
        except KeyError as e:
            raise ConfigError(str(e.args[0])) from None
        _apply(cfg.techniques[tid], vals, f"techniques.{tid}")
    if only:
        cfg.only = list(only)
    if skip:
        cfg.skip = list(cfg.skip) + list(skip)
    for tid in (cfg.only or []) + cfg.skip:
        try:
            registry.get(tid)
        except KeyError as e:
            raise ConfigError(str(e.args[0])) from None
    return cfg


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
