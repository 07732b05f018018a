"""Model-parameter randomisation for the sanity checks of Adebayo et al. (2018), on copies only.

* :func:`param_layers` — the modules that own parameters, in the order the forward pass runs them.
* :func:`randomized_copy` — a ``copy.deepcopy`` of the model with the named layers re-initialised
  (the user's model and its ``state_dict`` are never touched).
* cascading randomisation re-initialises the top ``k`` layers (``k = 1 .. n``, from the logits down);
  independent randomisation re-initialises one layer at a time.

Re-initialisation: weights and biases of a layer with fan-in ``f`` are drawn ``U(-1/sqrt(f), 1/sqrt(f))``
(PyTorch's default scale for convolutions and linear layers); normalisation layers get ``gamma = 1``,
``beta = 0`` and fresh running statistics (mean 0, variance 1). The draws come from a CPU generator seeded
per layer, so a layer gets the same new weights in every cascade stage and in the independent test.
"""

from __future__ import annotations

import copy
import math
import zlib
from typing import cast

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from ..inspection.hooks import capture_outputs, eval_mode
from ..inspection.layers import resolve_layer

NORM_TYPES = (_NormBase, nn.GroupNorm, nn.LayerNorm)


def param_layers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Dotted names of modules with their own parameters, in forward execution order (uncalled ones last)."""
    owners = {n: m for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))}
    with eval_mode(model), torch.inference_mode(), capture_outputs(owners) as store:
        model(example[:1])
    ran = [n for n in store]  # insertion order = order the modules returned (leaves: execution order)
    return ran + [n for n in owners if n not in store]


@torch.no_grad()
def reinit_(module: nn.Module, seed: int) -> None:
    """Re-initialise ``module``'s own parameters (and norm statistics) in place, from ``seed``."""
    gen = torch.Generator().manual_seed(int(seed))
    if isinstance(module, NORM_TYPES):
        for name, p in module.named_parameters(recurse=False):
            p.fill_(1.0 if name == "weight" else 0.0)
        if getattr(module, "running_mean", None) is not None:
            cast(torch.Tensor, module.running_mean).zero_()
            cast(torch.Tensor, module.running_var).fill_(1.0)
        return
    params = dict(module.named_parameters(recurse=False))
    w = params.get("weight")
    fan_in = w[0].numel() if w is not None and w.dim() > 1 else (w.numel() if w is not None else 1)
    bound = 1.0 / math.sqrt(max(1, fan_in))
    for p in params.values():
        new = (torch.rand(p.shape, generator=gen, dtype=torch.float32) * 2 - 1) * bound
        p.copy_(new.to(p.device, p.dtype))


def layer_seed(seed: int, name: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2 ** 31)


def randomized_copy(model: nn.Module, names: list[str], seed: int, root: str = "") -> nn.Module:
    """A deep copy of ``model`` with the layers ``names`` re-initialised. ``root`` is the attribute path
    of the user's model inside ``model`` (``"model"`` for a :class:`~reportgen.preprocess.PixelModel`)."""
    twin = copy.deepcopy(model)
    base = resolve_layer(twin, root) if root else twin
    for n in names:
        reinit_(resolve_layer(base, n), layer_seed(seed, n))
    return twin.eval()


def cascade_stages(n_layers: int, stages: int) -> list[int]:
    """How many top layers are randomised at each shown stage: ``stages`` counts spread over 1..n, ending at n."""
    if n_layers <= 0:
        return []
    stages = max(1, min(stages, n_layers))
    ks = sorted({max(1, round(n_layers * (s + 1) / stages)) for s in range(stages)})
    return ks


__all__ = ["param_layers", "reinit_", "randomized_copy", "cascade_stages", "layer_seed"]


def random_other_classes(targets, num_classes: int, seed: int):
    """A random class other than each target, for the random-logit test (Sixt, Granz & Landgraf 2020): draw
    ``r ~ U{0..K-2}`` per image from ``numpy.random.RandomState(seed)`` and take the ``r``-th class of the others
    in index order (Quantus's ``RandomLogit`` draw, so the same seed picks the same classes)."""
    import numpy as np

    t = np.asarray(targets, dtype=np.int64).reshape(-1)
    if num_classes < 2:
        raise ValueError("the random-logit test needs at least two classes")
    r = np.random.RandomState(int(seed) % (2 ** 32)).randint(0, num_classes - 1, len(t))
    return (r + (r >= t)).astype(np.int64)


__all__ += ["random_other_classes"]
