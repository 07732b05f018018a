"""``path/to/file.py:factory`` and ``package.module:factory`` SPEC forms."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping

from torch import nn

from ..errors import ConfigError, ModelError
from ..labels import labels_from_mapping
from ..preprocess import Preprocessing, validated
from .base import LoadedModel, ModelForm, ModelKind, register_form, spec_forms
from .checkpoint import apply_weights_file
from .files import first_line


@contextlib.contextmanager
def _on_sys_path(folder: str) -> Iterator[None]:
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)


def load_factory_file(target: str, attr: str, spec: str, weights: str | None, trust: bool) -> LoadedModel:
    path = Path(target).expanduser()
    if not path.is_file():
        raise ModelError(f"model file not found: {path} (from SPEC {spec!r}).\n" + spec_forms())
    path = path.resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    modname = f"_reportgen_user_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
    module_spec = importlib.util.spec_from_file_location(modname, path)
    if module_spec is None or module_spec.loader is None:
        raise ModelError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    with _on_sys_path(str(path.parent)):
        sys.modules[modname] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:
            sys.modules.pop(modname, None)
            raise ModelError(f"importing {path} failed: {type(e).__name__}: {first_line(e)}") from e
        model = _call_factory(module, attr, spec, str(path))
    return _finish_factory(model, module, spec, weights, trust)


def load_factory_module(target: str, attr: str, spec: str, weights: str | None, trust: bool) -> LoadedModel:
    with _on_sys_path(os.getcwd()):
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as e:
            if e.name and (target == e.name or target.startswith(e.name + ".")):
                raise ModelError(
                    f"cannot import module {target!r} ({e}). Is it installed, or on PYTHONPATH? "
                    f"For a file, write path/to/file.py:{attr}.\n" + spec_forms()
                ) from None
            raise ModelError(f"importing {target} failed: {type(e).__name__}: {first_line(e)}") from e
        except Exception as e:
            raise ModelError(f"importing {target} failed: {type(e).__name__}: {first_line(e)}") from e
        model = _call_factory(module, attr, spec, target)
    return _finish_factory(model, module, spec, weights, trust)


def _call_factory(module: Any, attr: str, spec: str, where: str) -> nn.Module:
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n, v in vars(module).items() if not n.startswith("_") and callable(v)
                            and getattr(v, "__module__", None) == module.__name__)
            close = difflib.get_close_matches(attr, public, n=3, cutoff=0.5)
            msg = f"{where} has no attribute {attr!r}."
            if close:
                msg += " Did you mean: " + ", ".join(close) + "?"
            elif public:
                msg += " It defines: " + ", ".join(public[:10]) + "."
            raise ModelError(msg)
        obj = getattr(obj, part)
    if isinstance(obj, nn.Module):
        model = obj  # a module-level model instance
    elif callable(obj):
        try:
            model = obj()
        except TypeError as e:
            raise ModelError(f"{spec}: the factory must be callable with no arguments ({e})") from e
        except Exception as e:
            raise ModelError(f"{spec}: calling {attr}() raised {type(e).__name__}: {first_line(e)}") from e
    else:
        raise ModelError(f"{spec}: {attr} is a {type(obj).__name__}, not a function or class returning a model")
    if not isinstance(model, nn.Module):
        raise ModelError(f"{spec} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _finish_factory(model: nn.Module, module: Any, spec: str, weights: str | None, trust: bool) -> LoadedModel:
    model = model.cpu()
    loaded = LoadedModel(model=model, spec=spec, kind="factory")
    loaded.class_names = _module_labels(module, loaded.notes)
    loaded.preprocessing = _module_preprocessing(module, spec, loaded.notes)
    if weights is not None:
        loaded.weights, notes = apply_weights_file(model, weights, trust, spec)
        loaded.notes += notes
    return loaded


def _module_labels(module: Any, notes: list[str]) -> list[str] | None:
    for attr in ("labels", "LABELS", "CLASS_NAMES", "class_names"):
        v = getattr(module, attr, None)
        if v is None or isinstance(v, type(sys)):
            continue
        try:
            if callable(v):
                v = v()
        except Exception as e:
            notes.append(f"ignored {attr}() of the model module: it raised {type(e).__name__}: {e}")
            return None
        if isinstance(v, (list, tuple)) and v and all(isinstance(x, str) for x in v):
            return [str(x) for x in v]
        if isinstance(v, Mapping) and v:
            try:
                return labels_from_mapping(v, "<module>")
            except ConfigError:
                pass
        notes.append(f"ignored {attr} of the model module: not a list of class names")
        return None
    return None


def _module_preprocessing(module: Any, spec: str, notes: list[str]) -> Preprocessing | None:
    for attr in ("preprocessing", "PREPROCESSING"):
        v = getattr(module, attr, None)
        if v is None or isinstance(v, type(sys)):
            continue
        try:
            if callable(v) and not isinstance(v, Preprocessing):
                v = v()
            if isinstance(v, Preprocessing):
                return v
            if isinstance(v, Mapping):
                fields = {k: v[k] for k in ("resize", "input_size", "mean", "std") if k in v}
                pre = Preprocessing(**fields, source=f"{spec.rsplit(':', 1)[0]} {attr}")
                return validated(pre)
        except Exception as e:
            notes.append(f"ignored {attr} of the model module: {type(e).__name__}: {e}")
            return None
        notes.append(f"ignored {attr} of the model module: not a Preprocessing or dict")
        return None
    return None


_FACTORY_SPEC = re.compile(r"(?P<target>.+):(?P<attr>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_FACTORY_WEIGHTS: dict[ModelKind, str] = {"factory": "as the factory built them (no --weights given)"}


def _factory_parts(spec: str) -> tuple[str, str] | None:
    m = _FACTORY_SPEC.fullmatch(spec)
    return (m.group("target"), m.group("attr")) if m else None


def _is_factory_file(spec: str) -> bool:
    parts = _factory_parts(spec)
    return parts is not None and (parts[0].endswith(".py") or "/" in parts[0] or "\\" in parts[0])


def _is_factory_module(spec: str) -> bool:
    parts = _factory_parts(spec)
    return parts is not None and not _is_factory_file(spec) and _DOTTED.fullmatch(parts[0]) is not None


def _load_file_spec(spec: str, weights: str | None, trust: bool) -> LoadedModel:
    target, attr = _factory_parts(spec) or ("", "")
    return load_factory_file(target, attr, spec, weights, trust)


def _load_module_spec(spec: str, weights: str | None, trust: bool) -> LoadedModel:
    target, attr = _factory_parts(spec) or ("", "")
    return load_factory_module(target, attr, spec, weights, trust)


register_form(ModelForm(
    name="factory-file", order=60, label="factory in a file", example="path/to/file.py:build",
    help="path/to/file.py:factory (called with no arguments, returns a torch.nn.Module; --weights FILE fills it)",
    matches=_is_factory_file, load=_load_file_spec, weights=_FACTORY_WEIGHTS))
register_form(ModelForm(
    name="factory-module", order=70, label="factory in a package", example="package.module:factory",
    help="package.module:factory (importable from the current environment; the same call)",
    matches=_is_factory_module, load=_load_module_spec, weights=_FACTORY_WEIGHTS))
