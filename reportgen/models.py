"""Loading the user's model from a SPEC string, its weights, preprocessing and class names.

SPEC forms (see :data:`SPEC_FORMS`):

* ``demo`` - the embedded demo model (``reportgen.demo``);
* a torchvision classification model name (``resnet18``, ``mobilenet_v2``, ...): weights from
  ``--weights FILE`` or from the torch hub cache - never downloaded;
* ``path/to/file.py:factory`` or ``package.module:factory`` - a callable returning an ``nn.Module``;
* a TorchScript archive (``torch.jit.save``; ``.pt``/``.pth``/``.ts``...), recognised by its content;
* a ``torch.export`` archive (``torch.export.save``, ``.pt2``), recognised by its content.

Model-format caveats (checked with torch 2.14):

* TorchScript: ``ScriptModule`` does not support forward hooks (``register_forward_hook`` raises
  ``RuntimeError``), so layer-level techniques cannot run on it; input-level ones (gradients,
  perturbations) work. ``named_modules()`` still lists the original layer names.
* torch.export: ``ExportedProgram.module()`` is a flat graph whose ``named_modules()`` holds only
  parameter containers (hooks on them never fire). ``torch.export.unflatten`` rebuilds the original
  hierarchy (same dotted names, forward and backward hooks fire), so it is used. Its submodules are
  generic ``InterpreterModule`` objects; Conv2d / Linear / ReLU layers are re-typed from the export
  metadata (see :func:`_retype_exported_layers`) so layer detection (``isinstance(m, nn.Conv2d)``) works.
  The exported graph fixes train/eval behaviour, and may fix the input size.

Nothing here is chosen at import time; torchvision is imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import hashlib
import importlib
import importlib.util
import json
import math
import os
import pickle
import re
import sys
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from .errors import ConfigError, ModelError
from .preprocess import Preprocessing

SPEC_FORMS = """Accepted model SPEC forms:
  demo                      the embedded demo model (a small Fashion-MNIST CNN)
  resnet18, mobilenet_v2..  a torchvision classification model; weights from --weights FILE or the
                            torch hub cache (reportgen never downloads)
  path/to/file.py:factory   a function (or class) in a Python file, called with no arguments,
                            returning a torch.nn.Module; --weights FILE is loaded into it
  package.module:factory    the same, from an importable module
  model.pt / model.ts       a TorchScript archive (torch.jit.save)
  model.pt2                 a torch.export archive (torch.export.save)"""

#: state-dict containers found in training checkpoints, in order of preference
_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "module", "model_ema", "ema")
#: prefixes added by DataParallel / DDP, Lightning-style wrappers and torch.compile
_STRIP_PREFIXES = ("module.", "model.", "_orig_mod.")
_MODEL_FILE_SUFFIXES = (".py", ".pt", ".pth", ".ts", ".pt2", ".jit", ".torchscript", ".zip", ".bin", ".ckpt")

_TS_NOTE = (
    "TorchScript archive: PyTorch does not support forward hooks on ScriptModules, so layer-level "
    "techniques (activations, CAM/Grad-CAM, feature visualisation ...) cannot run on it; input-level "
    "techniques (gradients, occlusion, perturbations) work. For layer-level techniques load the Python "
    "model instead (file.py:factory with --weights) or save it with torch.export.save (.pt2)."
)


@dataclass
class LoadedModel:
    """A loaded model with what is known about how to feed it."""

    model: nn.Module  # eval mode, on the CPU
    spec: str
    kind: str  # "torchvision", "factory", "torchscript", "export", "module", "demo"
    preprocessing: Preprocessing | None = None  # known preprocessing (weights metadata, factory, demo)
    class_names: list[str] | None = None
    weights: str | None = None  # path of the weights file used
    notes: list[str] = field(default_factory=list)  # human notes shown in the report
    fixed_input_size: int | None = None  # input side the model only accepts (exported programs)


# ----------------------------------------------------------------------------------------------
# entry point


def load_model(spec: str, weights: str | os.PathLike | None = None, trust: bool = False) -> LoadedModel:
    """Load the model named by ``spec`` (see :data:`SPEC_FORMS`) on the CPU, in eval mode.

    ``weights``: a checkpoint file for the torchvision / factory / demo forms. It is read with
    ``torch.load(weights_only=True)`` unless ``trust`` (``--trust-weights``) allows full unpickling.
    Raises :class:`ModelError` with an explanation when anything does not fit.
    """
    spec = str(spec).strip() if spec is not None else ""
    if not spec:
        raise ModelError("no model given.\n" + SPEC_FORMS)
    weights = os.fspath(weights) if weights is not None else None

    if spec.lower() == "demo":
        loaded = _load_demo(weights, trust)
    else:
        loaded = _dispatch(spec, weights, trust)
    model = loaded.model
    try:
        model.eval()
    except Exception:  # some graph modules refuse train()/eval(); their behaviour is fixed anyway
        pass
    return loaded


def _dispatch(spec: str, weights: str | None, trust: bool) -> LoadedModel:
    has_sep = "/" in spec or "\\" in spec
    if not has_sep and ":" not in spec:
        names = torchvision_model_names()
        if spec.lower() in names:
            return _load_torchvision(spec.lower(), weights, trust)

    path = Path(spec).expanduser()
    if path.exists():
        if path.is_dir():
            raise ModelError(f"model SPEC {spec!r} is a folder, not a model file.\n" + SPEC_FORMS)
        if path.suffix == ".py":
            raise ModelError(
                f"{spec} is a Python file: name the function that builds the model, e.g. {spec}:make_model "
                "(it is called with no arguments and must return a torch.nn.Module)."
            )
        return _load_archive(path, spec, weights, trust)

    m = re.fullmatch(r"(?P<target>.+):(?P<attr>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)", spec)
    if m:
        target, attr = m.group("target"), m.group("attr")
        if target.endswith(".py") or "/" in target or "\\" in target:
            return _load_factory_file(target, attr, spec, weights, trust)
        if re.fullmatch(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*", target):
            return _load_factory_module(target, attr, spec, weights, trust)

    if has_sep or path.suffix.lower() in _MODEL_FILE_SUFFIXES:
        raise ModelError(f"model file not found: {path}\n" + SPEC_FORMS)
    close = difflib.get_close_matches(spec.lower(), ["demo", *torchvision_model_names()], n=5, cutoff=0.6)
    msg = f"unknown model {spec!r}: not a torchvision model name, a file, or a module:factory."
    if close:
        msg += " Did you mean: " + ", ".join(close) + "?"
    raise ModelError(msg + "\n" + SPEC_FORMS)


# ----------------------------------------------------------------------------------------------
# demo


def _load_demo(weights: str | None, trust: bool) -> LoadedModel:
    try:
        demo = importlib.import_module(__package__ + ".demo")
        model = demo.build_model()
    except (ImportError, FileNotFoundError, OSError) as e:
        raise ModelError(f"the embedded demo model is not available in this installation: {e}") from None
    size = int(demo.INPUT_SIZE)
    pre = Preprocessing(resize=size, input_size=size, mean=tuple(float(v) for v in demo.MEAN),
                        std=tuple(float(v) for v in demo.STD), source="embedded demo model")
    loaded = LoadedModel(model=model, spec="demo", kind="demo", preprocessing=pre,
                         class_names=list(demo.labels()))
    wp = getattr(demo, "WEIGHTS_PATH", None)
    # shown in published reports: name the shipped file, not this machine's install path
    loaded.weights = f"embedded ({__package__}/demo/{Path(wp).name})" if wp is not None else None
    if weights is not None:
        loaded.weights, notes = _apply_weights_file(model, weights, trust, "the demo model")
        loaded.notes += notes
    return loaded


# ----------------------------------------------------------------------------------------------
# torchvision


def torchvision_model_names() -> list[str]:
    """Names of torchvision's classification models (``torchvision.models.list_models``)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _url_file_name(url: str) -> str:
    from urllib.parse import urlparse

    return os.path.basename(urlparse(url).path)


