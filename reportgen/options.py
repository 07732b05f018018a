"""One options object for ``build_report`` and ``compare_reports`` (and one flag set for ``build`` and ``compare``).

:class:`RunOptions` holds everything a run takes besides the model(s), the images and the output: the
configuration (preset, TOML file, ``--only``/``--skip``/``--set``), the cache, the output (theme, single file,
waiting for a lock), debugging, and the per-model values of :class:`ModelOptions` (weights, preprocessing,
layer). A build has one model (``model``); a comparison reads ``model`` as the values both models share and
``model_a`` / ``model_b`` as each one's own, which win field by field. The TOML file may carry the same as
``[model]``, ``[model_a]`` and ``[model_b]`` tables; flags win over the file::

    [model_a]
    mean = [0.4914, 0.4822, 0.4465]
    std = [0.2470, 0.2435, 0.2616]
    resize = 32
    input_size = 32

The Python entry points also take the fields as keywords (``build_report(m, imgs, out, preset="minimal",
mean=(...))``): :meth:`RunOptions.of` folds them into one object and refuses unknown names.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError
from .registry import Preset

#: the --device names (besides ``cuda:N``), written once: the CLI help and ``device.resolve_device`` read them
DeviceName = Literal["auto", "cpu", "cuda", "mps"]
DEVICE_NAMES: tuple[DeviceName, ...] = ("auto", "cpu", "cuda", "mps")
DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps."
THEME_HELP = "Report theme: light, dark, or a theme folder of your own (a theme.toml; see the README's Themes)."

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Triple = tuple[float, float, float]

#: TOML tables with per-model values, and which run kind accepts each
MODEL_TABLES = ("model", "model_a", "model_b")


@dataclass(frozen=True)
class ModelOptions:
    """What can differ between two models: the checkpoint, the input preprocessing and the inspected layer.

    ``None`` leaves a value to the model's own metadata (else ImageNet defaults, see
    :func:`reportgen.loading.resolve_preprocessing`)."""

    weights: str | Path | None = None
    """State dict loaded into the model (``--weights``)."""
    input_size: int | None = None
    """Centre-crop size fed to the model (``--input-size``)."""
    resize: int | None = None
    """Short side resized to this before the crop (``--resize``)."""
    mean: Triple | None = None
    """Normalisation mean R,G,B in [0, 1] pixel units (``--mean``)."""
    std: Triple | None = None
    """Normalisation std R,G,B (``--std``)."""
    channels: int | None = None
    """Input channels, 1 or 3 (``--channels``)."""
    layer: str | None = None
    """Dotted name of the layer layer-level techniques inspect (``--layer``)."""

    def over(self, base: ModelOptions) -> ModelOptions:
        """These values where given (not None), ``base``'s elsewhere."""
        return dataclasses.replace(base, **{k: v for k, v in self.given().items()})

    def given(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    def preprocessing_overrides(self) -> dict[str, Any]:
        """The keywords of :func:`reportgen.loading.resolve_preprocessing`."""
        return {"input_size": self.input_size, "resize": self.resize, "mean": self.mean, "std": self.std,
                "channels": self.channels}


MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelOptions))


