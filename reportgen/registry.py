"""The technique registry: the one list the CLI, the docs, the config and the tests read.

Each technique lives in its own module under :mod:`reportgen.techniques` and registers itself::

    @dataclass
    class SaliencyOptions:
        max_images: int = 8

    @technique(
        "saliency", "Saliency maps", options=SaliencyOptions,
        presets={"minimal": {"max_images": 2}},
        references=[SIMONYAN_2014], order=60,
    )
    def saliency(ctx: RunContext, opts: SaliencyOptions) -> Section:
        "...two sentences on how to read the figure: the section's summary..."
        ...

A technique computes and returns a :class:`reportgen.report.Section` of plain data; it never
writes files. Registering the same id twice raises (as torchvision's ``register_model`` does).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import os
import pkgutil
import textwrap
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

from .report import Reference, Section, plural

#: the presets, written once: options, config, the CLI and each technique's ``runs_in`` read them
Preset = Literal["minimal", "standard", "full"]
PRESETS: tuple[Preset, ...] = ("minimal", "standard", "full")
#: what a section is to a model review, which orders how ``--budget`` leaves whole sections out once every option is
#: at its floor (:mod:`reportgen.planning.plan`): ``lecture`` sections (the lecture's pictures) go first, then
#: ``review`` ones (the numbers a review reads and the maps they score); ``overview`` never
Role = Literal["overview", "review", "lecture"]
ROLES: tuple[Role, ...] = ("overview", "review", "lecture")


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric option, declared on its field's type: ``window: Annotated[int, Range(ge=1)] = 8``
    (``ge``/``gt``: at least / above; ``le``/``lt``: at most / below). Choices are ``Literal[...]`` types.
    :mod:`reportgen.config` checks both whenever a configuration is made (TOML, ``--set``, Python API)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def admits(self, v: float) -> bool:
        return ((self.ge is None or v >= self.ge) and (self.gt is None or v > self.gt)
                and (self.le is None or v <= self.le) and (self.lt is None or v < self.lt))

    def __str__(self) -> str:
        parts = [f"{op} {b:g}" for op, b in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                 if b is not None]
        return " and ".join(parts) or "any value"


@dataclass(frozen=True)
class Choices:
    """Choices of a string option read from a list the modules fill as they register (``Annotated[str,
    Choices(fn)]``, ``fn() -> allowed values``), e.g. the attribution methods a set-level section can draw its maps
    with (:func:`set_level_methods`). Checked by :mod:`reportgen.config` like a ``Literal``."""

    values: Callable[[], Sequence[str]]

    def __str__(self) -> str:
        return " | ".join(self.values())


@dataclass(frozen=True)
class SanityCheck:
    """How the sanity section checks an attribution method: ``label``, its name there (default: the method's);
    ``maps``, ``(ctx, sanity options) -> MapMethod``, the variant it runs at its own options (None: the technique's
    method at the technique's options); ``always``, checked whether or not the technique runs (else only when it
    does); ``order``, its place among the checks."""

    label: str = ""
    maps: Callable[[Any, Any], Any] | None = None
    always: bool = False
    order: float = 100.0


@dataclass(frozen=True)
class ClassMaps:
    """A method's variant for the set-level sections (mistakes, shortcuts), which draw one class's maps over many
    images: ``key`` is the value of their ``method`` option; ``fn(model, layer module, x, targets) -> B x h x w``
    tensor of positive evidence (at the layer's resolution, or the input's); ``layered``: it reads the layer."""

    key: str
    fn: Callable[..., Any]
    layered: bool = False


@dataclass(frozen=True)
class AttributionMethod:
    """One attribution method a technique explains with, declared beside it (``@technique(methods=[...])``).

    ``name``: its name in reports (a faithfulness row, the ``MapSpec`` of its maps); ``maps``: ``(ctx, the
    technique's options) -> MapMethod`` (:mod:`reportgen.techniques._faith_maps`) or None where it does not apply
    (faithfulness scores it; None here: no per-image maps); ``order``: its place in :func:`attribution_methods`;
    ``sanity``: the sanity section checks it (:class:`SanityCheck`); ``set_level``: mistakes and shortcuts can draw
    with it (:class:`ClassMaps`). ``technique`` and ``module`` are filled at registration."""

    name: str
    maps: Callable[[Any, Any], Any] | None = None
    order: float = 100.0
    sanity: SanityCheck | None = None
    set_level: ClassMaps | None = None
    technique: str = ""
    module: str = ""

    @property
    def sanity_label(self) -> str:
        return (self.sanity.label if self.sanity else "") or self.name


@dataclass
class NoOptions:
    """For techniques without options."""


@dataclass(frozen=True)
class TechniqueInfo:
    id: str
    title: str
    fn: Callable[..., Section]
    options: type
    presets: dict[str, dict[str, Any]]
    references: tuple[Reference, ...]
    order: int
    summary: str
    runs_in: tuple[Preset, ...]
    module: str
    needs_autograd: bool = False
    needs_layers: bool = False
    cacheable: bool = True
    plans_layers: Callable[[Any], list[str]] | None = None
    unsupported_if: Callable[[Any], str | None] | None = None
    reads: Callable[[Any], Any] | None = None
    cost: Callable[[Any, Any], float] | None = None
    cost_scales: tuple[str, ...] = ()
    methods: tuple[AttributionMethod, ...] = ()
    uses: tuple[str, ...] = ()
    role: Role = "lecture"

    def default_options(self, preset: str = "standard") -> Any:
        """Options dataclass for ``preset`` (dataclass defaults, then the preset's overrides)."""
        overrides = self.presets.get(preset, {})
        return self.options(**overrides)

    @property
    def option_fields(self) -> list[dataclasses.Field]:
        return list(dataclasses.fields(self.options))


_REGISTRY: dict[str, TechniqueInfo] = {}
_METHODS: dict[str, AttributionMethod] = {}  # every attribution method, by name (and set-level key)
_LOADED = False


def technique(
    id: str,
    title: str,
    *,
    options: type | None = None,
    presets: dict[str, dict[str, Any]] | None = None,
    references: list[Reference] | tuple[Reference, ...] = (),
    order: int = 100,
    summary: str = "",
    runs_in: tuple[Preset, ...] = PRESETS,
    needs_autograd: bool = False,
    needs_layers: bool = False,
    cacheable: bool = True,
    plans_layers: Callable[[Any], list[str]] | None = None,
    unsupported_if: Callable[[Any], str | None] | None = None,
    reads: Callable[[Any], Any] | None = None,
    cost: Callable[[Any, Any], float] | None = None,
    cost_scales: tuple[str, ...] = (),
    methods: Sequence[AttributionMethod] = (),
    uses: tuple[str, ...] = (),
    role: Role = "lecture",
) -> Callable[[Callable[..., Section]], Callable[..., Section]]:
    """Register ``fn(ctx, opts) -> Section`` under ``id``. Duplicate ids are an error.

    ``summary`` (how to read the section's figures, shown above them) defaults to ``fn``'s docstring,
    white space folded.

    Metadata the build reads: ``needs_layers`` (hooks on intermediate layers: skipped with a note on a
    TorchScript archive), ``needs_autograd`` (input gradients), ``plans_layers`` (``fn(ctx) -> [layer names]``
    the technique will ask :meth:`RunContext.features` for, so the one shared pass gathers them) and
    ``cacheable`` (the section may be served from the cache; the key includes :func:`code_hash`) and
    ``unsupported_if`` (``fn(ctx) -> reason or None``: the model lacks what the technique reads, e.g. attention) and
    ``reads`` (``fn(config) -> JSON-able``: what else of the run's configuration the section reads, e.g. which other
    techniques are enabled and their options; part of the section's cache key, so a report is a function of its
    inputs and options whatever the cache holds) and ``cost`` (``fn(opts, measure) -> seconds``, the section's cost
    for ``--budget``; ``cost_scales``: the options the budget may lower; see :mod:`reportgen.planning.cost`) and
    ``methods`` (the attribution methods it explains with, :class:`AttributionMethod`; see :func:`attribution_methods`)
    and ``uses`` (the ids of the techniques whose output it takes when they ran, or :data:`METHOD_TECHNIQUES` for
    every technique that declares a method: the run puts it after them, see :func:`run_order`) and ``role`` (what
    the section is to a review, :data:`Role`: the order in which ``--budget`` leaves sections out).
    """
    if not id or not id.replace("_", "").isalnum() or id != id.lower():
        raise ValueError(f"technique id must be lower_snake_case, got {id!r}")
    opts_cls = options or NoOptions
    if not dataclasses.is_dataclass(opts_cls):
        raise TypeError(f"options for {id!r} must be a dataclass")
    presets = _checked_presets(id, opts_cls, dict(presets or {}), runs_in)
    if id in uses:
        raise ValueError(f"technique {id!r} lists itself in uses")
    if role not in ROLES:
        raise ValueError(f"technique {id!r}: role must be one of {', '.join(ROLES)}, got {role!r}")

    def deco(fn: Callable[..., Section]) -> Callable[..., Section]:
        if id in _REGISTRY:
            raise ValueError(
                f"technique id {id!r} is already registered by {_REGISTRY[id].module}; ids must be unique"
            )
        _REGISTRY[id] = TechniqueInfo(
            id=id,
            title=title,
            fn=fn,
            options=opts_cls,
            presets=presets,
            references=tuple(references),
            order=order,
            summary=summary or " ".join((fn.__doc__ or "").split()),
            runs_in=tuple(runs_in),
            module=fn.__module__,
            needs_autograd=needs_autograd,
            needs_layers=needs_layers,
            cacheable=cacheable,
            plans_layers=plans_layers,
            unsupported_if=unsupported_if,
            reads=reads,
            cost=cost,
            cost_scales=tuple(cost_scales),
            methods=_register_methods(id, fn.__module__, methods),  # before the technique: a duplicate adds neither
            uses=tuple(uses),
            role=role,
        )
        return fn

    return deco


def reads_options(*ids: str, enabled: bool = False) -> Callable[[Any], dict[str, Any]]:
    """A ``reads`` (see :func:`technique`) for a section that reads the options of the techniques ``ids`` and, with
    ``enabled``, whether each of them runs in this configuration."""

    def reads(config: Any) -> dict[str, Any]:
        on = {t.id for t in config.enabled()} if enabled else set()
        return {i: {"options": dataclasses.asdict(config.techniques[i]) if i in config.techniques else None,
                    **({"enabled": i in on} if enabled else {})} for i in ids}

    return reads


def _checked_presets(id: str, opts_cls: type, presets: dict[str, dict[str, Any]],
                     runs_in: tuple[Preset, ...]) -> dict[str, dict[str, Any]]:
    """``presets``, each naming a known preset and known options, or ValueError (``runs_in`` too)."""
    for name, over in presets.items():
        if name not in PRESETS:
            raise ValueError(f"technique {id!r}: unknown preset {name!r} (known: {', '.join(PRESETS)})")
        bad = set(over) - {f.name for f in dataclasses.fields(opts_cls)}
        if bad:
            raise ValueError(f"technique {id!r}: preset {name!r} sets unknown options {sorted(bad)}")
    for p in runs_in:
        if p not in PRESETS:
            raise ValueError(f"technique {id!r}: unknown preset {p!r} in runs_in")
    return presets


def _register_methods(tid: str, module: str, methods: Sequence[AttributionMethod]) -> tuple[AttributionMethod, ...]:
    """``methods`` stamped with their technique and module, added to the list; a name (or set-level key) already
    declared by any technique is an error, and nothing is added."""
    out = tuple(dataclasses.replace(m, technique=tid, module=module) for m in methods)
    taken = {m.name: m.technique for m in _METHODS.values()}
    keys = {m.set_level.key: m.technique for m in _METHODS.values() if m.set_level}
    for m in out:
        if m.name in taken:
            raise ValueError(f"attribution method {m.name!r} of {tid!r} is already declared by {taken[m.name]!r}; "
                             "method names must be unique")
        if m.set_level and m.set_level.key in keys:
            raise ValueError(f"set-level key {m.set_level.key!r} of {tid!r} is already declared by "
                             f"{keys[m.set_level.key]!r}")
        taken[m.name] = tid
        if m.set_level:
            keys[m.set_level.key] = tid
    _METHODS.update((m.name, m) for m in out)
    return out


def unregister(id: str) -> None:
    """Remove a technique and its attribution methods (tests register throw-away techniques)."""
    _REGISTRY.pop(id, None)
    for name in [n for n, m in _METHODS.items() if m.technique == id]:
        del _METHODS[name]


def attribution_methods() -> list[AttributionMethod]:
    """The one list of attribution methods, in their declared order: what faithfulness scores, sanity checks,
    mistakes and shortcuts draw with and compare joins (each reads it; none keeps a table of its own)."""
    load_all()
    return sorted(_METHODS.values(), key=lambda m: (m.order, m.name))


def set_level_methods() -> dict[str, AttributionMethod]:
    """Set-level key -> method, for the methods that can draw one class's maps over many images."""
    return {m.set_level.key: m for m in attribution_methods() if m.set_level is not None}


def load_all() -> None:
    """Import every module under :mod:`reportgen.techniques`, then the extensions, so that they register.

    Extensions are modules of other packages that use ``@technique``: named in the environment variable
    ``REPORTGEN_TECHNIQUES`` (comma-separated module names, read here, at first use) or declared as entry
    points of the group ``reportgen.techniques`` by an installed package.
    """
    global _LOADED
    if _LOADED:
        return
    _LOADED = True  # before importing: an extension may ask the registry while it loads
    try:
        _load_modules()
    except BaseException:
        _LOADED = False
        raise


def _load_modules() -> None:
    from . import techniques

    for mod in sorted(pkgutil.iter_modules(techniques.__path__), key=lambda m: m.name):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{techniques.__name__}.{mod.name}")
    names = [n.strip() for n in os.environ.get("REPORTGEN_TECHNIQUES", "").split(",") if n.strip()]
    try:
        from importlib.metadata import entry_points

        names += [ep.value for ep in entry_points(group="reportgen.techniques")]
    except Exception:  # noqa: BLE001 - broken package metadata must not hide the built-in techniques
        pass
    for name in dict.fromkeys(names):
        try:
            importlib.import_module(name.split(":")[0])
        except ImportError as e:
            raise ImportError(f"technique extension {name!r} (REPORTGEN_TECHNIQUES or an entry point) "
                              f"could not be imported: {e}") from e


def all_techniques() -> list[TechniqueInfo]:
    """Every registered technique, in run (and report) order: by ``order`` (then id), except that a technique comes
    after every technique it ``uses``. A ``uses`` naming an unknown technique, or a cycle of them, raises."""
    load_all()
    return run_order(sorted(_REGISTRY.values(), key=lambda t: (t.order, t.id)))


#: in ``uses``: every technique that declares an attribution method (faithfulness scores their maps)
METHOD_TECHNIQUES = "*methods"


def producers(t: TechniqueInfo) -> list[str]:
    """The ids ``t`` uses, :data:`METHOD_TECHNIQUES` expanded to the techniques declaring methods (``t`` aside)."""
    out: list[str] = []
    for u in t.uses:
        out += [m.technique for m in _METHODS.values() if m.technique != t.id] if u == METHOD_TECHNIQUES else [u]
    return list(dict.fromkeys(out))


def run_order(infos: list[TechniqueInfo]) -> list[TechniqueInfo]:
    """``infos`` (in preferred order) reordered so that each comes after the techniques it ``uses``: at each step the
    first one whose producers are all placed (Kahn's algorithm), so a list that already respects ``uses`` is
    returned as it is. Checks every ``uses`` against the registry and ``infos``."""
    known = {t.id for t in infos} | set(_REGISTRY)
    uses = {t.id: producers(t) for t in infos}
    for t in infos:
        unknown = [u for u in uses[t.id] if u not in known]
        if unknown:
            raise ValueError(f"technique {t.id!r} uses {plural(len(unknown), 'unknown technique')}: "
                             f"{', '.join(map(repr, unknown))} "
                             f"(known: {', '.join(sorted(known))})")
    here = {t.id for t in infos}
    left = list(infos)
    placed: set[str] = set()
    out: list[TechniqueInfo] = []
    while left:
        ready = next((t for t in left if all(u in placed or u not in here for u in uses[t.id])), None)
        if ready is None:
            raise ValueError(f"techniques that use one another in a cycle: {_cycle(left, uses)}")
        left.remove(ready)
        placed.add(ready.id)
        out.append(ready)
    return out


def _cycle(infos: list[TechniqueInfo], uses: dict[str, list[str]]) -> str:
    """One cycle among ``infos`` (each of which waits on another of them), as "a -> b -> a"."""
    ids = {t.id for t in infos}
    path = [infos[0].id]
    while True:
        nxt = next(u for u in uses[path[-1]] if u in ids)
        if nxt in path:
            return " -> ".join(path[path.index(nxt):] + [nxt])
        path.append(nxt)


def get(id: str) -> TechniqueInfo:
    load_all()
    try:
        return _REGISTRY[id]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(id, list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown technique {id!r}.{hint} Known: {', '.join(sorted(_REGISTRY))}") from None


def ids() -> list[str]:
    return [t.id for t in all_techniques()]


# ----------------------------------------------------------------------------------------------
# metadata read from the code itself


def code_hash(info: TechniqueInfo) -> str:
    """Digest of the code a technique's section is computed by, and of reportgen's version: the source of its
    module and of every module reached from it through imports, transitively (``from .. import attribution as
    A`` reaches ``attribution/__init__`` and each module it imports; imports inside functions count), plus
    :mod:`reportgen.context`'s closure (the ``ctx`` every technique is handed: feature pass, layers, sampling).

    Part of the section cache key (:func:`reportgen.cache.code_digest`): editing any helper, however deep,
    or upgrading reportgen never serves a stale section; a module the technique does not reach leaves the key
    as it was. Read from the files each time, so an edit within one process counts too.
    """
    from .cache import code_digest

    return code_digest(info.module, "reportgen.context")


def option_help(cls: type, name: str) -> str:
    """Help for option ``name`` of dataclass ``cls``: ``field(metadata={"help": ...})``, else the attribute
    docstring (the string literal under the field, any number of lines)."""
    for f in dataclasses.fields(cls):
        if f.name == name and f.metadata.get("help"):
            return " ".join(str(f.metadata["help"]).split())
    return attribute_docs(cls).get(name, "")


def attribute_docs(cls: type) -> dict[str, str]:
    """The string literal under each field of a dataclass (option help, a result field's meaning), spaces folded."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = next((n.body for n in tree.body if isinstance(n, ast.ClassDef)), [])
    out = {}
    for a, b in zip(body, body[1:]):
        if (isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name) and isinstance(b, ast.Expr)
                and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str)):
            out[a.target.id] = " ".join(b.value.value.split())
    return out