def _load_torchvision(name: str, weights: str | None, trust: bool) -> LoadedModel:
    from torchvision import models as tvm

    try:
        enum = tvm.get_model_weights(name)
        members = list(enum)
        default = getattr(enum, "DEFAULT", members[0] if members else None)
    except Exception:
        members, default = [], None
    notes: list[str] = []

    if weights is not None:
        path = _existing_file(weights, "--weights")
        obj, read_notes = _read_weights(path, trust)
        sd, how = _extract_state_dict(obj, str(path))
        by_file = {_url_file_name(m.url): m for m in members}
        member = by_file.get(path.name, default)
        model, build_notes = _build_torchvision(name, member, sd, f"--weights {path}")
        notes.append(f"weights from --weights {path}" + (f" ({how})" if how else ""))
        notes += read_notes + build_notes
        meta_assumed = path.name not in by_file
        weights_path = str(path)
    else:
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        ordered = ([default] if default is not None else []) + [m for m in members if m is not default]
        found = [(m, hub / _url_file_name(m.url)) for m in ordered if (hub / _url_file_name(m.url)).is_file()]
        if not found:
            raise ModelError(_missing_weights_message(name, default, hub))
        member, path = found[0]
        sd = _read_cached_checkpoint(path, member)
        model, build_notes = _build_torchvision(name, member, sd, str(path))
        notes.append(f"weights from the torch hub cache: {path} ({_member_name(member)})")
        notes += build_notes
        meta_assumed = False
        weights_path = str(path)

    pre = None
    class_names = None
    if member is not None:
        pre = _torchvision_preprocessing(member, assumed=meta_assumed)
        cats = list(member.meta.get("categories") or [])
        n_out = _num_outputs_hint(model)
        if cats and (n_out is None or n_out == len(cats)):
            class_names = cats
        elif cats:
            notes.append(f"the model has {n_out} outputs, not the {len(cats)} classes of "
                         f"{_member_name(member)}: pass --labels for class names")
    return LoadedModel(model=model, spec=name, kind="torchvision", preprocessing=pre, class_names=class_names,
                       weights=weights_path, notes=notes)


def _member_name(member: Any) -> str:
    return f"{type(member).__name__}.{member.name}"


def _missing_weights_message(name: str, default: Any, hub: Path) -> str:
    if default is None:
        return (f"torchvision model {name!r} has no published weights; pass --weights FILE "
                "(reportgen never downloads).")
    fname = _url_file_name(default.url)
    return (
        f"no weights for torchvision model {name!r}, and reportgen never downloads: the default weights "
        f"{_member_name(default)} are not in the torch hub cache.\n"
        f"  missing file: {hub / fname}\n"
        "Either\n"
        f"  - on a machine with internet, download {default.url}\n"
        f"    and copy it to {hub / fname}\n"
        "    (or set TORCH_HOME so that $TORCH_HOME/hub/checkpoints/ holds it), or\n"
        f"  - pass --weights FILE with a state dict for {name}."
    )