@dataclass(frozen=True)
class RunOptions:
    """Everything ``build`` and ``compare`` share (see the module docstring)."""

    model: ModelOptions = field(default_factory=ModelOptions)
    """Per-model values of a build, or the values both models of a comparison share."""
    model_a: ModelOptions | None = None
    """A comparison's model A values (win over ``model``)."""
    model_b: ModelOptions | None = None
    """A comparison's model B values (win over ``model``)."""
    labels: str | Path | list[str] | None = None
    preset: Preset = "standard"
    config: str | Path | None = None
    only: list[str] | None = None
    skip: list[str] | None = None
    set_options: list[str] | None = None
    classes: list[int] | None = None
    max_images: int | None = None
    batch_size: int | None = None
    threads: int | None = None
    seed: int | None = None
    style_images: str | Path | None = None
    texture_images: str | Path | None = None
    reference_images: str | Path | None = None
    device: str = "auto"
    theme: str = "light"
    single_file: bool = False
    title: str | None = None
    strict: bool = False
    trust: bool = False
    use_cache: bool = True
    cache_dir: str | Path | None = None
    cache_size: str | int | None = None
    wait: bool = False
    rules: str | Path | None = None
    """A TOML rules file checked after the report is written (``--rules``, see reportgen.review.rules)."""
    link_base: str | None = None
    """URL where the report will be published: summary.md links into it (``--link-base``)."""
    debug: bool = False
    """Only the CLI reads it: tracebacks of errors are printed."""
    baseline: str | Path | None = None
    """An earlier report (folder, report.json or single .html file) this run is compared with."""
    budget: str | float | None = None
    """Time for the sections (``--budget 5m``; see reportgen.planning)."""
    plan_only: bool = False
    """Print the plan (estimates, reductions) and stop before the sections (``--plan``)."""

    @classmethod
    def of(cls, options: RunOptions | None = None, **kw: Any) -> RunOptions:
        """``options`` (or the defaults) with ``kw`` applied: RunOptions fields, or ModelOptions fields for
        ``model``. Unknown names are a TypeError, as for any Python call."""
        base = options if options is not None else cls()
        own = {f.name for f in dataclasses.fields(cls)}
        unknown = set(kw) - own - set(MODEL_FIELDS)
        if unknown:
            name = min(unknown)
            close = difflib.get_close_matches(name, sorted(own | set(MODEL_FIELDS)), n=3)
            raise TypeError(f"unknown option {name!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        model = {k: kw.pop(k) for k in list(kw) if k in MODEL_FIELDS}
        if model:
            kw["model"] = dataclasses.replace(kw.get("model", base.model), **model)
        return dataclasses.replace(base, **kw)

    def general(self) -> dict[str, Any]:
        """The ``[general]`` options given here (``make_config``'s ``general``)."""
        return {"layer": self.model.layer, "classes": self.classes, "max_images": self.max_images,
                "seed": self.seed, "batch_size": self.batch_size, "threads": self.threads,
                "style_images": str(self.style_images) if self.style_images else None,
                "texture_images": str(self.texture_images) if self.texture_images else None,
                "reference_images": str(self.reference_images) if self.reference_images else None,
                "budget": _duration(self.budget)}

    def models(self, n: int) -> list[ModelOptions]:
        """The resolved values of each of ``n`` models (1: a build, 2: a comparison): TOML ``[model]``, then
        ``[model_a]``/``[model_b]``, then ``model``, then ``model_a``/``model_b``; later wins."""
        tables = toml_model_tables(self.config)
        if n == 1:
            extra = [k for k in ("model_a", "model_b") if k in tables or getattr(self, k) is not None]
            if extra:
                raise ConfigError(f"{extra[0]} values are for `reportgen compare`; a build has one model "
                                  "([model] in the TOML file, each flag given once)")
            return [self.model.over(tables.get("model", ModelOptions()))]
        out = []
        for own in ("model_a", "model_b"):
            m = tables.get(own, ModelOptions()).over(tables.get("model", ModelOptions()))
            m = self.model.over(m)
            mine = getattr(self, own)
            out.append(mine.over(m) if mine is not None else m)
        return out


def _duration(value: Any) -> float | None:
    from .planning.cost import parse_duration

    return parse_duration(value)


def toml_model_tables(path: str | Path | None) -> dict[str, ModelOptions]:
    """The ``[model]``, ``[model_a]`` and ``[model_b]`` tables of a TOML config file, checked."""
    if path is None:
        return {}
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}  # make_config reports a missing or malformed file
    out = {}
    for table in MODEL_TABLES:
        if table not in data:
            continue
        vals = data[table]
        if not isinstance(vals, dict):
            raise ConfigError(f"config file {path}: [{table}] must be a table of {', '.join(MODEL_FIELDS)}")
        for k in vals:
            if k not in MODEL_FIELDS:
                close = difflib.get_close_matches(k, MODEL_FIELDS, n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ConfigError(f"config file {path}: [{table}] has unknown option {k!r}{hint}; "
                                  f"known: {', '.join(MODEL_FIELDS)}")
        kwargs: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in vals.items()}
        out[table] = ModelOptions(**kwargs)
    return out


def per_model(name: str, values: tuple[Any, ...] | list[Any] | None, n_models: int) -> tuple[Any, list[Any]]:
    """A flag given 0, 1 or ``n_models`` times: (the shared value or None, each model's own values or [])."""
    values = list(values or ())
    if not values:
        return None, []
    if len(values) == 1:
        return values[0], []
    if n_models > 1 and len(values) == n_models:
        return None, values
    allowed = "once" if n_models == 1 else f"once (both models) or {n_models} times (model A, then B)"
    raise ConfigError(f"{name} was given {len(values)} times; give it {allowed}")


__all__ = ["MODEL_FIELDS", "MODEL_TABLES", "ModelOptions", "RunOptions", "per_model", "toml_model_tables"]
