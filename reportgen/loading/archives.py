"""Self-contained model archives: TorchScript (``torch.jit.save``) and ``torch.export`` (``.pt2``)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from ..preprocess import Preprocessing, unpack_logits
from ._export_compat import make_deepcopyable, retype_exported_layers
from .base import LoadedModel, ModelForm, register_form, spec_forms, spec_path
from .files import archive_kind, first_line, load_torchscript, read_weights


def load_archive(path: Path, spec: str, weights: str | None, trust: bool) -> LoadedModel:
    kind = archive_kind(path)
    if kind in ("torchscript", "export") and weights is not None:
        what = "TorchScript" if kind == "torchscript" else "torch.export"
        raise ModelError(
            f"--weights cannot be used with the {what} archive {path}: the archive carries its own weights. "
            "To use other weights, load the Python model (file.py:factory) with --weights."
        )
    if kind == "torchscript":
        return load_torchscript(path, spec)
    if kind == "export":
        return _load_export(path, spec)
    if kind == "checkpoint" or (kind is None and path.suffix.lower() in (".pt", ".pth", ".ckpt", ".bin")):
        if trust:
            obj, notes = read_weights(path, trust=True)
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
    raise ModelError(f"{path} is not a model file reportgen can load.\n" + spec_forms())


def _load_export(path: Path, spec: str) -> LoadedModel:
    try:
        with open(path, "rb") as f, warnings.catch_warnings():  # a file object: any file name works
            warnings.simplefilter("ignore")
            ep = torch.export.load(f)
    except Exception as e:
        raise ModelError(
            f"cannot load the torch.export archive {path}: {type(e).__name__}: {first_line(e)}. "
            "reportgen needs an ExportedProgram written by torch.export.save (AOTInductor-compiled "
            "packages cannot be used: they have no autograd or hooks)."
        ) from None
    notes = [f"torch.export archive {path}"]
    fixed, channels, static_batch = _check_export_inputs(ep, path)
    pre = None
    if fixed is not None:
        pre = Preprocessing(resize=round(fixed * 256 / 224), input_size=fixed,
                            source=f"input size {fixed} fixed by the exported program; ImageNet mean/std (not recorded "
                                   "in the archive)")
        notes.append(f"the exported program only accepts {fixed}x{fixed} inputs (exported with a static image size)")
    if static_batch:
        notes.append("the program was exported with a static batch of 1 (torch.export's default), so images run "
                     "one at a time: slower, same results. For speed, re-export with dynamic_shapes="
                     "({0: torch.export.Dim('batch')},) and an example batch of 2")
    if _exported_in_training_mode(ep):
        notes.append("the program was exported in training mode (BatchNorm uses batch statistics / dropout is "
                     "active): results depend on the batch. Re-export after model.eval().")
    info = dict(spec=spec, kind="export", preprocessing=pre, notes=notes, fixed_input_size=fixed, channels=channels,
                channels_source="input shape of the exported program" if channels else "", static_batch=static_batch)
    try:
        model = torch.export.unflatten(ep)
    except Exception as e:
        model = ep.module()
        notes.append(
            f"torch.export.unflatten failed ({type(e).__name__}: {first_line(e)}), so the original layer hierarchy "
            "is not available: layer-level techniques cannot run, input-level techniques work."
        )
    else:
        make_deepcopyable(model)
        retyped = retype_exported_layers(model, ep)
        notes.append(
            "layer hierarchy rebuilt with torch.export.unflatten: layer names match the original model and "
            f"hooks work; {retyped} Conv2d/Linear/ReLU layers were re-typed from the export metadata, other "
            "layers appear as generic InterpreterModule. The exported graph fixes the computation, so "
            "train/eval flags have no effect."
        )
    if static_batch:
        _one_image_at_a_time(model)
    return LoadedModel(model=model, **info)


def _one_image_at_a_time(model: nn.Module) -> None:
    """Make ``model`` (which only takes a batch of 1) run a batch image by image and stack the logits."""
    base = type(model)

    def forward(self, x, *args, **kwargs):
        if not (isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[0] != 1):
            return base.forward(self, x, *args, **kwargs)
        outs = [unpack_logits(base.forward(self, x[i:i + 1], *args, **kwargs))[0] for i in range(x.shape[0])]
        return torch.cat(outs)

    model.__class__ = type(base.__name__, (base,), {"forward": forward, "__module__": __name__})


def _check_export_inputs(ep: Any, path: Path) -> tuple[int | None, int | None, bool]:
    """Check the exported program takes one (batch, 1 or 3, H, W) input.

    Returns the fixed side (None when dynamic), the channels (None when dynamic) and whether the batch is
    fixed to 1 (images then run one at a time).
    """
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
    if isinstance(b, int) and b != 1:
        raise ModelError(
            f"{path} was exported with a fixed batch size of {b}; reportgen runs batches of other sizes. Re-export "
            "with a dynamic batch dimension: torch.export.export(model.eval(), (torch.rand(2, 3, H, W),), "
            "dynamic_shapes=({0: torch.export.Dim('batch')},))"
        )
    if isinstance(c, int) and c not in (1, 3):
        raise ModelError(f"the exported program {path} takes {c}-channel images; reportgen feeds RGB (3 channels) "
                         "or greyscale (1)")
    channels = int(c) if isinstance(c, int) else None
    fixed = None
    if isinstance(h, int) or isinstance(w, int):
        if not (isinstance(h, int) and isinstance(w, int) and h == w):
            raise ModelError(f"the exported program {path} only accepts {h}x{w} inputs; reportgen feeds square "
                             "images. Re-export with a square size or dynamic height/width.")
        fixed = int(h)
    return fixed, channels, isinstance(b, int)


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


def _is_export_file(spec: str) -> bool:
    path = spec_path(spec)
    return path.suffix.lower() == ".pt2" and path.exists() and not path.is_dir()


def _is_model_file(spec: str) -> bool:
    path = spec_path(spec)
    return path.exists() and not path.is_dir()


def _load_path(spec: str, weights: str | None, trust: bool) -> LoadedModel:
    """An existing file: an archive (its content says which), or a checkpoint / Python file named as SPEC."""
    path = spec_path(spec)
    if path.suffix == ".py":
        raise ModelError(
            f"{spec} is a Python file: name the function that builds the model, e.g. {spec}:make_model "
            "(it is called with no arguments and must return a torch.nn.Module)."
        )
    return load_archive(path, spec, weights, trust)


register_form(ModelForm(
    name="export", order=40, label="`torch.export` archive", example="model.pt2",
    help="a torch.export (.pt2) archive", matches=_is_export_file, load=_load_path,
    weights={"export": "inside the torch.export archive"},
    titles={"export": lambda model, spec: Path(spec).stem or type(model).__name__}))
register_form(ModelForm(
    name="torchscript", order=50, label="TorchScript archive", example="model.pt",
    help="a TorchScript archive (.pt, .ts, from torch.jit.save)", matches=_is_model_file, load=_load_path,
    weights={"torchscript": "inside the TorchScript archive", "module": "those of the nn.Module given"},
    titles={"torchscript": lambda model, spec: getattr(model, "original_name", None) or type(model).__name__}))
