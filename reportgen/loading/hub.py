"""``timm:NAME`` and Hugging Face folders (``save_pretrained``): the two places most image models come from.

Neither form ever downloads: ``timm.create_model(NAME, pretrained=False)`` builds the architecture and
``--weights`` (``.pth`` / ``.safetensors``) fills it; a Hugging Face folder is read with
``AutoModelForImageClassification.from_pretrained(folder, local_files_only=True)``. Preprocessing comes from
timm's ``pretrained_cfg`` (input size, crop, mean, std, interpolation) or the folder's
``preprocessor_config.json``; class names from ``config.json``'s ``id2label``, or ImageNet's when a timm model
has a 1000-class head. timm and transformers are optional extras (``pip install reportgen[timm]`` / ``[hf]``).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import warnings
from pathlib import Path
from typing import Any, Iterator, cast

from torch import nn

from ..errors import ModelError
from ..preprocess import Interpolation, Preprocessing, validated
from .base import LoadedModel, ModelForm, register_form, spec_forms, spec_path
from .checkpoint import (
    apply_weights_file,
    extract_state_dict,
    head_classes,
    match_prefixes,
    state_diff,
)
from .files import existing_file, first_line, read_weights

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                   "pytorch_model.bin.index.json")

_PIL_RESAMPLE: dict[int, Interpolation] = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box",
                                           5: "hamming"}


def _import(module: str, extra: str, what: str):
    try:
        return __import__(module)
    except ImportError:
        raise ModelError(f"{what} needs the {module} package: pip install reportgen[{extra}]") from None


def imagenet_class_names() -> list[str] | None:
    """The 1000 ImageNet class names (from timm's ImageNetInfo, else torchvision's weights metadata); no download."""
    try:
        from timm.data import ImageNetInfo

        return [d.split(",")[0].strip() for d in ImageNetInfo().label_descriptions()]
    except Exception:  # noqa: BLE001 - older timm
        pass
    try:
        from torchvision.models import ResNet18_Weights

        return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    except Exception:  # noqa: BLE001
        return None


def load_timm(name: str, spec: str, weights: str | None, trust: bool) -> LoadedModel:
    timm = _import("timm", "timm", f"--model {spec}")
    if not name:
        raise ModelError("--model timm:NAME needs a model name, e.g. timm:vit_tiny_patch16_224")
    known = timm.list_models()
    if name not in known and not timm.is_model(name):
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
        raise ModelError(f"timm has no model {name!r}." + (f" Did you mean: {', '.join(close)}?" if close else
                                                           " See timm.list_models()."))
    notes: list[str] = []
    kwargs: dict[str, Any] = {}
    sd = None
    if weights is not None:
        path = existing_file(weights, "--weights")
        obj, notes = read_weights(path, trust)
        sd, how = extract_state_dict(obj, f"--weights {path}")
        template = _create(timm, name, {})
        sd, strip = match_prefixes(template.state_dict(), sd)
        n = head_classes(state_diff(template.state_dict(), sd))
        if n is not None:
            kwargs["num_classes"] = n
            notes.append(f"num_classes={n} taken from the weights file (classifier shapes)")
    model = _create(timm, name, kwargs)
    loaded = LoadedModel(model=model, spec=spec, kind="timm", notes=notes)
    if weights is not None:
        loaded.weights, wnotes = apply_weights_file(model, weights, trust, f"timm model {name}")
        loaded.notes += wnotes
    else:
        loaded.untrained = (f"timm:{name} was built with random weights (pretrained=False; reportgen never "
                            "downloads): pass --weights FILE (.pth or .safetensors) with its trained weights")
        loaded.weights_source = "none: a random initialisation (timm, pretrained=False)"
        loaded.notes.append(loaded.untrained)
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    loaded.preprocessing = _timm_preprocessing(cfg, name)
    if cfg.get("fixed_input_size") and loaded.preprocessing is not None:
        loaded.fixed_input_size = loaded.preprocessing.input_size
    if int(getattr(model, "num_classes", 0) or 0) == 1000:
        loaded.class_names = imagenet_class_names()
    return loaded


def _create(timm: Any, name: str, kwargs: dict) -> nn.Module:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return timm.create_model(name, pretrained=False, **kwargs)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"timm.create_model({name!r}) failed: {type(e).__name__}: {first_line(e)}") from None


def _timm_preprocessing(cfg: dict, name: str) -> Preprocessing | None:
    try:
        size = int(cfg["input_size"][-1])
        crop = float(cfg.get("crop_pct") or 1.0)
        mean = tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406)))
        std = tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225)))
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    if len(mean) != 3 or len(std) != 3:
        return None
    resize = int(math.floor(size / crop)) if crop > 0 else size  # timm's scale size for a centre crop
    interp = cast(Interpolation, str(cfg.get("interpolation") or "bilinear"))  # validated(): unknown -> bilinear
    return validated(Preprocessing(resize=resize, input_size=size, mean=mean, std=std,  # type: ignore[arg-type]
                                   source=f"timm pretrained_cfg of {name}", interpolation=interp))


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' own progress bars ("Loading weights ...") and warnings off while it loads, restored after:
    reportgen's log says what was loaded."""
    from transformers.utils import logging as hf_logging

    bar, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def load_hf_folder(path: Path, spec: str, weights: str | None, trust: bool) -> LoadedModel:
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise ModelError(f"{path} is a folder but holds no config.json (a Hugging Face model folder written by "
                         f"save_pretrained has it at {cfg_path})")
    has_weights = any((path / f).is_file() for f in HF_WEIGHT_FILES)
    if not has_weights and weights is None:
        raise ModelError(f"the Hugging Face folder {path} has no weights: expected {path / HF_WEIGHT_FILES[0]} "
                         f"(or {HF_WEIGHT_FILES[1]}), or pass --weights FILE")
    transformers = _import("transformers", "hf", f"the Hugging Face folder {path}")
    try:
        with warnings.catch_warnings(), quiet_transformers():
            warnings.simplefilter("ignore")
            if has_weights:
                model = transformers.AutoModelForImageClassification.from_pretrained(str(path), local_files_only=True)
            else:
                config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
                model = transformers.AutoModelForImageClassification.from_config(config)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"cannot load the Hugging Face folder {path} as an image classifier: "
                         f"{type(e).__name__}: {first_line(e)}") from None
    loaded = LoadedModel(model=model, spec=spec, kind="huggingface")
    loaded.notes.append(f"Hugging Face folder {path} ({type(model).__name__}); its output's .logits are used")
    if weights is not None:
        loaded.weights, wnotes = apply_weights_file(model, weights, trust, f"the model in {path}")
        loaded.notes += wnotes
    else:
        loaded.weights = str(next(path / f for f in HF_WEIGHT_FILES if (path / f).is_file()))
    loaded.class_names = _id2label(getattr(model.config, "id2label", None))
    loaded.preprocessing = _hf_preprocessing(path, loaded.notes)
    return loaded


