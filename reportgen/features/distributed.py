"""The dataset stages under ``torch.distributed``: ``torchrun --nproc-per-node N -m reportgen build ...``.

When launched by torchrun (``torch.distributed.is_torchelastic_launched()``, or ``RANK`` / ``WORLD_SIZE`` set
with a world larger than one), every process loads the model and lists the same image set, then each rank
scans its shard (every ``WORLD_SIZE``-th image: logits, penultimate features, pixel vectors, per-layer top-k
and sums) and :func:`merge_pass` gathers the shards on rank 0 (``gather_object`` over gloo): rows back in
image order, per-channel top-k merged with the one-process tie-break, sums added. Rank 0 then runs the
techniques and renders, exactly as a one-process build would; the other ranks compute their shares of
the per-image sections' images (:mod:`reportgen.features.split`) and exit 0.

Several machines: ``torchrun --nnodes M --nproc-per-node N --node-rank R --rdzv-endpoint HOST:PORT -m reportgen
build ...`` on each, with the same model, image folder (a shared file system or identical copies) and options;
rank 0 (on the node that has it) writes the report, so ``--out`` need only be writable there.

Rank 0 decides whether a pass is needed (its cache may already hold the record) and broadcasts it, so the
ranks never disagree; the workers do not read or write the cache.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .rowstore import Rows

if TYPE_CHECKING:
    from ..context import Ctx

@dataclass(frozen=True)
class Group:
    rank: int
    size: int


def launched() -> bool:
    """True under torchrun (or RANK/WORLD_SIZE set) with more than one process."""
    if not torch.distributed.is_available():
        return False
    env = torch.distributed.is_torchelastic_launched() or ("RANK" in os.environ and "WORLD_SIZE" in os.environ)
    return bool(env) and int(os.environ.get("WORLD_SIZE", "1")) > 1


def init() -> Group | None:
    """Join the process group (gloo: the gathered records are CPU arrays) or None when not launched."""
    if not launched():
        return None
    dist = torch.distributed
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    return Group(rank=dist.get_rank(), size=dist.get_world_size())


def close(group: Group | None) -> None:
    """Every rank leaves together (a barrier, then the group is destroyed): a rank that destroyed its group while
    another still held a connection to it aborted in gloo's background thread at exit (one run in two)."""
    if group is not None and torch.distributed.is_initialized():
        try:
            torch.distributed.barrier()
        except Exception:  # noqa: BLE001 - a rank already gone: nothing to wait for
            pass
        torch.distributed.destroy_process_group()


def group_of(ctx: Ctx) -> Group | None:
    """The group the context's feature pass is shared with (``RunContext.group``; never a module global)."""
    return ctx.group


def agree_needed(group: Group, mine: bool) -> bool:
    """Rank 0's answer to "is a pass needed?", the same on every rank."""
    need = [mine]
    torch.distributed.broadcast_object_list(need, src=0)
    return bool(need[0])


@contextlib.contextmanager
def joined(ctx: Ctx, group: Group):
    """Within: the context's feature pass scans this rank's shard and merges on rank 0."""
    ctx.group = group
    try:
        yield
    finally:
        ctx.group = None


def merge_pass(ctx: Ctx, group: Group, mine: list[int], mats: dict, rgb_sum, n_pix: int, tops: dict, inner: dict,
               key: str | None):
    """Gather every rank's shard on rank 0 and merge; other ranks get their own shard back unchanged."""
    payload = (mine, mats, rgb_sum, n_pix, tops, inner)
    got: list[Any] | None = [None] * group.size if group.rank == 0 else None
    torch.distributed.gather_object(payload, got, dst=0)
    if got is None:  # not rank 0
        return mats, {}, rgb_sum, n_pix, tops, inner
    rows = Rows(ctx, len(ctx.images), key)
    dtypes = {"logits": np.float32, "penultimate": np.float16, "pixels": np.float16}
    try:
        for r, (idx, m, s, n, t, inn) in enumerate(got):
            for name, arr in m.items():
                rows.write(name, np.asarray(arr), list(idx), dtypes.get(name, arr.dtype))
            if r == 0:
                continue
            rgb_sum = rgb_sum + s
            n_pix += n
            for name in tops:
                if name in t:
                    tops[name].merge(t[name])
                if inner.get(name) is not None and inn.get(name) is not None:
                    inner[name].merge(inn[name])
        mats, refs = rows.finish()
    except BaseException:
        rows.discard()
        raise
    return mats, refs, rgb_sum, n_pix, tops, inner
