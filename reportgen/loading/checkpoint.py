"""Checkpoints: find the state dict, strip wrapper prefixes, load strictly with a readable diff."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import ModelError
from .files import existing_file, first_line, read_weights
from ..report import plural


#: state-dict containers found in training checkpoints, in order of preference
_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "module", "model_ema", "ema")


#: prefixes added by DataParallel / DDP, Lightning-style wrappers and torch.compile
_STRIP_PREFIXES = ("module.", "model.", "_orig_mod.")


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


def extract_state_dict(obj: Any, source: str, _depth: int = 0) -> tuple[Mapping[str, Any], str]:
    """Find the state dict in a checkpoint; returns it and how it was found ('' for a plain one)."""
    if isinstance(obj, nn.Module):
        return obj.state_dict(), f"state dict of the pickled {type(obj).__name__} module"
    if _is_state_dict(obj):
        return obj, ""
    if isinstance(obj, Mapping) and _depth < 3:
        for key in _CHECKPOINT_KEYS:
            if key in obj:
                try:
                    sd, how = extract_state_dict(obj[key], source, _depth + 1)
                except ModelError:
                    continue
                return sd, f"under the {key!r} key" + (f", {how}" if how else "")
        keys = ", ".join(repr(k) for k in list(obj)[:8])
        raise ModelError(
            f"{source} holds a dict (keys {keys}{', ...' if len(obj) > 8 else ''}) but no state dict: expected "
            "name -> tensor entries, or one under 'state_dict', 'model_state_dict', 'model' or 'net'"
        )
    raise ModelError(f"{source} holds a {type(obj).__name__}, not a state dict (name -> tensor) or a model")


def rekey(sd: Mapping[str, Any], fn) -> OrderedDict:
    out = OrderedDict((fn(k), v) for k, v in sd.items())
    meta = getattr(sd, "_metadata", None)
    if meta is not None:
        out._metadata = OrderedDict((fn(k) if k else k, v) for k, v in meta.items())  # type: ignore[attr-defined]
    return out


def match_prefixes(model_sd: Mapping[str, Any], sd: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
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
                    c2 = rekey(cand, lambda k, p=p: k[len(p):] if k.startswith(p) else k)
                    s = score(c2)
                    if s > best_score:
                        best, best_score, best_strips = c2, s, strips + [p]
                    nxt.append((c2, strips + [p]))
        frontier = nxt
    if best_strips:
        return best, "stripped key prefix " + " then ".join(repr(p) for p in best_strips)
    return sd, ""


@dataclass
class StateDiff:
    missing: list[str]
    unexpected: list[str]
    shapes: list[tuple[str, tuple[int, ...], tuple[int, ...]]]  # (key, file shape, model shape)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.shapes)


def state_diff(model_sd: Mapping[str, Any], sd: Mapping[str, Any]) -> StateDiff:
    missing = [k for k in model_sd if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in model_sd]
    shapes = []
    for k, v in sd.items():
        if k in model_sd and isinstance(v, torch.Tensor) and tuple(v.shape) != tuple(model_sd[k].shape):
            shapes.append((k, tuple(v.shape), tuple(model_sd[k].shape)))
    return StateDiff(missing, unexpected, shapes)


def head_classes(diff: StateDiff) -> int | None:
    """N when the only mismatches are classifier outputs (first dimension N instead of the default)."""
    if diff.missing or diff.unexpected or not diff.shapes:
        return None
    ns = {f[0] for _, f, m in diff.shapes if len(f) == len(m) and f[1:] == m[1:] and len(f) >= 1}
    if len(ns) == 1 and all(len(f) == len(m) and f[1:] == m[1:] for _, f, m in diff.shapes):
        return int(next(iter(ns)))
    return None


def _mismatch_message(diff: StateDiff, source: str, what: str, sd: Mapping[str, Any]) -> str:
    def few(items: list[str]) -> str:
        return ", ".join(items[:5]) + (f", ... ({len(items)} in all)" if len(items) > 5 else "")

    parts = []
    if diff.missing:
        parts.append(f"{plural(len(diff.missing), 'missing key')}: {few(diff.missing)}")
    if diff.unexpected:
        parts.append(f"{plural(len(diff.unexpected), 'unexpected key')}: {few(diff.unexpected)}")
    if diff.shapes:
        parts.append(f"{len(diff.shapes)} shape mismatch(es): " + few(
            [f"{k} (file {tuple(f)} vs model {tuple(m)})" for k, f, m in diff.shapes]))
    msg = f"the weights in {source} do not fit {what}: " + "; ".join(parts) + "."
    if diff.unexpected and len(diff.unexpected) == len(sd):
        msg += " None of the file's keys match: are these weights for this architecture?"
    return msg + " Check that the SPEC builds the architecture the weights were trained with."


def load_strict(model: nn.Module, sd: Mapping[str, Any], source: str, what: str) -> None:
    diff = state_diff(model.state_dict(), sd)
    if not diff.clean:
        raise ModelError(_mismatch_message(diff, source, what, sd))
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise ModelError(f"the weights in {source} do not fit {what}: {first_line(e)}") from None


def apply_weights_file(model: nn.Module, weights: str, trust: bool, what: str) -> tuple[str, list[str]]:
    """Load ``--weights`` into ``model`` (strict); returns the path and notes."""
    path = existing_file(weights, "--weights")
    obj, notes = read_weights(path, trust)
    sd, how = extract_state_dict(obj, f"--weights {path}")
    sd, strip = match_prefixes(model.state_dict(), sd)
    how = ", ".join(x for x in (how, strip) if x)
    load_strict(model, sd, f"--weights {path}", what)
    return str(path), [f"weights from --weights {path}" + (f" ({how})" if how else "")] + notes