def _id2label(d: Any) -> list[str] | None:
    if not d:
        return None
    try:
        names = [str(d[k]) for k in sorted(d, key=int)]
    except (TypeError, ValueError):
        return None
    if all(n == f"LABEL_{i}" for i, n in enumerate(names)):  # transformers' placeholder names
        return None
    return names


def _side(v: Any) -> int | None:
    if isinstance(v, (int, float)):
        return int(v)
    if isinstance(v, dict):
        for k in ("shortest_edge", "height", "width"):
            if k in v:
                return int(v[k])
    return None


def _hf_preprocessing(path: Path, notes: list[str]) -> Preprocessing | None:
    p = path / "preprocessor_config.json"
    if not p.is_file():
        notes.append(f"no {p}: ImageNet preprocessing assumed (pass --input-size/--mean/--std to override)")
        return None
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
        size = _side(d.get("size")) if d.get("do_resize", True) else None
        crop = _side(d.get("crop_size")) if d.get("do_center_crop", False) else None
        mean = tuple(float(v) for v in d.get("image_mean", (0.485, 0.456, 0.406)))
        std = tuple(float(v) for v in d.get("image_std", (0.229, 0.224, 0.225)))
        interp = _PIL_RESAMPLE.get(int(d.get("resample", 2)), "bilinear")
        if d.get("do_normalize", True) is False:
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        if isinstance(d.get("size"), dict) and "height" in d["size"] and not crop:
            notes.append("the image processor resizes to a square (aspect ratio not kept); reportgen resizes the short "
                         "side and centre-crops, so non-square images are cropped rather than squashed")
        input_size = crop or size
        return validated(Preprocessing(resize=size, input_size=input_size, mean=mean, std=std,  # type: ignore[arg-type]
                                       source=f"{p.name} of {path.name}", interpolation=interp))
    except Exception as e:  # noqa: BLE001
        notes.append(f"ignored {p}: {type(e).__name__}: {first_line(e)}")
        return None


def _load_folder(spec: str, weights: str | None, trust: bool) -> LoadedModel:
    path = spec_path(spec)
    if is_hf_folder(path) or any(path.glob("*.safetensors")) or (path / "preprocessor_config.json").exists():
        return load_hf_folder(path, spec, weights, trust)
    raise ModelError(f"model SPEC {spec!r} is a folder without a config.json, not a model file or a Hugging "
                     f"Face model folder (save_pretrained writes {path / 'config.json'}).\n" + spec_forms())


register_form(ModelForm(
    name="timm", order=10, label="timm architecture", example="timm:resnet18",
    help="timm:NAME (a timm architecture, pip install reportgen[timm]; random weights unless --weights FILE)",
    matches=lambda spec: spec.lower().startswith("timm:"),
    load=lambda spec, weights, trust: load_timm(spec[5:].strip(), spec, weights, trust)))
register_form(ModelForm(
    name="huggingface", order=30, label="Hugging Face folder", example="path/to/vit-folder/",
    help="a Hugging Face folder written by save_pretrained (config.json and weights; pip install reportgen[hf])",
    matches=lambda spec: spec_path(spec).is_dir(), load=_load_folder))
