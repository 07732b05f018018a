"""What every loader returns (:class:`LoadedModel`) and the registry of SPEC forms they accept.

Each loader module declares its forms with :func:`register_form` (torchvision's ``register_model``, timm's
``_registry``): one :class:`ModelForm` feeds dispatch (:func:`form_for`, in order), the ``--model`` help
(:func:`model_help`), the accepted-forms text of error messages (:func:`spec_forms`) and the card's weights line
(:meth:`LoadedModel.weights_text`) and the report title (:func:`model_title`, for checks.py). The README's
table names each form (a test checks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Mapping

from torch import nn

from ..preprocess import Preprocessing


#: the registered SPEC forms, one name each
FormName = Literal["demo", "timm", "torchvision", "huggingface", "export", "torchscript", "factory-file",
                   "factory-module"]
#: what a loader built (``LoadedModel.kind``; "module": an nn.Module given directly or unpickled)
ModelKind = Literal["torchvision", "factory", "torchscript", "export", "module", "demo", "timm", "huggingface"]


@dataclass(frozen=True)
class ModelForm:
    """One form of model SPEC: how to recognise it, its loader, and what the help, README and card say of it."""

    name: FormName
    order: int  # dispatch tries forms by ascending order; the first whose ``matches`` holds loads the SPEC
    label: str  # the README table's "form" cell, e.g. "torchvision name"
    example: str  # an example SPEC (shown in the help and the README table)
    help: str  # one phrase for --model's help and the error messages' list of forms
    matches: Callable[[str], bool]  # recognises a (stripped, non-empty) SPEC
    load: Callable[[str, "str | None", bool], "LoadedModel"]  # (spec, weights file or None, trust) -> model
    weights: Mapping[ModelKind, str] = field(default_factory=dict)  # LoadedModel.kind -> where its weights come from
    # when no --weights file is named (the card's weights line)
    titles: Mapping[ModelKind, Callable[[nn.Module, str], str]] = field(default_factory=dict)  # LoadedModel.kind ->
    # (model, spec) -> the report's title for it (default: the model's class name)


_FORMS: dict[str, ModelForm] = {}


def register_form(form: ModelForm) -> ModelForm:
    """Add ``form`` to the registry; a second form of the same name (or dispatch order) is refused."""
    if form.name in _FORMS:
        raise ValueError(f"duplicate model form {form.name!r}")
    if any(f.order == form.order for f in _FORMS.values()):
        raise ValueError(f"model form {form.name!r}: dispatch order {form.order} is taken")
    _FORMS[form.name] = form
    return form


def model_forms() -> tuple[ModelForm, ...]:
    """Every registered form, in dispatch order."""
    return tuple(sorted(_FORMS.values(), key=lambda f: f.order))


def form_for(spec: str) -> ModelForm | None:
    """The first form (in dispatch order) that recognises ``spec``, else None."""
    return next((f for f in model_forms() if f.matches(spec)), None)


def _described(form: ModelForm) -> str:
    return form.help if form.example in form.help else f"{form.help}, e.g. {form.example}"


def spec_forms() -> str:
    """The accepted forms, for error messages."""
    return "Accepted model SPEC forms: " + "; ".join(map(_described, model_forms())) + ". reportgen never downloads."


def model_help(lead: str = "") -> str:
    """The --model help: ``lead``, then every registered form with an example."""
    return lead + "The model: " + "; ".join(map(_described, model_forms())) + ". Nothing is ever downloaded."


def model_title(model: nn.Module, spec: str, kind: str) -> str:
    """The report's title for a loaded model: its form's title for ``kind``, else the model's class name."""
    by_kind = {k: t for f in model_forms() for k, t in f.titles.items()}
    title = by_kind.get(kind)
    return title(model, spec) if title is not None else type(model).__name__


def spec_path(spec: str) -> Path:
    """The SPEC read as a path (``~`` expanded)."""
    return Path(spec).expanduser()


@dataclass
class LoadedModel:
    """A loaded model with what is known about how to feed it."""

    model: nn.Module  # eval mode, on the CPU
    spec: str
    kind: ModelKind
    preprocessing: Preprocessing | None = None  # known preprocessing (weights metadata, factory, demo)
    class_names: list[str] | None = None
    weights: str | None = None  # path of the weights file used
    notes: list[str] = field(default_factory=list)  # human notes shown in the report
    fixed_input_size: int | None = None  # input side the model only accepts (exported programs)
    channels: int | None = None  # input channels when known (1: greyscale), else found from the first conv
    channels_source: str = ""  # where ``channels`` came from
    static_batch: bool = False  # the model only takes one image at a time (exported with batch 1)
    weights_source: str = ""  # where the weights came from when no file is named (default: by kind, see below)
    untrained: str = ""  # why the loader knows the weights are not trained (a random initialisation), else ""

    def weights_text(self) -> str:
        """Where the weights came from, in words, when ``weights`` names no file."""
        by_kind = {k: v for f in model_forms() for k, v in f.weights.items()}
        return self.weights_source or by_kind.get(self.kind, "none given")


def input_channels(model: nn.Module) -> tuple[int | None, str]:
    """Input channels from the first convolution's ``in_channels`` (None when there is no such layer)."""
    from ..inspection.layers import first_conv, resolve_layer

    try:
        name = first_conv(model)
        if name is None:
            return None, ""
        n = int(resolve_layer(model, name).in_channels)
    except Exception:  # exotic modules: assume RGB
        return None, ""
    return n, f"in_channels of the first convolution ({name})"
