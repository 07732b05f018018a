"""Checks on the user's model before any technique runs, each failing with a one-line reason.

:func:`check_classifier` feeds one random batch through :class:`~reportgen.preprocess.PixelModel` and
checks what comes back: class scores (a ``(logits, aux)`` tuple or a dict with ``logits`` is unpacked
there, with a note), finite values (NaN/Inf is bad input, not a report of blank figures), at least two
classes. When the forward itself fails it says which input the model seems to want (channels, size).
:func:`model_title` names the model for the report's title. :func:`untrained_evidence` /
:func:`untrained_banner`: the warning that a model is, or looks, untrained.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

from .errors import ModelError
from .loading.base import model_title as _form_title
from .loading.files import first_line
from .preprocess import PixelModel, Preprocessing, unpack_logits
from .report import plural

#: input sides tried when a model fails at the requested one (MNIST, CIFAR, ImageNet-style)
_TRY_SIZES = (28, 32, 64, 96, 128, 224, 299)


def check_classifier(model: nn.Module, pre: Preprocessing, device: torch.device,
                     notes: list[str] | None = None) -> int:
    """Run one random batch; return the number of classes or raise ModelError with the reason.

    A note on how the output was unpacked (tuple, dict) is appended to ``notes``.
    """
    from .inspection.hooks import eval_mode

    pm = PixelModel(model, pre).to(device)
    x = torch.rand(2, 3, pre.size, pre.size, device=device)
    try:
        with eval_mode(model), torch.inference_mode():
            out = pm.raw(x)
    except Exception as e:
        raise ModelError(_forward_failure(pm, pre, device, e)) from None
    logits, how = unpack_logits(out)
    if how and notes is not None:
        notes.append(how + " (one place: every section sees the logits only)")
    if logits.dim() != 2 or logits.shape[0] != 2:
        raise ModelError(
            f"the model is not a classifier: its output has shape {tuple(logits.shape)}, expected (batch, "
            "num_classes). Wrap a detector/segmenter/backbone in a module that returns class logits."
        )
    if logits.shape[1] < 2:
        raise ModelError(f"the model outputs {logits.shape[1]} score per image; a classifier needs at least 2 classes")
    bad = ~torch.isfinite(logits)
    if bad.any():
        kinds = " and ".join(k for k, m in (("NaN", torch.isnan(logits)), ("Inf", torch.isinf(logits))) if m.any())
        raise ModelError(
            f"the model outputs {kinds} ({int(bad.sum())} of {logits.numel()} scores on a random input batch): "
            "its weights or forward are broken (diverged training, a division by zero?), so no report was built"
        )
    return int(logits.shape[1])


def _forward_failure(pm: PixelModel, pre: Preprocessing, device: torch.device, e: Exception) -> str:
    """One line: what failed, and the input the model seems to take when another one works."""
    msg = f"the model failed on a 2x3x{pre.size}x{pre.size} input batch ({type(e).__name__}: {first_line(e)[:300]})"
    m = re.search(r"to have (\d+) channels", str(e))
    if m and int(m.group(1)) != pre.channels:
        c = int(m.group(1))
        hint = f"pass --channels {c}" if c in (1, 3) else "reportgen feeds RGB (3) or greyscale (1) images"
        return msg + f": it takes {c}-channel images; {hint}"
    for size in _TRY_SIZES:
        if size == pre.size:
            continue
        try:
            with torch.inference_mode():
                pm.raw(torch.rand(2, 3, size, size, device=device))
        except Exception:
            continue
        return msg + f": it runs on {size}x{size} inputs (a fixed input size): pass --input-size {size}"
    return msg + ". Check --input-size and --channels, and that the model takes images"


def model_title(model: nn.Module, spec: str, kind: str) -> str:
    """The model's class name (and the torchvision name it was built from): never a path. Each model form
    says how its kind is named (``ModelForm.titles``, declared beside its loader)."""
    return _form_title(model, spec, kind)


def untrained_evidence(probs: np.ndarray) -> str | None:
    """Why the predictions look like an untrained model's (a heuristic, said as such), else None.

    ``probs``: N x C softmax probabilities of the image set. Evidence: the mean top-1 probability within a tenth of
    the way from chance (1/C) to certainty, or (with at least 10 classes and 16 images) one class predicted for
    every image. A trained model on images of its domain does neither; a random initialisation usually does both.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("untrained_evidence takes softmax probabilities (rows of non-negative numbers summing to 1)")
    n, c = p.shape
    if n == 0 or c < 2:
        return None
    chance, top1 = 1.0 / c, float(p.max(axis=1).mean())
    if top1 < chance + 0.1 * (1.0 - chance):
        return (f"its mean top-1 probability over the {plural(n, 'image')} is {top1:.3g}, near chance "
                f"(1/{c:,} = {chance:.3g})")
    counts = np.bincount(p.argmax(axis=1), minlength=c)
    if c >= 10 and n >= 16 and counts.max() == n:
        return f"it predicts one class for all {plural(n, 'image')}"
    return None


def untrained_banner(known: str, evidence: str | None) -> str:
    """The warning the console and the top of every page show ('' when there is none): what the loader knows
    (``known``), else what the predictions suggest, with what to pass instead."""
    if known:
        return f"This model is untrained: {known}. Its explanations show a random network, not a trained one."
    if evidence:
        return (f"This model looks untrained (a heuristic from its predictions on this image set: {evidence}). If "
                "it should be trained, check --weights (the file, and that it fits the architecture) and the "
                "preprocessing (--mean, --std, --input-size); if it is meant to be random, ignore this warning.")
    return ""