def _read_cached_checkpoint(path: Path, member: Any) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(
            f"the cached torchvision weights {path} cannot be read ({type(e).__name__}: {_first_line(e)}). "
            f"Delete the file and copy a fresh download of {member.url} there, or pass --weights FILE."
        ) from None


def _torchvision_preprocessing(member: Any, assumed: bool = False) -> Preprocessing | None:
    try:
        t = member.transforms()
        crop = _first_int(getattr(t, "crop_size", None))
        resize = _first_int(getattr(t, "resize_size", None))
        mean = tuple(float(v) for v in t.mean)
        std = tuple(float(v) for v in t.std)
        if len(mean) != 3 or len(std) != 3:
            return None
    except Exception:
        return None
    src = f"torchvision weights metadata ({_member_name(member)})"
    if assumed:
        src = f"torchvision weights metadata ({_member_name(member)}, assumed for --weights)"
    return Preprocessing(resize=resize, input_size=crop, mean=mean, std=std, source=src)


def _first_int(v: Any) -> int | None:
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        return int(v[0]) if v else None
    return int(v)


@contextlib.contextmanager
def _serve_state_dict(member: Any, sd: Mapping[str, Any]) -> Iterator[None]:
    """Make ``member.get_state_dict()`` return ``sd`` (no download possible) while a builder runs."""
    cls = type(member)
    had_own = "get_state_dict" in cls.__dict__
    old = cls.__dict__.get("get_state_dict")

    def get_state_dict(self, *args, **kwargs):
        out = OrderedDict(sd)
        meta = getattr(sd, "_metadata", None)
        if meta is not None:
            out._metadata = meta  # type: ignore[attr-defined]
        return out

    setattr(cls, "get_state_dict", get_state_dict)
    try:
        yield
    finally:
        if had_own:
            setattr(cls, "get_state_dict", old)
        else:
            delattr(cls, "get_state_dict")


_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def _build_torchvision(name: str, member: Any, sd: Mapping[str, Any], source: str) -> tuple[nn.Module, list[str]]:
    """Build torchvision model ``name`` holding ``sd``.

    When ``sd`` fits the stock architecture, torchvision's own builder runs with ``weights=member``
    (its ``get_state_dict`` serving ``sd``), so builder details such as Inception's
    ``transform_input`` match the pretrained model. Otherwise (e.g. a fine-tuned head with another
    number of classes) the model is built with ``weights=None`` and the matching keyword arguments.
    """
    from torchvision import models as tvm

    notes: list[str] = []
    if name.startswith("densenet"):  # old checkpoints name BN/conv inside dense layers "norm.1" etc.
        sd = _rekey(sd, lambda k: _DENSENET_KEY.sub(r"\1\2", k))
    try:
        with torch.device("meta"):
            template = tvm.get_model(name, weights=None)
    except Exception:
        template = tvm.get_model(name, weights=None)
    sd, how = _match_prefixes(template.state_dict(), sd)
    if how:
        notes.append(how)
    diff = _state_diff(template.state_dict(), sd)
    if diff.clean and member is not None:
        try:
            with _serve_state_dict(member, sd), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return tvm.get_model(name, weights=member), notes
        except (RuntimeError, ValueError):
            pass  # fall back to the generic path, which explains the mismatch

    kwargs: dict[str, Any] = {}
    if name in ("googlenet", "inception_v3"):
        aux_prefix = "aux1." if name == "googlenet" else "AuxLogits."
        kwargs.update(transform_input=True, init_weights=False,
                      aux_logits=any(k.startswith(aux_prefix) for k in sd))
        notes.append(f"{name} built with transform_input=True, as torchvision's pretrained builder does")
    n = _head_classes(diff)
    if n is not None:
        kwargs["num_classes"] = n
        notes.append(f"num_classes={n} taken from the weights file (classifier shapes)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = tvm.get_model(name, weights=None, **kwargs)
    _load_strict(model, sd, source, name)
    return model, notes


def _num_outputs_hint(model: nn.Module) -> int | None:
    """Classes of a torchvision model, from its last Linear / final 1x1 conv (None if unclear)."""
    last = None
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            last = m
    if isinstance(last, nn.Linear):
        return int(last.out_features)
    if isinstance(last, nn.Conv2d):
        return int(last.out_channels)
    return None


# ----------------------------------------------------------------------------------------------
# factories


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


def _load_factory_file(target: str, attr: str, spec: str, weights: str | None, trust: bool) -> LoadedModel:
    path = Path(target).expanduser()
    if not path.is_file():
        raise ModelError(f"model file not found: {path} (from SPEC {spec!r})\n" + SPEC_FORMS)
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
            raise ModelError(f"importing {path} failed: {type(e).__name__}: {e}") from e
        model = _call_factory(module, attr, spec, str(path))
    return _finish_factory(model, module, spec, weights, trust)


def _load_factory_module(target: str, attr: str, spec: str, weights: str | None, trust: bool) -> LoadedModel:
    with _on_sys_path(os.getcwd()):
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as e:
            if e.name and (target == e.name or target.startswith(e.name + ".")):
                raise ModelError(
                    f"cannot import module {target!r} ({e}). Is it installed, or on PYTHONPATH? "
                    f"For a file, write path/to/file.py:{attr}.\n" + SPEC_FORMS
                ) from None
            raise ModelError(f"importing {target} failed: {type(e).__name__}: {e}") from e
        except Exception as e:
            raise ModelError(f"importing {target} failed: {type(e).__name__}: {e}") from e
        model = _call_factory(module, attr, spec, target)
    return _finish_factory(model, module, spec, weights, trust)


def _call_factory(module: Any, attr: str, spec: str, where: str) -> nn.Module:
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n, v in vars(module).items()
                            if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) == module.__name__)
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
            raise ModelError(f"{spec}: calling {attr}() raised {type(e).__name__}: {e}") from e
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
        loaded.weights, notes = _apply_weights_file(model, weights, trust, spec)
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
                return _labels_from_mapping(v, "<module>")
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
                return _validated(pre)
        except Exception as e:
            notes.append(f"ignored {attr} of the model module: {type(e).__name__}: {e}")
            return None
        notes.append(f"ignored {attr} of the model module: not a Preprocessing or dict")
        return None
    return None


