"""Every hook reportgen puts on a model lives in a context manager defined here.

Each manager removes what it added in ``finally`` (also on exceptions and Ctrl-C) and
restores the train/eval flag of every module, so a technique can never leave the user's
model changed. ``count_hooks`` lets tests assert that (captum's ``test_hook_removal`` idea).
:func:`keeps_train_mode` is the same flag restoration as a decorator of public entry points.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator

import torch
from torch import nn

from .layout import Layout, detect, first_tensor, to_grid


def hookable(model: nn.Module) -> bool:
    """False for TorchScript modules, which refuse forward/backward hooks."""
    return not isinstance(model, torch.jit.ScriptModule)


def count_hooks(model: nn.Module) -> int:
    """Number of forward/backward hooks registered on ``model`` and all its submodules."""
    n = 0
    for m in model.modules():
        for attr in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
            "_state_dict_hooks",
            "_load_state_dict_pre_hooks",
        ):
            d = getattr(m, attr, None)
            if d:
                n += len(d)
    return n


def module_signature(model: nn.Module) -> list[tuple[str, type, bool]]:
    """(name, class, training) of every submodule: equal before/after means nothing was swapped."""
    return [(name, type(m), m.training) for name, m in model.named_modules()]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode; restore each module's own flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, f in flags:
            m.training = f


_PLAIN = (int, float, bool, str, type(None))


def _plain(v: object) -> bool:
    return isinstance(v, _PLAIN) or (isinstance(v, (tuple, list)) and all(isinstance(e, _PLAIN) for e in v))


@contextlib.contextmanager
def kept_attributes(model: nn.Module) -> Iterator[nn.Module]:
    """Restore every module's plain attributes (numbers, strings, flags and tuples/lists of them) afterwards.

    Some models rewrite their own configuration in ``forward``: Hugging Face Swin shrinks ``window_size`` and
    ``shift_size`` for an input smaller than a window and keeps them, so one probe at a small size breaks every
    later pass at the run's size. Whatever a forward at another size changes this way is put back."""
    saved = [(m, {k: (list(v) if isinstance(v, list) else v) for k, v in vars(m).items() if _plain(v)})
             for m in model.modules()]
    try:
        yield model
    finally:
        for m, attrs in saved:
            for k, v in attrs.items():
                if k not in vars(m) or vars(m)[k] != v:
                    try:
                        setattr(m, k, v)
                    except (AttributeError, RuntimeError):  # a read-only attribute (TorchScript): leave it
                        pass


def ordinary_buffers(model: nn.Module) -> int:
    """Replace every buffer made under ``torch.inference_mode`` by an ordinary copy (same values); the number
    replaced. Some models build a cache lazily in ``forward`` (timm's ConViT stores ``rel_indices`` for the token
    count it first sees): built during an inference pass it is an inference tensor, which later version checks and
    gradient passes refuse. Call it outside inference mode."""
    n = 0
    for m in model.modules():
        for name, b in list(m._buffers.items()):
            if b is not None and b.is_inference():
                m._buffers[name] = b.clone()
                n += 1
    return n


