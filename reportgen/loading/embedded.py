"""The embedded demo model (``--model demo``): the Fashion-MNIST CNN shipped in :mod:`reportgen.demo`."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import ModelError
from ..preprocess import Preprocessing
from .base import LoadedModel, ModelForm, register_form
from .checkpoint import apply_weights_file


def load_demo(weights: str | None, trust: bool) -> LoadedModel:
    """The embedded demo CNN with its preprocessing and class names (``weights``: a checkpoint to load instead)."""
    try:
        demo = importlib.import_module("..demo", __package__)
        model = demo.build_model()
    except (ImportError, FileNotFoundError, OSError) as e:
        raise ModelError(f"the embedded demo model is not available in this installation: {e}") from None
    size = int(demo.INPUT_SIZE)
    mean, std = ((float(v[0]), float(v[1]), float(v[2])) for v in (demo.MEAN, demo.STD))
    pre = Preprocessing(resize=size, input_size=size, mean=mean, std=std, source="embedded demo model")
    loaded = LoadedModel(model=model, spec="demo", kind="demo", preprocessing=pre,
                         class_names=list(demo.labels()))
    wp = getattr(demo, "WEIGHTS_PATH", None)
    # shown in published reports: name the shipped file, not this machine's install path
    loaded.weights = f"embedded (reportgen/demo/{Path(wp).name})" if wp is not None else None
    if weights is not None:
        loaded.weights, notes = apply_weights_file(model, weights, trust, "the demo model")
        loaded.notes += notes
    return loaded


register_form(ModelForm(
    name="demo", order=0, label="the embedded demo", example="demo",
    help="demo (the embedded Fashion-MNIST CNN)", matches=lambda spec: spec.lower() == "demo",
    load=lambda spec, weights, trust: load_demo(weights, trust)))
