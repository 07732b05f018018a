"""Loading the user's model from a SPEC string (see :data:`SPEC_FORMS`), and the run's preprocessing.

Split by concern: :mod:`.torchvision` (model names), :mod:`.factory` (``file.py:factory`` and
``package.module:factory``), :mod:`.archives` (TorchScript and ``torch.export``; the unflatten surgery
is in :mod:`._export_compat`), :mod:`.checkpoint` (state dicts: prefixes, strict load with a diff),
:mod:`.files` (reading files). Class-name files are read by :mod:`reportgen.labels`.

Model-format caveats (checked with torch 2.14):

* TorchScript: ``ScriptModule`` does not support forward hooks (``register_forward_hook`` raises
  ``RuntimeError``), so layer-level techniques cannot run on it; input-level ones (gradients,
  perturbations) work. ``named_modules()`` still lists the original layer names.
* torch.export: ``ExportedProgram.module()`` is a flat graph whose ``named_modules()`` holds only
  parameter containers (hooks on them never fire). ``torch.export.unflatten`` rebuilds the original
  hierarchy (same dotted names, forward and backward hooks fire), so it is used; Conv2d / Linear / ReLU
  layers are re-typed from the export metadata so layer detection works. The exported graph fixes
  train/eval behaviour, and may fix the input size or the batch size.

Nothing here is chosen at import time; torchvision is imported inside the functions that need it.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
from pathlib import Path

from ..errors import ConfigError, ModelError
from ..labels import load_labels
from ..preprocess import Preprocessing, positive_int, triple, validated
from .archives import load_archive
from .base import SPEC_FORMS, LoadedModel, input_channels
from .checkpoint import apply_weights_file
from .factory import load_factory_file, load_factory_module
from .files import MODEL_FILE_SUFFIXES
from .hub import is_hf_folder, load_hf_folder, load_timm
from .torchvision import load_torchvision, torchvision_model_names


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
    if spec.lower().startswith("timm:"):
        return load_timm(spec[5:].strip(), spec, weights, trust)
    has_sep = "/" in spec or "\\" in spec
    if not has_sep and ":" not in spec:
        names = torchvision_model_names()
        if spec.lower() in names:
            return load_torchvision(spec.lower(), weights, trust)

    path = Path(spec).expanduser()
    if path.exists():
        if path.is_dir():
            if is_hf_folder(path) or any(path.glob("*.safetensors")) or (path / "preprocessor_config.json").exists():
                return load_hf_folder(path, spec, weights, trust)
            raise ModelError(f"model SPEC {spec!r} is a folder without a config.json, not a model file or a Hugging "
                             f"Face model folder (save_pretrained writes {path / 'config.json'}).\n" + SPEC_FORMS)
        if path.suffix == ".py":
            raise ModelError(
                f"{spec} is a Python file: name the function that builds the model, e.g. {spec}:make_model "
                "(it is called with no arguments and must return a torch.nn.Module)."
            )
        return load_archive(path, spec, weights, trust)

    m = re.fullmatch(r"(?P<target>.+):(?P<attr>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)", spec)
    if m:
        target, attr = m.group("target"), m.group("attr")
        if target.endswith(".py") or "/" in target or "\\" in target:
            return load_factory_file(target, attr, spec, weights, trust)
        if re.fullmatch(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*", target):
            return load_factory_module(target, attr, spec, weights, trust)

    if has_sep or path.suffix.lower() in MODEL_FILE_SUFFIXES:
        raise ModelError(f"model file not found: {path}.\n" + SPEC_FORMS)
    close = difflib.get_close_matches(spec.lower(), ["demo", *torchvision_model_names()], n=5, cutoff=0.6)
    msg = f"unknown model {spec!r}: not a torchvision model name, a file, or a module:factory."
    if close:
        msg += " Did you mean: " + ", ".join(close) + "?"
    raise ModelError(msg + "\n" + SPEC_FORMS)


def _load_demo(weights: str | None, trust: bool) -> LoadedModel:
    try:
        demo = importlib.import_module("..demo", __package__)
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
    loaded.weights = f"embedded (reportgen/demo/{Path(wp).name})" if wp is not None else None
    if weights is not None:
        loaded.weights, notes = apply_weights_file(model, weights, trust, "the demo model")
        loaded.notes += notes
    return loaded


def resolve_preprocessing(
    loaded: LoadedModel | None,
    input_size: int | None = None,
    resize: int | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    channels: int | None = None,
) -> Preprocessing:
    """The run's preprocessing: the model's known one (else ImageNet defaults), each given flag overriding.

    ``--input-size`` alone also rescales the resize step, keeping the known resize/crop ratio
    (256/224 when no resize is known). ``channels`` (``--channels``) overrides the model's input
    channels (its first convolution's ``in_channels``). ``source`` says where each value came from.
    """
    base = loaded.preprocessing if loaded is not None and loaded.preprocessing is not None else Preprocessing()
    values = {"resize": base.resize, "input size": base.input_size, "mean": base.mean, "std": base.std}
    origin = dict.fromkeys(values, base.source)
    if input_size is not None:
        values["input size"] = positive_int(input_size, "--input-size")
        origin["input size"] = "--input-size"
        fixed = getattr(loaded, "fixed_input_size", None)
        if fixed is not None and values["input size"] != fixed:
            raise ConfigError(f"--input-size {values['input size']} does not fit the model: it only accepts "
                              f"{fixed}x{fixed} inputs")
        if resize is None:
            ratio = base.resize / base.input_size if base.resize and base.input_size else 256 / 224
            values["resize"] = max(values["input size"], round(values["input size"] * ratio))
            origin["resize"] = "--input-size (same resize/crop ratio)"
    if resize is not None:
        values["resize"], origin["resize"] = positive_int(resize, "--resize"), "--resize"
    if mean is not None:
        values["mean"], origin["mean"] = triple(mean, "--mean"), "--mean"
    if std is not None:
        values["std"], origin["std"] = triple(std, "--std", positive=True), "--std"
    n_channels, channel_origin = _channels(loaded, base, channels)
    if channel_origin:
        origin["channels"] = channel_origin
    source = base.source if set(origin.values()) == {base.source} else _origins_text(origin)
    return validated(Preprocessing(resize=values["resize"], input_size=values["input size"],
                                   mean=tuple(values["mean"]), std=tuple(values["std"]), source=source,
                                   channels=n_channels, interpolation=base.interpolation))


def _channels(loaded: LoadedModel | None, base: Preprocessing, flag: int | None) -> tuple[int, str]:
    """Input channels and where they came from ('' when RGB by default)."""
    if flag is not None:
        if flag not in (1, 3):
            raise ConfigError(f"--channels must be 1 (greyscale) or 3 (RGB), not {flag!r}")
        return int(flag), "--channels"
    n, src = (loaded.channels, loaded.channels_source) if loaded is not None else (None, "")
    if n is None and loaded is not None:
        n, src = input_channels(loaded.model)
    if n == 1:
        return 1, src
    return base.channels, ""


def _origins_text(origin: dict[str, str]) -> str:
    """'input size, resize from --input-size; mean, std from defaults (ImageNet)': each value's origin."""
    groups: dict[str, list[str]] = {}
    for name, src in origin.items():
        groups.setdefault(src, []).append(name)
    return "; ".join(f"{', '.join(names)} from {src}" for src, names in groups.items())


__all__ = ["LoadedModel", "load_model", "resolve_preprocessing", "load_labels", "torchvision_model_names",
           "SPEC_FORMS"]