@contextlib.contextmanager
def frozen_params(model: nn.Module) -> Iterator[nn.Module]:
    """Turn off ``requires_grad`` on parameters (we only want gradients w.r.t. the input)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, f in flags:
            p.requires_grad_(f)


@contextlib.contextmanager
def capture_outputs(
    modules: dict[str, nn.Module], detach: bool = True, keep_last: bool = True, stop_when_complete: bool = False,
    clone: bool = True, grid: tuple[int, int] | Callable[[], tuple[int, int]] | None = None,
    layouts: dict[str, Layout] | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Record each module's forward output into the yielded dict under its name.

    ``detach=False`` keeps the graph (for gradients w.r.t. an intermediate activation).
    With ``keep_last`` only the latest call's output is kept (modules called twice).
    With ``stop_when_complete`` the forward pass ends (:class:`StopForward`) once every module ran.

    The output is cloned when captured: a following in-place op (``ReLU(inplace=True)`` in
    torchvision's VGG/AlexNet) would otherwise rewrite the stored tensor, so a convolution's
    negative pre-activations would silently come back rectified. With ``detach=False`` the clone
    is part of the graph, so gradients still flow to the input. ``clone=False`` keeps the live tensor, for
    ``torch.autograd.grad`` w.r.t. the activation itself (Grad-CAM); the caller then owns the in-place risk.

    A module that returns a tuple, a dict or a model-output object gives its first tensor
    (:func:`reportgen.inspection.layout.first_tensor`). With ``grid=(H, W)`` (the input's size) channels-last
    maps and token sequences are stored in their grid view (B, C, h, w) (:mod:`reportgen.inspection.layout`;
    ``grid`` may be a function returning the current input size),
    and ``layouts`` (when given) receives each module's detected layout.
    """
    store: dict[str, torch.Tensor] = {}
    handles = []
    wanted = set(modules)

    def make(name: str):
        def hook(_m, _inp, out):
            t = first_tensor(out)
            if not isinstance(t, torch.Tensor):
                return
            if grid is not None:
                lay = detect(t, grid() if callable(grid) else grid, _m)
                t = to_grid(t, lay)
                if layouts is not None:
                    layouts[name] = lay
            t = t.detach() if detach else t
            store[name] = t.clone() if clone else t
            if stop_when_complete and wanted <= set(store):
                raise StopForward

        return hook

    try:
        for name, m in modules.items():
            handles.append(m.register_forward_hook(make(name)))
        yield store
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def capture_input(module: nn.Module, detach: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Record the first positional input of ``module`` (e.g. the classifier's input = features)."""
    store: dict[str, torch.Tensor] = {}

    def hook(_m, inp):
        t = inp[0]
        store["input"] = t.detach() if detach else t

    h = module.register_forward_pre_hook(hook)
    try:
        yield store
    finally:
        h.remove()


class StopForward(Exception):
    """Raised by a hook (e.g. :func:`capture_until_complete`) to end a forward pass early."""


@contextlib.contextmanager
def record_layouts(modules: dict[str, nn.Module], grid: tuple[int, int]) -> Iterator[dict[str, Layout]]:
    """Record each module's output layout (not the tensor) for an input of size ``grid``, in the order the
    modules return (a container after its children)."""
    store: dict[str, Layout] = {}
    handles = []

    def make(name: str):
        def hook(m, _inp, out):
            if name not in store:
                store[name] = detect(out, grid, m)

        return hook

    try:
        for name, m in modules.items():
            handles.append(m.register_forward_hook(make(name)))
        yield store
    finally:
        for h in handles:
            h.remove()


def capture_until_complete(modules: dict[str, nn.Module],
                           grid: tuple[int, int] | Callable[[], tuple[int, int]] | None = None):
    """Like ``capture_outputs(modules, detach=False)``, but once every module has produced its
    output in a forward pass, raise :class:`StopForward` (the rest of the network is skipped).

    The caller catches ``StopForward``; ``store`` is cleared by the caller between passes.
    Used by image optimisation when the objective needs only intermediate layers.
    """
    return capture_outputs(modules, detach=False, stop_when_complete=True, grid=grid)


def keeps_train_mode(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: when the first argument is an ``nn.Module``, every module's train/eval flag is restored after."""
    @functools.wraps(fn)
    def wrapper(model: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(model, nn.Module):
            return fn(model, *args, **kwargs)
        with eval_mode(model):
            return fn(model, *args, **kwargs)

    return wrapper


@contextlib.contextmanager
def rewrite_outputs(modules: dict[str, nn.Module], fn) -> Iterator[None]:
    """Forward hooks (with keyword arguments) calling ``fn(name, module, args, kwargs, output)``; a non-None
    return value replaces the module's output for the rest of the forward pass (e.g. the same attention
    computed eagerly, so its weights are part of the graph). Removed in ``finally``."""
    handles = []

    def make(name: str):
        def hook(m, args, kwargs, out):
            return fn(name, m, args, kwargs, out)

        return hook

    try:
        for name, m in modules.items():
            handles.append(m.register_forward_hook(make(name), with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()
