"""Loading the user's model from a SPEC string (the forms registered in :mod:`.base`), and the run's preprocessing.

Split by concern: :mod:`.torchvision` (model names), :mod:`.factory` (``file.py:factory`` and
``package.module:factory``), :mod:`.archives` (TorchScript and ``torch.export``; the unflatten surgery
is in :mod:`._export_compat`), :mod:`.checkpoint` (state dicts: prefixes, strict load with a diff),
:mod:`.files` (reading files), :mod:`.embedded` (the demo model). Each loader module registers its SPEC
forms (:class:`~.base.ModelForm`); dispatch tries them in order. Class-name files are read by :mod:`reportgen.labels`.

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
import os

from ..errors import ConfigError, ModelError
from ..labels import load_labels
from ..preprocess import Preprocessing, positive_int, triple, validated
from . import archives, embedded, factory, hub  # noqa: F401  (each registers its model forms)
from .base import LoadedModel, ModelForm, form_for, input_channels, model_forms, model_help, spec_forms, spec_path
from .files import MODEL_FILE_SUFFIXES
from .torchvision import torchvision_model_names


def load_model(spec: str, weights: str | os.PathLike | None = None, trust: bool = False) -> LoadedModel:
    """Load the model named by ``spec`` (see :func:`spec_forms`) on the CPU, in eval mode.

    ``weights``: a checkpoint file for the torchvision / factory / demo forms. It is read with
    ``torch.load(weights_only=True)`` unless ``trust`` (``--trust-weights``) allows full unpickling.
    Raises :class:`ModelError` with an explanation when anything does not fit.
    """
    spec = str(spec).strip() if spec is not None else ""
    if not spec:
        raise ModelError("no model given.\n" + spec_forms())
    weights = os.fspath(weights) if weights is not None else None

    loaded = _dispatch(spec, weights, trust)
    model = loaded.model
    try:
        model.eval()
    except Exception:  # some graph modules refuse train()/eval(); their behaviour is fixed anyway
        pass
    return loaded


def _dispatch(spec: str, weights: str | None, trust: bool) -> LoadedModel:
    form = form_for(spec)
    if form is not None:
        return form.load(spec, weights, trust)
    path = spec_path(spec)
    if "/" in spec or "\\" in spec or path.suffix.lower() in MODEL_FILE_SUFFIXES:
        raise ModelError(f"model file not found: {path}.\n" + spec_forms())
    close = difflib.get_close_matches(spec.lower(), ["demo", *torchvision_model_names()], n=5, cutoff=0.6)
    msg = f"unknown model {spec!r}: not a torchvision model name, a file, or a module:factory."
    if close:
        msg += " Did you mean: " + ", ".join(close) + "?"
    raise ModelError(msg + "\n" + spec_forms())


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


__all__ = ["LoadedModel", "ModelForm", "load_model", "resolve_preprocessing", "load_labels",
           "torchvision_model_names", "model_forms", "model_help", "spec_forms"]
