"""The policy every technique runs under, enforced once by :func:`reportgen.build.run_technique`.

As pytorch-grad-cam's ``BaseCAM`` calls ``eval()`` once for every CAM, each technique runs inside
:func:`isolated`: every module in eval mode (:func:`~reportgen.inspection.hooks.eval_mode`), parameters frozen
(:func:`~reportgen.inspection.hooks.frozen_params`; techniques want gradients w.r.t. the input only), and on the way
out, *still inside that isolation*, a check that the technique left the model as it found it:

* no forward/backward hook added (a leaked hook is removed, and reported);
* no buffer changed (a BatchNorm's running statistics move when a forward pass runs in train mode): a
  cheap fingerprint (identity, version counter, sum) before and after; a moved buffer is restored;
* no parameter written in place (version counters), no submodule swapped and no train/eval flag flipped.

A violation becomes :class:`PolicyViolation`, so the leaking technique fails its own section only.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator

import torch
from torch import nn

from .cache import MemoKey
from .inspection.hooks import eval_mode, frozen_params, kept_attributes, module_signature, ordinary_buffers
from .report import plural

if TYPE_CHECKING:
    from .context import Ctx

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_state_dict_hooks", "_load_state_dict_pre_hooks")
RESTORE_LIMIT = 256 << 20  # bytes of buffers copied so a moved buffer can be put back


class PolicyViolation(RuntimeError):
    """A technique changed the model it was given (hooks, buffers, parameters or modules)."""


def _hook_ids(model: nn.Module) -> dict[tuple[int, str], set]:
    return {(id(m), attr): set(getattr(m, attr, None) or ())
            for m in model.modules() for attr in _HOOK_DICTS}


def remove_new_hooks(model: nn.Module, before: dict[tuple[int, str], set]) -> int:
    """Remove every hook registered on ``model`` since ``before`` (from :func:`_hook_ids`); return how many."""
    n = 0
    for m in model.modules():
        for attr in _HOOK_DICTS:
            d = getattr(m, attr, None)
            if not d:
                continue
            for k in [k for k in d if k not in before.get((id(m), attr), ())]:
                del d[k]
                n += 1
    return n


def _fingerprints(tensors: dict[str, torch.Tensor]) -> dict[str, tuple]:
    """Cheap, per tensor: identity, version counter (bumped by every in-place write), shape, dtype and sum
    (float32: MPS has no float64; the sums of all tensors come back in one transfer per device)."""
    sums: dict[str, float] = {}
    by_device: dict[torch.device, list[str]] = {}
    for k, t in tensors.items():
        by_device.setdefault(t.device, []).append(k)
    for names in by_device.values():
        with torch.no_grad():
            vals = torch.stack([tensors[k].detach().float().sum() for k in names]).cpu().tolist()
        sums.update(zip(names, vals))
    return {k: (t.data_ptr(), -1 if t.is_inference() else t._version, tuple(t.shape), t.dtype, sums[k])
            for k, t in tensors.items()}


@contextlib.contextmanager
def isolated(model: nn.Module, name: str = "technique") -> Iterator[list[str]]:
    """Run the body under eval mode + frozen parameters and check it left ``model`` untouched.

    Yields a list; on exit it holds one line per violation (also raised as :class:`PolicyViolation`
    when the body itself succeeded). Leaked hooks are removed and moved buffers restored either way.
    """
    hooks = _hook_ids(model)
    ordinary_buffers(model)  # caches a model built during an earlier inference pass (inspection.hooks)
    buffers = dict(model.named_buffers())
    prints = _fingerprints(buffers)
    size = sum(b.numel() * b.element_size() for b in buffers.values())
    saved = {k: b.detach().clone() for k, b in buffers.items()} if size <= RESTORE_LIMIT else None
    params = {k: (p.data_ptr(), p._version) for k, p in model.named_parameters()}
    signature = [(n, t, False) for n, t, _ in module_signature(model)]  # as eval_mode leaves it
    problems: list[str] = []
    body_ok = False
    with eval_mode(model), frozen_params(model), kept_attributes(model):
        try:
            yield problems
            body_ok = True
        finally:
            problems.extend(_audit(model, hooks, signature, buffers, prints, saved, params))
    if problems and body_ok:
        raise PolicyViolation(f"{name} left the model changed (a bug in the technique): " + "; ".join(problems))


def _audit(model, hooks, signature, buffers, prints, saved, params) -> list[str]:
    out = []
    leaked = remove_new_hooks(model, hooks)
    if leaked:
        out.append(f"{plural(leaked, 'hook')} left registered (now removed)")
    if module_signature(model) != signature:
        out.append("a submodule was replaced or switched to train mode")
    now = dict(model.named_buffers())
    after = _fingerprints(now)
    moved = sorted(k for k in prints if k not in now or now[k] is not buffers[k] or after[k] != prints[k])
    moved += sorted(set(now) - set(prints))
    if moved:
        fixed = ""
        if saved is not None:
            with torch.no_grad():
                for k in moved:
                    if k in now and k in saved and now[k].shape == saved[k].shape:
                        now[k].copy_(saved[k])
            fixed = " (restored)"
        more = " ..." if len(moved) > 5 else ""
        out.append(f"{plural(len(moved), 'buffer')} changed: {', '.join(moved[:5])}{more}{fixed}")
    written = sorted(k for k, p in model.named_parameters() if params.get(k) != (p.data_ptr(), p._version))
    if written:
        more = " ..." if len(written) > 5 else ""
        out.append(f"{plural(len(written), 'parameter')} written: {', '.join(written[:5])}{more}")
    return out


#: whether the model's output carries a gradient to its input (:func:`_has_autograd`, once per run)
AUTOGRAD: MemoKey[bool] = MemoKey("policy.autograd")


def unsupported_reason(ctx: Ctx, info) -> str | None:
    """Why technique ``info`` cannot run on this model, from its registry metadata (None: it can)."""
    from .inspection.hooks import hookable

    if info.needs_layers and not hookable(ctx.model):
        return (f"{info.title} was skipped: it reads intermediate layers (needs_layers), through hooks, and "
                "TorchScript archives do not allow hooks. Pass the model as path/to/file.py:factory (with "
                "--weights) or as a torch.export .pt2 archive to get this section.")
    if info.needs_autograd and not ctx.memo(AUTOGRAD, lambda: _has_autograd(ctx)):
        return (f"{info.title} was skipped: it needs gradients of the model's output with respect to its input "
                "(needs_autograd), and this model's output carries no gradient.")
    if info.unsupported_if is not None:
        return info.unsupported_if(ctx)
    return None


def _has_autograd(ctx: Ctx) -> bool:
    x = torch.zeros(1, 3, ctx.pre.size, ctx.pre.size, device=ctx.device, requires_grad=True)
    try:
        with eval_mode(ctx.pixel_model), frozen_params(ctx.pixel_model), torch.enable_grad():
            return bool(ctx.pixel_model(x).requires_grad)
    except Exception:  # noqa: BLE001 - the technique itself will report what fails
        return True