# ----------------------------------------------------------------------------------------------
# archives: TorchScript and torch.export


def _archive_kind(path: Path) -> str | None:
    """'export', 'torchscript', 'checkpoint' (a torch.save zip), 'zip' (other), or None (not a zip)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            fmt = [n for n in names if n == "archive_format" or n.endswith("/archive_format")]
            if fmt and zf.read(fmt[0]).strip() == b"pt2":
                return "export"
    except (zipfile.BadZipFile, OSError, KeyError):
        return None
    if any(n.endswith("/constants.pkl") or n == "constants.pkl" or "/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("data.pkl") for n in names):
        return "checkpoint"
    return "zip"


def _load_archive(path: Path, spec: str, weights: str | None, trust: bool) -> LoadedModel:
    kind = _archive_kind(path)
    if kind in ("torchscript", "export") and weights is not None:
        what = "TorchScript" if kind == "torchscript" else "torch.export"
        raise ModelError(
            f"--weights cannot be used with the {what} archive {path}: the archive carries its own weights. "
            "To use other weights, load the Python model (file.py:factory) with --weights."
        )
    if kind == "torchscript":
        return _load_torchscript(path, spec)
    if kind == "export":
        return _load_export(path, spec)
    if kind == "checkpoint" or (kind is None and path.suffix.lower() in (".pt", ".pth", ".ckpt", ".bin")):
        if trust:
            obj, notes = _read_weights(path, trust=True)
            if isinstance(obj, nn.Module):
                notes.insert(0, f"pickled model object ({type(obj).__name__}) loaded from {path}")
                return LoadedModel(model=obj.cpu(), spec=spec, kind="module", weights=str(path), notes=notes)
        raise ModelError(
            f"{path} is a checkpoint saved with torch.save (weights or a pickled model), not a self-contained model. "
            f"Pass the architecture as SPEC (a torchvision name, file.py:factory or package.module:factory) and "
            f"this file as --weights {path}. If it pickles a whole model object, --trust-weights loads it "
            "(unpickling runs code: only for files you trust)."
        )
    if path.suffix.lower() == ".pt2":
        raise ModelError(f"{path} is not a torch.export archive (expected a zip written by torch.export.save)")
    raise ModelError(f"{path} is not a model file reportgen can load.\n" + SPEC_FORMS)


def _load_torchscript(path: Path, spec: str) -> LoadedModel:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise ModelError(f"cannot load the TorchScript archive {path}: {type(e).__name__}: {_first_line(e)}") from None
    notes = [f"TorchScript archive {path}", _TS_NOTE]
    return LoadedModel(model=model, spec=spec, kind="torchscript", notes=notes)


def _load_export(path: Path, spec: str) -> LoadedModel:
    try:
        with open(path, "rb") as f, warnings.catch_warnings():  # a file object: any file name works
            warnings.simplefilter("ignore")
            ep = torch.export.load(f)
    except Exception as e:
        raise ModelError(
            f"cannot load the torch.export archive {path}: {type(e).__name__}: {_first_line(e)}. "
            "reportgen needs an ExportedProgram written by torch.export.save (AOTInductor-compiled "
            "packages cannot be used: they have no autograd or hooks)."
        ) from None
    notes = [f"torch.export archive {path}"]
    fixed = _check_export_inputs(ep, path)
    pre = None
    if fixed is not None:
        pre = Preprocessing(resize=round(fixed * 256 / 224), input_size=fixed,
                            source=f"input size {fixed} fixed by the exported program; ImageNet mean/std (not recorded "
                                   "in the archive)")
        notes.append(f"the exported program only accepts {fixed}x{fixed} inputs (exported with a static image size)")
    if _exported_in_training_mode(ep):
        notes.append("the program was exported in training mode (BatchNorm uses batch statistics / dropout is "
                     "active): results depend on the batch. Re-export after model.eval().")
    try:
        model = torch.export.unflatten(ep)
    except Exception as e:
        model = ep.module()
        notes.append(
            f"torch.export.unflatten failed ({type(e).__name__}: {_first_line(e)}), so the original layer hierarchy "
            "is not available: layer-level techniques cannot run, input-level techniques work."
        )
        return LoadedModel(model=model, spec=spec, kind="export", preprocessing=pre, notes=notes,
                           fixed_input_size=fixed)
    _make_deepcopyable(model)
    retyped = _retype_exported_layers(model, ep)
    notes.append(
        "layer hierarchy rebuilt with torch.export.unflatten: layer names match the original model and "
        f"hooks work; {retyped} Conv2d/Linear/ReLU layers were re-typed from the export metadata, other "
        "layers appear as generic InterpreterModule. The exported graph fixes the computation, so "
        "train/eval flags have no effect."
    )
    return LoadedModel(model=model, spec=spec, kind="export", preprocessing=pre, notes=notes, fixed_input_size=fixed)


def _check_export_inputs(ep: Any, path: Path) -> int | None:
    """Check the exported program takes one (batch, 3, H, W) input with a dynamic batch; return a fixed H."""
    vals = {n.name: n.meta.get("val") for n in ep.graph.nodes if n.op == "placeholder"}
    user = [vals.get(name) for name in ep.graph_signature.user_inputs]
    if len(user) != 1 or not isinstance(user[0], torch.Tensor):
        raise ModelError(f"the exported program {path} takes {len(user)} inputs; reportgen calls the model with "
                         "one image batch tensor")
    shape = list(user[0].shape)
    if len(shape) != 4:
        raise ModelError(f"the exported program {path} takes a {len(shape)}-d input; an image classifier takes "
                         "(batch, 3, height, width)")
    b, c, h, w = shape
    if isinstance(b, int):
        raise ModelError(
            f"{path} was exported with a fixed batch size of {b}; reportgen runs batches of other sizes. Re-export "
            "with a dynamic batch dimension and an example batch of at least 2 images: "
            "torch.export.export(model.eval(), (torch.rand(2, 3, H, W),), "
            "dynamic_shapes=({0: torch.export.Dim('batch')},))"
        )
    if isinstance(c, int) and c != 3:
        raise ModelError(f"the exported program {path} takes {c}-channel images; reportgen feeds RGB (3 channels)")
    if isinstance(h, int) or isinstance(w, int):
        if not (isinstance(h, int) and isinstance(w, int) and h == w):
            raise ModelError(f"the exported program {path} only accepts {h}x{w} inputs; reportgen feeds square "
                             "images. Re-export with a square size or dynamic height/width.")
        return int(h)
    return None


def _exported_in_training_mode(ep: Any) -> bool:
    for n in ep.graph.nodes:
        if n.op != "call_function":
            continue
        t = str(n.target)
        try:
            if t == "aten.batch_norm.default" and len(n.args) > 5 and n.args[5] is True:
                return True
            if t == "aten.dropout.default" and len(n.args) > 2 and n.args[2] is True and n.args[1]:
                return True
            if t.startswith("aten._native_batch_norm_legit_functional") or t == "aten._native_batch_norm_legit.default":
                return True
        except Exception:
            continue
    return False


def _exported_deepcopy(self: nn.Module, memo: dict) -> nn.Module:
    """deepcopy for an unflattened program: share the input-placeholder nodes (their metadata holds
    FakeTensors, which cannot be copied; they are only read to check input shapes)."""
    for node in getattr(self, "input_placeholders", None) or ():
        memo.setdefault(id(node), node)
    cls = type(self)
    new = cls.__new__(cls)
    memo[id(self)] = new
    new.__setstate__(copy.deepcopy(self.__dict__, memo))
    return new


def _make_deepcopyable(model: nn.Module) -> None:
    base = type(model)
    cls = type("ExportedModule", (base,), {"__deepcopy__": _exported_deepcopy, "__module__": __name__})
    model.__class__ = cls


def _op_args(node: Any) -> dict[str, Any]:
    schema = node.target._schema
    out: dict[str, Any] = {}
    for i, arg in enumerate(schema.arguments):
        if i < len(node.args):
            out[arg.name] = node.args[i]
        elif arg.name in node.kwargs:
            out[arg.name] = node.kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
    return out


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        v = [int(x) for x in v]
        return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])
    return (int(v), int(v))


def _is_attr(node: Any, name: str) -> bool:
    return getattr(node, "op", None) == "get_attr" and node.target == name


def _conv_attrs(mod: nn.Module, a: dict[str, Any]) -> dict[str, Any] | None:
    w = getattr(mod, "weight", None)
    if not isinstance(w, torch.Tensor) or w.dim() != 4 or not _is_attr(a.get("weight"), "weight"):
        return None
    if a.get("transposed"):
        return None
    if a.get("bias") is not None and not _is_attr(a["bias"], "bias"):
        return None
    groups = int(a.get("groups", 1))
    pad = a.get("padding", 0)
    return dict(in_channels=int(w.shape[1]) * groups, out_channels=int(w.shape[0]), kernel_size=tuple(w.shape[2:]),
                stride=_pair(a.get("stride", 1)), padding=pad if isinstance(pad, str) else _pair(pad),
                dilation=_pair(a.get("dilation", 1)), groups=groups, transposed=False, output_padding=(0, 0),
                padding_mode="zeros")


def _linear_attrs(mod: nn.Module, a: dict[str, Any]) -> dict[str, Any] | None:
    w = getattr(mod, "weight", None)
    if not isinstance(w, torch.Tensor) or w.dim() != 2 or not _is_attr(a.get("weight"), "weight"):
        return None
    if a.get("bias") is not None and not _is_attr(a["bias"], "bias"):
        return None
    return dict(in_features=int(w.shape[1]), out_features=int(w.shape[0]))


def _retype_exported_layers(model: nn.Module, ep: Any) -> int:
    """Give leaf layers of an unflattened program their original class (Conv2d, Linear, ReLU).

    ``unflatten`` makes every submodule a generic ``InterpreterModule``, so ``isinstance(m, nn.Conv2d)``
    (how reportgen finds conv layers) fails. A leaf whose export metadata says it was a plain
    ``nn.Conv2d`` / ``nn.Linear`` / ``nn.ReLU`` and whose graph is exactly that one op gets a class
    deriving from both (forward still runs the exported graph) plus the usual attributes
    (``out_channels``, ``kernel_size``, ``stride`` ...). Anything else is left alone. Returns the count.
    """
    types: dict[str, str] = {}
    for n in ep.graph.nodes:
        for fqn, t in (n.meta.get("nn_module_stack") or {}).values():
            types[fqn] = t if isinstance(t, str) else f"{t.__module__}.{t.__qualname__}"
    table = {
        "torch.nn.modules.conv.Conv2d": (nn.Conv2d, ("aten.conv2d.default", "aten.conv2d.padding",
                                                     "aten.convolution.default"), _conv_attrs),
        "torch.nn.modules.linear.Linear": (nn.Linear, ("aten.linear.default",), _linear_attrs),
        "torch.nn.modules.activation.ReLU": (nn.ReLU, ("aten.relu.default", "aten.relu_.default"),
                                             lambda m, a: {"inplace": False}),
    }
    classes: dict[tuple[type, type], type] = {}
    count = 0
    for name, mod in model.named_modules():
        entry = table.get(types.get(name, ""))
        graph = getattr(mod, "graph", None)
        if not name or entry is None or graph is None or any(True for _ in mod.children()):
            continue
        nn_cls, ops, attrs_fn = entry
        calls = [n for n in graph.nodes if n.op == "call_function"]
        if len(calls) != 1 or str(calls[0].target) not in ops:
            continue
        try:
            attrs = attrs_fn(mod, _op_args(calls[0]))
        except Exception:
            attrs = None
        if attrs is None:
            continue
        key = (type(mod), nn_cls)
        if key not in classes:
            classes[key] = type(nn_cls.__name__, key, {"__module__": __name__})
        if nn_cls is not nn.ReLU and "bias" not in mod._parameters:
            mod.register_parameter("bias", None)
        for k, v in attrs.items():
            setattr(mod, k, v)
        mod.__class__ = classes[key]
        count += 1
    return count


# ----------------------------------------------------------------------------------------------
# weights files


def _existing_file(path: str | os.PathLike, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelError(f"{what} file not found: {p}")
    if not p.is_file():
        raise ModelError(f"{what} {p} is not a file")
    return p


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else ""


def _read_weights(path: Path, trust: bool) -> tuple[Any, list[str]]:
    """Read a weights file: torch.load(weights_only=not trust); archives give their state dict."""
    notes: list[str] = []
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ModelError(f"{path} is a safetensors file: install the safetensors package to read it") from None
        try:
            return load_file(str(path), device="cpu"), notes
        except Exception as e:
            raise ModelError(f"cannot read --weights {path}: {type(e).__name__}: {_first_line(e)}") from None
    kind = _archive_kind(path)
    if kind == "torchscript":
        lm = _load_torchscript(path, str(path))
        return lm.model.state_dict(), [f"state dict taken from the TorchScript archive {path}"]
    if kind == "export":
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = torch.export.load(f)
        return dict(ep.state_dict), [f"state dict taken from the torch.export archive {path}"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:
        if trust:
            raise ModelError(f"cannot unpickle --weights {path}: {_first_line(e)}") from None
        m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        detail = f" (e.g. {m.group(1)})" if m else ""
        raise ModelError(
            f"--weights {path} holds pickled Python objects{detail}, not just tensors, so it was not loaded: "
            "torch.load(weights_only=True) refuses them because unpickling can run arbitrary code. "
            "Pass --trust-weights to load it anyway, ONLY if you trust the file's source "
            "(better: re-save it with torch.save(model.state_dict(), path))."
        ) from None
    except (AttributeError, ModuleNotFoundError, ImportError) as e:
        raise ModelError(
            f"--weights {path} pickles a class that cannot be imported here ({type(e).__name__}: {e}). "
            "Make its module importable (PYTHONPATH) or save a state dict instead."
        ) from None
    except Exception as e:
        raise ModelError(f"cannot read --weights {path}: {type(e).__name__}: {_first_line(e)}") from None
    if trust:
        notes.append(f"--trust-weights: {path} was fully unpickled (weights_only=False); only do this for "
                     "files you trust")
    return obj, notes


def _is_state_dict(obj: Any) -> bool:
    if not isinstance(obj, Mapping) or not obj:
        return False
    tensors = 0
    for k, v in obj.items():
        if not isinstance(k, str):
            return False
        if isinstance(v, torch.Tensor):
            tensors += 1
        elif not k.endswith("_extra_state"):
            return False
    return tensors > 0


def _extract_state_dict(obj: Any, source: str, _depth: int = 0) -> tuple[Mapping[str, Any], str]:
    """Find the state dict in a checkpoint; returns it and how it was found ('' for a plain one)."""
    if isinstance(obj, nn.Module):
        return obj.state_dict(), f"state dict of the pickled {type(obj).__name__} module"
    if _is_state_dict(obj):
        return obj, ""
    if isinstance(obj, Mapping) and _depth < 3:
        for key in _CHECKPOINT_KEYS:
            if key in obj:
                try:
                    sd, how = _extract_state_dict(obj[key], source, _depth + 1)
                except ModelError:
                    continue
                return sd, f"under the {key!r} key" + (f", {how}" if how else "")
        keys = ", ".join(repr(k) for k in list(obj)[:8])
        raise ModelError(
            f"{source} holds a dict (keys {keys}{', ...' if len(obj) > 8 else ''}) but no state dict: expected "
            "name -> tensor entries, or one under 'state_dict', 'model_state_dict', 'model' or 'net'"
        )
    raise ModelError(f"{source} holds a {type(obj).__name__}, not a state dict (name -> tensor) or a model")


def _rekey(sd: Mapping[str, Any], fn) -> OrderedDict:
    out = OrderedDict((fn(k), v) for k, v in sd.items())
    meta = getattr(sd, "_metadata", None)
    if meta is not None:
        out._metadata = OrderedDict((fn(k) if k else k, v) for k, v in meta.items())  # type: ignore[attr-defined]
    return out


def _match_prefixes(model_sd: Mapping[str, Any], sd: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    """Strip wrapper prefixes (``module.``, ``model.``, ``_orig_mod.``) when that makes more keys match."""
    keys = set(model_sd)

    def score(d: Mapping[str, Any]) -> int:
        return sum(1 for k in d if k in keys)

    best, best_score, best_strips = sd, score(sd), []
    frontier: list[tuple[Mapping[str, Any], list[str]]] = [(sd, [])]
    for _ in range(3):
        nxt = []
        for cand, strips in frontier:
            for p in _STRIP_PREFIXES:
                if any(k.startswith(p) for k in cand):
                    c2 = _rekey(cand, lambda k, p=p: k[len(p):] if k.startswith(p) else k)
                    s = score(c2)
                    if s > best_score:
                        best, best_score, best_strips = c2, s, strips + [p]
                    nxt.append((c2, strips + [p]))
        frontier = nxt
    if best_strips:
        return best, "stripped key prefix " + " then ".join(repr(p) for p in best_strips)
    return sd, ""


@dataclass
class _Diff:
    missing: list[str]
    unexpected: list[str]
    shapes: list[tuple[str, tuple[int, ...], tuple[int, ...]]]  # (key, file shape, model shape)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.shapes)


def _state_diff(model_sd: Mapping[str, Any], sd: Mapping[str, Any]) -> _Diff:
    missing = [k for k in model_sd if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in model_sd]
    shapes = []
    for k, v in sd.items():
        if k in model_sd and isinstance(v, torch.Tensor) and tuple(v.shape) != tuple(model_sd[k].shape):
            shapes.append((k, tuple(v.shape), tuple(model_sd[k].shape)))
    return _Diff(missing, unexpected, shapes)


def _head_classes(diff: _Diff) -> int | None:
    """N when the only mismatches are classifier outputs (first dimension N instead of the default)."""
    if diff.missing or diff.unexpected or not diff.shapes:
        return None
    ns = {f[0] for _, f, m in diff.shapes if len(f) == len(m) and f[1:] == m[1:] and len(f) >= 1}
    if len(ns) == 1 and all(len(f) == len(m) and f[1:] == m[1:] for _, f, m in diff.shapes):
        return int(next(iter(ns)))
    return None


def _mismatch_message(diff: _Diff, source: str, what: str, sd: Mapping[str, Any]) -> str:
    def few(items: list[str]) -> str:
        return ", ".join(items[:5]) + (f", ... ({len(items)} in all)" if len(items) > 5 else "")

    parts = []
    if diff.missing:
        parts.append(f"{len(diff.missing)} missing key(s): {few(diff.missing)}")
    if diff.unexpected:
        parts.append(f"{len(diff.unexpected)} unexpected key(s): {few(diff.unexpected)}")
    if diff.shapes:
        parts.append(f"{len(diff.shapes)} shape mismatch(es): " + few(
            [f"{k} (file {tuple(f)} vs model {tuple(m)})" for k, f, m in diff.shapes]))
    msg = f"the weights in {source} do not fit {what}: " + "; ".join(parts) + "."
    if diff.unexpected and len(diff.unexpected) == len(sd):
        msg += " None of the file's keys match: are these weights for this architecture?"
    return msg + " Check that the SPEC builds the architecture the weights were trained with."


def _load_strict(model: nn.Module, sd: Mapping[str, Any], source: str, what: str) -> None:
    diff = _state_diff(model.state_dict(), sd)
    if not diff.clean:
        raise ModelError(_mismatch_message(diff, source, what, sd))
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise ModelError(f"the weights in {source} do not fit {what}: {e}") from None


def _apply_weights_file(model: nn.Module, weights: str, trust: bool, what: str) -> tuple[str, list[str]]:
    """Load ``--weights`` into ``model`` (strict); returns the path and notes."""
    path = _existing_file(weights, "--weights")
    obj, notes = _read_weights(path, trust)
    sd, how = _extract_state_dict(obj, f"--weights {path}")
    sd, strip = _match_prefixes(model.state_dict(), sd)
    how = ", ".join(x for x in (how, strip) if x)
    _load_strict(model, sd, f"--weights {path}", what)
    return str(path), [f"weights from --weights {path}" + (f" ({how})" if how else "")] + notes


# ----------------------------------------------------------------------------------------------
# preprocessing


def _positive_int(v: Any, flag: str) -> int:
    if isinstance(v, bool):
        raise ConfigError(f"{flag} must be a positive integer, not {v!r}")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag} must be a positive integer, not {v!r}") from None
    if not f.is_integer() or f <= 0:
        raise ConfigError(f"{flag} must be a positive integer, not {v!r}")
    return int(f)


def _triple(v: Any, flag: str, positive: bool = False) -> tuple[float, float, float]:
    if isinstance(v, str):
        v = [x for x in re.split(r"[,\s]+", v.strip()) if x]
    try:
        vals = tuple(float(x) for x in v)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag} must be 3 numbers (one per RGB channel), not {v!r}") from None
    if len(vals) != 3:
        raise ConfigError(f"{flag} must be 3 numbers (one per RGB channel), got {len(vals)}: {v!r}")
    if not all(math.isfinite(x) for x in vals):
        raise ConfigError(f"{flag} values must be finite numbers, got {v!r}")
    if positive and any(x <= 0 for x in vals):
        raise ConfigError(f"{flag} values must be > 0, got {v!r}")
    return vals  # type: ignore[return-value]


def _validated(pre: Preprocessing, flags: tuple[str, str, str, str] = ("resize", "input size", "mean", "std")) -> Preprocessing:
    resize = None if pre.resize is None else _positive_int(pre.resize, flags[0])
    size = None if pre.input_size is None else _positive_int(pre.input_size, flags[1])
    mean = _triple(pre.mean, flags[2])
    std = _triple(pre.std, flags[3], positive=True)
    return Preprocessing(resize=resize, input_size=size, mean=mean, std=std, source=pre.source)


def resolve_preprocessing(
    loaded: LoadedModel | None,
    input_size: int | None = None,
    resize: int | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
) -> Preprocessing:
    """The run's preprocessing: the model's known one (else ImageNet defaults), each given flag overriding.

    ``--input-size`` alone also rescales the resize step, keeping the known resize/crop ratio
    (256/224 when no resize is known). ``source`` records where each value came from.
    """
    base = loaded.preprocessing if loaded is not None and loaded.preprocessing is not None else Preprocessing()
    new_resize, new_size, new_mean, new_std = base.resize, base.input_size, base.mean, base.std
    flags: list[str] = []
    if input_size is not None:
        new_size = _positive_int(input_size, "--input-size")
        fixed = getattr(loaded, "fixed_input_size", None)
        if fixed is not None and new_size != fixed:
            raise ConfigError(f"--input-size {new_size} does not fit the model: it only accepts "
                              f"{fixed}x{fixed} inputs")
        if resize is None:
            ratio = base.resize / base.input_size if base.resize and base.input_size else 256 / 224
            new_resize = max(new_size, round(new_size * ratio))
            flags.append(f"--input-size (resize {new_resize})")
        else:
            flags.append("--input-size")
    if resize is not None:
        new_resize = _positive_int(resize, "--resize")
        flags.append("--resize")
    if mean is not None:
        new_mean = _triple(mean, "--mean")
        flags.append("--mean")
    if std is not None:
        new_std = _triple(std, "--std", positive=True)
        flags.append("--std")
    source = base.source + ("; " + ", ".join(flags) if flags else "")
    return _validated(Preprocessing(resize=new_resize, input_size=new_size, mean=tuple(new_mean),
                                    std=tuple(new_std), source=source))


# ----------------------------------------------------------------------------------------------
# labels


def _label_str(item: Any, where: str) -> str:
    if isinstance(item, str):
        s = item.strip()
    elif isinstance(item, (list, tuple)) and item and isinstance(item[-1], str):
        s = item[-1].strip()  # e.g. imagenet_class_index.json: {"0": ["n01440764", "tench"]}
    elif isinstance(item, (int, float)) and not isinstance(item, bool):
        s = str(item)
    else:
        raise ConfigError(f"{where}: class name {item!r} is not a string")
    if not s:
        raise ConfigError(f"{where}: empty class name")
    return s


def _labels_from_mapping(d: Mapping[Any, Any], where: str) -> list[str]:
    out: dict[int, str] = {}
    for k, v in d.items():
        try:
            idx = int(k)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: key {k!r} is not a class index (expected {{index: name}})") from None
        if idx < 0 or idx in out:
            raise ConfigError(f"{where}: bad or repeated class index {k!r}")
        out[idx] = _label_str(v, f"{where} [{k!r}]")
    missing = [i for i in range(len(out)) if i not in out]
    if missing:
        raise ConfigError(f"{where}: class indices must run 0..{len(out) - 1}; missing {missing[:10]}")
    return [out[i] for i in range(len(out))]


def load_labels(path: str | os.PathLike) -> list[str]:
    """Class names in output order: a text file (one per line), a JSON list, or a JSON {index: name} dict."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"labels file not found: {p}")
    if not p.is_file():
        raise ConfigError(f"labels path {p} is not a file")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"labels file {p} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                          "save it as UTF-8") from None
    s = text.strip()
    if not s:
        raise ConfigError(f"labels file {p} is empty")
    if s[0] in "[{":
        try:
            data = json.loads(s)
        except json.JSONDecodeError as e:
            if p.suffix.lower() == ".json":
                raise ConfigError(f"labels file {p} is not valid JSON: {e}") from None
            data = None
        if data is not None:
            where = f"labels file {p}"
            if isinstance(data, Mapping):
                for key in ("labels", "classes", "class_names", "categories"):
                    if isinstance(data.get(key), list):
                        data = data[key]
                        break
            if isinstance(data, list):
                if not data:
                    raise ConfigError(f"{where} is an empty list")
                return [_label_str(x, f"{where} item {i}") for i, x in enumerate(data)]
            if isinstance(data, Mapping):
                return _labels_from_mapping(data, where)
            raise ConfigError(f"{where}: expected a JSON list of names or a {{index: name}} object")
    if p.suffix.lower() == ".json":
        raise ConfigError(f"labels file {p} is not a JSON list or object")
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    names = []
    for i, line in enumerate(lines, 1):
        name = line.strip()
        if not name:
            raise ConfigError(f"labels file {p} line {i} is empty: one class name per line, in output order")
        names.append(name)
    return names


__all__ = ["LoadedModel", "load_model", "resolve_preprocessing", "load_labels", "torchvision_model_names",
           "SPEC_FORMS"]
