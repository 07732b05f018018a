"""Model and weights files: existence checks, archive detection, reading a weights file, TorchScript."""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError
from .base import LoadedModel


MODEL_FILE_SUFFIXES = (".py", ".pt", ".pth", ".ts", ".pt2", ".jit", ".torchscript", ".zip", ".bin", ".ckpt")


_TS_NOTE = (
    "TorchScript archive: PyTorch does not support forward hooks on ScriptModules, so layer-level "
    "techniques (activations, CAM/Grad-CAM, feature visualisation ...) cannot run on it; input-level "
    "techniques (gradients, occlusion, perturbations) work. For layer-level techniques load the Python "
    "model instead (file.py:factory with --weights) or save it with torch.export.save (.pt2)."
)


def existing_file(path: str | os.PathLike, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelError(f"{what} file not found: {p}")
    if not p.is_file():
        raise ModelError(f"{what} {p} is not a file")
    return p


def first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else ""


def archive_kind(path: Path) -> str | None:
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


def load_torchscript(path: Path, spec: str) -> LoadedModel:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise ModelError(f"cannot load the TorchScript archive {path}: {type(e).__name__}: {first_line(e)}") from None
    notes = [f"TorchScript archive {path}", _TS_NOTE]
    return LoadedModel(model=model, spec=spec, kind="torchscript", notes=notes)


def read_weights(path: Path, trust: bool) -> tuple[Any, list[str]]:
    """Read a weights file: torch.load(weights_only=not trust); archives give their state dict."""
    notes: list[str] = []
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ModelError(f"{path} is a safetensors file: install the safetensors package to read it "
                             "(pip install reportgen[timm] or reportgen[hf] include it)") from None
        try:
            return load_file(str(path), device="cpu"), notes
        except Exception as e:
            raise ModelError(f"cannot read --weights {path}: {type(e).__name__}: {first_line(e)}") from None
    kind = archive_kind(path)
    if kind == "torchscript":
        lm = load_torchscript(path, str(path))
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
            raise ModelError(f"cannot unpickle --weights {path}: {first_line(e)}") from None
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
        raise ModelError(f"cannot read --weights {path}: {type(e).__name__}: {first_line(e)}") from None
    if trust:
        notes.append(f"--trust-weights: {path} was fully unpickled (weights_only=False); only do this for "
                     "files you trust")
    return obj, notes
