"""BatchNorm folded into the convolution before it: the same function, fewer passes over memory.

In eval mode a BatchNorm after a convolution is an affine map per channel, so the pair is one convolution:
``BN(W * x + b) = (gamma / s) W * x + (gamma / s)(b - mu) + beta`` with ``s = sqrt(var + eps)``
(Ioffe & Szegedy 2015; the "folding" every inference engine does). The folded copy computes the same logits
and the same input gradients up to float rounding, and its backward pass skips every BatchNorm.

Used where a technique needs the model's output and its gradient with respect to the input (and, through
``ctx.output_model_with``, a layer that survives the folding): the copy is traced with :mod:`torch.fx`, so a
BatchNorm's name no longer exists in it, and other hooks belong on ``ctx.pixel_model``. A model fx cannot trace
(data-dependent control flow), one without a Conv -> BatchNorm pair, or one whose folded copy does not reproduce
its outputs on ``example`` (a convolution subclass that transforms its weights, say weight standardisation) is
returned unchanged: the speed-up is optional, the result is not.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class _LeafTracer(fx.Tracer):
    """Convolutions and BatchNorms stay single nodes, also user subclasses (e.g. a 'SAME'-padding Conv2d)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, _CONVS + _NORMS) or super().is_leaf_module(m, qualname)


def fold_batchnorm(model: nn.Module, example: torch.Tensor | None = None,
                   rtol: float = 1e-3) -> tuple[nn.Module, int]:
    """(an eval-mode copy of ``model`` with every Conv -> BatchNorm pair folded, number of pairs folded).

    ``model`` itself is never modified; ``(model, 0)`` when nothing can be folded or fx cannot trace it.
    Only pairs where the convolution's output feeds the BatchNorm alone are folded, and only BatchNorms
    that use running statistics with a matching channel count. With ``example`` (a model input), the folded
    copy must give the same outputs on it (within ``rtol`` of their largest magnitude) or nothing is folded.
    """
    try:
        work = copy.deepcopy(model).eval()
        graph = _LeafTracer().trace(work)
    except Exception:  # noqa: BLE001 - any model fx cannot trace keeps its own forward
        return model, 0
    modules = dict(work.named_modules())
    folded = 0
    for node in list(graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), _NORMS):
            continue
        src = node.args[0] if node.args else None
        if not (isinstance(src, fx.Node) and src.op == "call_module" and len(src.users) == 1
                and isinstance(modules.get(src.target), _CONVS)):
            continue
        conv, bn = modules[src.target], modules[node.target]
        if (bn.running_mean is None or bn.running_var is None or not bn.track_running_stats
                or conv.out_channels != bn.num_features):
            continue
        with torch.no_grad():
            w, b = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps,
                                        bn.weight, bn.bias)
        conv.weight = nn.Parameter(w.detach(), requires_grad=False)
        conv.bias = nn.Parameter(b.detach(), requires_grad=False)
        node.replace_all_uses_with(src)
        graph.erase_node(node)
        folded += 1
    if not folded:
        return model, 0
    graph.lint()
    out = fx.GraphModule(work, graph).eval()
    for p in out.parameters():
        p.requires_grad_(False)
    if example is not None and not _same_outputs(model, out, example, rtol):
        return model, 0
    return out, folded


def _same_outputs(a: nn.Module, b: nn.Module, x: torch.Tensor, rtol: float) -> bool:
    """Whether ``a`` and ``b`` (both in eval mode) give the same tensors on ``x``, within ``rtol`` of the largest."""
    from torch.utils._pytree import tree_leaves

    was = a.training
    try:
        a.eval()
        with torch.inference_mode():
            ya = [t for t in tree_leaves(a(x)) if isinstance(t, torch.Tensor)]
            yb = [t for t in tree_leaves(b(x)) if isinstance(t, torch.Tensor)]
    except Exception:  # noqa: BLE001 - a copy that cannot run is not used
        return False
    finally:
        a.train(was)
    if len(ya) != len(yb):
        return False
    for u, v in zip(ya, yb):
        if u.shape != v.shape:
            return False
        scale = float(u.float().abs().max()) if u.numel() else 0.0
        if u.numel() and float((u.float() - v.float()).abs().max()) > rtol * max(scale, 1e-6):
            return False
    return True
