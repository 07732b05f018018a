"""The schema of ``report.json``'s per-section ``results`` (``docs/results.md``), from each technique's result type.

A technique declares its results as a typed result, a frozen dataclass whose fields ARE the section's
``results`` keys (the string under each field is its meaning, the field's type its JSON type), and names it in
its module: ``RESULTS = SaliencyResults``::

    @result_type
    class SaliencyImage:
        image: str
        \"""image name\"""
        p: float
        \"""softmax probability of the class\"""

    @result_type
    class SaliencyResults:
        images: list[SaliencyImage]
        \"""one entry per image shown\"""
        labelled: Absent[int] = MISSING
        \"""(with labels) images with a true label\"""

Compute fills an instance; :func:`to_json` turns it into ``Section.results`` (the same JSON, keys in field
order; ``class_`` writes the key ``class``, a field made with :func:`named` the key it names; an :data:`Absent`
field left :data:`MISSING` writes no key; a field made with :func:`local` holds what only the presentation needs,
e.g. pixel arrays, and is not written; a field whose type is another result type is a nested object). The
paths of :func:`schema` (``images[].p``: ``[]`` marks a list of objects) are ``docs/results.md``, and
:func:`problems` checks a section's results against its type (a missing required key, an undeclared key or a
value of the wrong JSON type). Regenerate the page with ``python -m reportgen.results_schema > docs/results.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import types
import typing
from typing import Annotated, Any, TypeVar, Union

from . import registry

T = TypeVar("T")
UNSUPPORTED = "unsupported"  # the results key of a skipped section (reportgen.build.UNSUPPORTED)
#: the results key every section may write when it fed the model inputs resized to a size the model accepts
#: (reportgen.build.INPUT_RESIZED): {"accepts": words, "resized": ["HxW -> HxW", ...]}
INPUT_RESIZED = "input_resized"
_OMIT = "results_schema.absent"
_MARK = "__result_type__"


class _Missing:
    """The value of an :data:`Absent` field that writes no key (``None`` writes ``null``)."""

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"


MISSING = _Missing()
#: a key present only sometimes (its meaning says when, e.g. "(with labels) ..."): the default, :data:`MISSING`,
#: writes no key; ``Absent[float | None]`` is a key that is sometimes absent and sometimes null
Absent = Annotated[Union[T, _Missing], _OMIT]


def local(**kw: Any) -> Any:
    """A field of a result type that presentation reads but report.json does not get (pixel arrays, images)."""
    return dataclasses.field(metadata={"json": False}, repr=False, compare=False, **kw)


def named(key: str, **kw: Any) -> Any:
    """A field written under ``key``, a report.json key that is no Python name (``l2_only = named("L2 only")``)."""
    return dataclasses.field(metadata={"key": key}, **kw)


@typing.dataclass_transform(kw_only_default=True, frozen_default=True,
                            field_specifiers=(dataclasses.field, local, named))
def result_type(cls: type[T]) -> type[T]:
    """Make ``cls`` a typed result: a frozen, keyword-only dataclass whose fields are report.json keys."""
    out = dataclasses.dataclass(frozen=True, kw_only=True)(cls)
    setattr(out, _MARK, True)
    return out


def is_result_type(tp: Any) -> bool:
    return isinstance(tp, type) and bool(getattr(tp, _MARK, False))


def key(f: dataclasses.Field) -> str:
    """The report.json key of a field: its name, less a trailing ``_`` (``class_`` -> ``class``), or the key
    :func:`named` gave it."""
    return f.metadata.get("key") or (f.name[:-1] if f.name.endswith("_") else f.name)


def _json_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("json", True)]


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _absent(cls: type, name: str) -> bool:
    tp = _hints(cls)[name]
    return typing.get_origin(tp) is Annotated and _OMIT in tp.__metadata__


def to_json(res: Any) -> dict[str, Any]:
    """A typed result as the plain JSON dict ``Section.results`` holds (nested results, lists and dicts too)."""
    out: dict[str, Any] = {}
    for f in _json_fields(type(res)):
        v = getattr(res, f.name)
        if isinstance(v, _Missing):
            continue
        out[key(f)] = _plain(v)
    return out


def _plain(v: Any) -> Any:
    if is_result_type(type(v)):
        return to_json(v)
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _unwrap(tp: Any) -> Any:
    """The type inside ``Annotated`` / ``Optional`` / :data:`Absent`."""
    while True:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        rest = [a for a in args if a not in (type(None), _Missing)]
        if origin is Annotated:
            tp = args[0]
        elif origin in (typing.Union, types.UnionType) and len(rest) == 1:
            tp = rest[0]
        else:
            return tp


def _row_type(tp: Any) -> type | None:
    """The result type of a list-of-objects field (``list[Row]``, optional or not), else None."""
    tp = _unwrap(tp)
    if typing.get_origin(tp) in (list, tuple):
        args = typing.get_args(tp)
        if args and is_result_type(_unwrap(args[0])):
            return _unwrap(args[0])
    return None


@functools.lru_cache(maxsize=None)
def _docs(cls: type) -> dict[str, str]:
    return registry.attribute_docs(cls)


def schema(cls: type, prefix: str = "") -> dict[str, str]:
    """``{path: meaning}`` of a result type, in field order: ``images[].p`` for a list of objects (the list's own
    line only when its field has a meaning)."""
    out: dict[str, str] = {}
    docs = _docs(cls)
    for f in _json_fields(cls):
        path, row = prefix + key(f), _row_type(_hints(cls)[f.name])
        if docs.get(f.name) or row is None:
            out[path] = docs.get(f.name, "")
        if row is not None:
            out.update(schema(row, f"{path}[]."))
    return out


def undocumented(cls: type) -> list[str]:
    """Fields of a result type (nested ones too) with no meaning: a list of objects may go without."""
    return [p for p, m in schema(cls).items() if not m]


def problems(cls: type, results: dict[str, Any], prefix: str = "") -> list[str]:
    """What in ``results`` does not fit result type ``cls``: an undeclared key, a missing required one, a value of
    the wrong JSON type ([] when it fits; nested objects are checked the same way)."""
    if not isinstance(results, dict):
        return [f"{prefix or 'results'}: {type(results).__name__}, not an object"]
    fs = {key(f): f for f in _json_fields(cls)}
    out = [f"{prefix}{k}: not declared by {cls.__name__}" for k in results if k not in fs]
    for k, f in fs.items():
        if k not in results:
            if not _absent(cls, f.name):
                out.append(f"{prefix}{k}: missing")
        elif not _fits(_hints(cls)[f.name], results[k]):
            tp = _unwrap(_hints(cls)[f.name])
            out.append(f"{prefix}{k}: {results[k]!r:.80} is not {tp.__name__ if isinstance(tp, type) else tp}")
        elif (row := _row_type(_hints(cls)[f.name])) is not None and results[k] is not None:
            for i, r in enumerate(results[k]):
                out += problems(row, r, f"{prefix}{k}[{i}].")
        elif is_result_type(one := _unwrap(_hints(cls)[f.name])) and results[k] is not None:
            out += problems(one, results[k], f"{prefix}{k}.")
    return out


def _fits(tp: Any, v: Any) -> bool:
    """Whether the JSON value ``v`` has type ``tp`` (objects of a list field are checked by :func:`problems`)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return True
    if origin is Annotated:
        return _fits(args[0], v)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(a, v) for a in args)
    if origin is typing.Literal:
        return v in args
    if tp is type(None):
        return v is None
    if is_result_type(tp):
        return isinstance(v, dict)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(v, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(v) == len(args) and all(_fits(a, x) for a, x in zip(args, v))
        return not args or all(_fits(args[0], x) for x in v)
    if origin is dict or tp is dict:
        return isinstance(v, dict) and (len(args) < 2 or all(_fits(args[1], x) for x in v.values()))
    if tp is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if tp is int:
        return isinstance(v, int) and not isinstance(v, bool)
    return isinstance(v, tp) if isinstance(tp, type) else True


def result_type_of(technique_id: str) -> type | None:
    """The result type a technique's module names as ``RESULTS`` (None: it names none, or an old-style dict)."""
    mod = importlib.import_module(registry.get(technique_id).module)
    tp = getattr(mod, "RESULTS", None)
    return tp if is_result_type(tp) else None


def declared(technique_id: str) -> dict[str, str]:
    """``{path: meaning}`` of a technique's results, from its result type ({} when it declares none; a plug-in's
    ``RESULTS`` may still be such a dict itself)."""
    mod = importlib.import_module(registry.get(technique_id).module)
    tp: Any = getattr(mod, "RESULTS", None)
    return schema(tp) if is_result_type(tp) else dict(tp or {})


def check(technique_id: str, results: dict[str, Any]) -> list[str]:
    """:func:`problems` of a section's results against its technique's result type (``input_resized`` aside; a
    section skipped as ``unsupported`` writes only that reason, which every section may)."""
    tp = result_type_of(technique_id)
    rest = {k: v for k, v in results.items() if k != INPUT_RESIZED}
    if set(rest) == {UNSUPPORTED} or tp is None:
        return [] if tp is not None else [f"{technique_id} declares no result type"]
    return problems(tp, rest)


def result_paths(results: dict, prefix: str = "") -> set[str]:
    """Key paths of a results dict: ``{"a": 1, "b": [{"c": 2}], "d": {"x": 1}}`` -> ``{"a", "b[].c", "d"}``.

    Lists of objects are descended into (``b[].c``); any other value, a dict included (its keys may be
    data, such as class names), is one declared key."""
    out: set[str] = set()
    for k, v in results.items():
        if isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
            for row in v:
                out |= result_paths(row, f"{prefix}{k}[].")
        else:
            out.add(prefix + k)
    return out


def undeclared(technique_id: str, results: dict) -> set[str]:
    """Paths a section wrote that its ``RESULTS`` does not declare (a section skipped as ``unsupported`` for this
    model writes only that reason, which every section may)."""
    if set(results) == {UNSUPPORTED}:
        return set()
    keys = set(declared(technique_id)) | {INPUT_RESIZED}
    keys |= {k.rsplit("[].", 1)[0] for k in keys if "[]." in k}  # an empty list of objects
    return {p for p in result_paths(results) if p not in keys}


def missing(technique_id: str, results: dict) -> set[str]:
    """Required top-level keys (not :data:`Absent`) the section did not write; for a plug-in's ``RESULTS`` dict, a key
    whose meaning starts with its condition in parentheses ("(with labels) ...", "(when ...) ...") is optional."""
    have = set(results)
    if UNSUPPORTED in have:
        return set()
    tp = result_type_of(technique_id)
    if tp is not None:
        return {key(f) for f in _json_fields(tp) if key(f) not in have and not _absent(tp, f.name)}
    decl = declared(technique_id)
    optional = {k for k, m in decl.items() if m.startswith(("(with ", "(when "))}
    out = set()
    for k in decl:
        top = k.split("[]")[0].split(".")[0]
        if top not in have and top not in optional and k not in optional:
            out.add(k)
    return out


def results_markdown() -> str:
    out = ["# Machine-readable results (`report.json`)\n",
           "Generated from each technique's result type (its `RESULTS`) by "
           "`python -m reportgen.results_schema > docs/results.md`; do not edit by hand.\n",
           "Every section in `report.json` has a `results` object with its key numbers as plain JSON (no pixel "
           "arrays), so two runs can be diffed and CI can check a report without parsing HTML. `a[].b` means "
           "`a` is a list of objects, each with a key `b`. Keys marked *(with labels)* appear only when the image "
           "set has labels.\n",
           f"Any section may also write `{UNSUPPORTED}` (why it cannot apply to this model: then it writes "
           f"nothing else) and `{INPUT_RESIZED}` (it fed the model inputs at sizes the model does not take, "
           "resized to one it does: `accepts` says what the model takes, found by probing it, and `resized` lists "
           "each `HxW -> HxW` change).\n"]
    # by name, as the techniques' modules are: every technique imports this module (result_type), and a static
    # import here would put drift's code (and what it imports) into every section's cache key
    DRIFT = importlib.import_module("reportgen.drift.section").RESULTS

    tables = [(t.id, t.title, declared(t.id)) for t in registry.all_techniques()]
    tables.append(("drift", "Explanation drift (`compare`, and `build` with a baseline; not a technique)", DRIFT))
    for tid, title, schema in tables:
        if not schema:
            continue
        out.append(f"## `{tid}`: {title}\n")
        out.append("| key | meaning |\n| --- | --- |")
        for key, meaning in schema.items():
            out.append(f"| `{key}` | {meaning.replace('|', '/')} |")
        out.append("")
    out.append("A section may also keep arrays for later runs (`Section.arrays`, e.g. the faithfulness section's maps "
               "that explanation drift compares): a folder report writes them to `arrays.npz` beside report.json, "
               "whose `arrays` key lists the file, its size in bytes and the `<section>.<name>` keys.")
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # pragma: no cover
    # the package's copy of this module, not __main__: the techniques' result types are made with its names
    from reportgen.results_schema import results_markdown as _markdown

    print(_markdown(), end="")
