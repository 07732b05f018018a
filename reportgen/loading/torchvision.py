"""torchvision classification models by name; weights from ``--weights`` or the hub cache, never downloaded."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import ModelError
from ..preprocess import Preprocessing
from .base import LoadedModel, ModelForm, register_form
from .checkpoint import extract_state_dict, head_classes, load_strict, match_prefixes, rekey, state_diff
from .files import existing_file, first_line, read_weights


def torchvision_model_names() -> list[str]:
    """Names of torchvision's classification models (``torchvision.models.list_models``)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _url_file_name(url: str) -> str:
    from urllib.parse import urlparse

    return os.path.basename(urlparse(url).path)


def load_torchvision(name: str, weights: str | None, trust: bool) -> LoadedModel:
    from torchvision import models as tvm

    try:
        enum = tvm.get_model_weights(name)
        members = list(enum)
        default = getattr(enum, "DEFAULT", members[0] if members else None)
    except Exception:
        members, default = [], None
    notes: list[str] = []

    if weights is not None:
        path = existing_file(weights, "--weights")
        obj, read_notes = read_weights(path, trust)
        sd, how = extract_state_dict(obj, str(path))
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
            f"the cached torchvision weights {path} cannot be read ({type(e).__name__}: {first_line(e)}). "
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


_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def _build_torchvision(name: str, member: Any, sd: Mapping[str, Any], source: str) -> tuple[nn.Module, list[str]]:
    """Build torchvision model ``name`` with ``weights=None`` and load ``sd`` into it (strict).

    The keyword arguments torchvision's pretrained builder would set are set here from ``member``'s
    metadata (Inception / GoogLeNet ``transform_input``, ViT ``image_size``, MaxViT ``input_size``),
    and ``num_classes`` from the classifier shapes of ``sd`` (a fine-tuned head). Auxiliary heads are
    dropped after loading, as the pretrained builder does.
    """
    from torchvision import models as tvm

    notes: list[str] = []
    if name.startswith("densenet"):  # old checkpoints name BN/conv inside dense layers "norm.1" etc.
        sd = rekey(sd, lambda k: _DENSENET_KEY.sub(r"\1\2", k))
    kwargs = _builder_kwargs(name, member, sd, notes)
    template = _build(tvm, name, kwargs, meta=True)
    sd, how = match_prefixes(template.state_dict(), sd)
    if how:
        notes.append(how)
    n = head_classes(state_diff(template.state_dict(), sd))
    if n is not None:
        kwargs["num_classes"] = n
        notes.append(f"num_classes={n} taken from the weights file (classifier shapes)")
    model = _build(tvm, name, kwargs)
    load_strict(model, sd, source, name)
    if kwargs.get("aux_logits"):  # inference uses the main head only
        model.aux_logits = False
        for aux in ("aux1", "aux2", "AuxLogits"):
            if hasattr(model, aux):
                setattr(model, aux, None)
    return model, notes


def _builder_kwargs(name: str, member: Any, sd: Mapping[str, Any], notes: list[str]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if name in ("googlenet", "inception_v3"):
        aux_prefix = "aux1." if name == "googlenet" else "AuxLogits."
        kwargs.update(transform_input=True, init_weights=False,
                      aux_logits=any(aux_prefix in k for k in sd))
        notes.append(f"{name} built with transform_input=True, as torchvision's pretrained builder does")
    min_size = (member.meta.get("min_size") if member is not None else None) or None
    if min_size and name.startswith("vit_"):
        kwargs["image_size"] = int(min_size[0])
    elif min_size and name.startswith("maxvit"):
        kwargs["input_size"] = tuple(int(v) for v in min_size)
    return kwargs


def _build(tvm: Any, name: str, kwargs: dict[str, Any], meta: bool = False) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if meta:
            try:
                with torch.device("meta"):  # no memory, no init: only the state dict's shapes are needed
                    return tvm.get_model(name, weights=None, **kwargs)
            except Exception:
                pass
        return tvm.get_model(name, weights=None, **kwargs)


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


def _is_torchvision_name(spec: str) -> bool:
    if "/" in spec or "\\" in spec or ":" in spec:
        return False
    return spec.lower() in torchvision_model_names()


def _title(model: nn.Module, spec: str) -> str:
    """The class name, and the torchvision name it was built from when they differ (``ResNet (resnet18)``)."""
    name = type(model).__name__
    return name if spec.lower() == name.lower() else f"{name} ({spec})"


register_form(ModelForm(
    name="torchvision", order=20, label="torchvision name", example="resnet18",
    help="a torchvision name (weights from --weights FILE or the torch hub cache, never downloaded)",
    matches=_is_torchvision_name, load=lambda spec, weights, trust: load_torchvision(spec.lower(), weights, trust),
    titles={"torchvision": _title}))
