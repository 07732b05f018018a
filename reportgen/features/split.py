"""The per-image sections across ``torchrun`` ranks: each rank computes a share of the images, every rank gets all.

After the shared feature pass (:mod:`reportgen.features.distributed`) the ranks other than 0 do not stop: they
:func:`serve` rank 0. Before a section of :data:`SPLIT_SECTIONS` runs its code on rank 0 (not served from the
cache, not unsupported), :func:`section` sends its id and the run's configuration (re-planned by ``--budget``) to
every rank, and every rank runs the same section code. Its per-image work goes through :func:`split_rows` (the
run's map store, :mod:`reportgen.techniques._map_store`, the saliency, Grad-CAM, Integrated Gradients, occlusion and
mistakes maps) or :class:`SplitForward` (the perturbation passes of faithfulness): the work items ("keys", which
describe the work completely) are split in contiguous shares, each rank computes its share and the results are
gathered on every rank, in order. Per-image random streams are keyed by image index, so the results do not depend
on the split; the report is rank 0's and equals a one-process build's.

Every message is one ``all_gather_object`` (gloo), rank 0's entry saying what it is doing; so no failure can leave
a rank waiting on another:
* a rank whose share raises sends the error; rank 0 computes that share itself (a failure there is the section's
  error, as in one process), the other ranks stop that section;
* a rank whose keys differ from rank 0's (its state went another way) takes no share and stops that section;
  a rank that finished or left a section answers rank 0's later calls as idle; rank 0 computes what no rank took;
* a rank that meets rank 0's next order inside a section leaves the section and takes the order.
Only rank 0 reads or writes the cache, renders and publishes. Not a technique.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from .distributed import Group

if TYPE_CHECKING:
    from ..context import Ctx

R = TypeVar("R")

# the sections whose work is image by image: their maps and perturbation passes are split across the ranks
SPLIT_SECTIONS = ("saliency", "smoothgrad", "integrated_gradients", "gradcam", "occlusion", "sanity",
                  "faithfulness", "mistakes")
MIN_SPLIT_ROWS = 8  # smaller forward batches run whole on every rank: a message per pass would cost more
SHARE_FEATURES_BYTES = 256 << 20  # the merged feature record is sent to the other ranks up to this size


class Diverged(Exception):
    """This rank (not 0) stops following rank 0 in the running section (rank 0 finishes it without this rank)."""


@dataclass
class Ranks:
    """The state of the split on this rank: ``active`` inside a split section (on every rank), ``broken`` after a
    failed collective (everything local from then on), ``pending`` an order a rank met inside a section, ``calls``
    the calls split so far (``full``: those every rank followed, ``divided``: those whose work went to more than one
    rank), ``busy`` the CPU seconds this rank spent in its shares, ``sections`` the split sections that ran."""

    rank: int
    size: int
    active: bool = False
    broken: bool = False
    pending: Any = None
    calls: int = 0
    full: int = 0
    divided: int = 0
    busy: float = 0.0
    sections: list[str] = field(default_factory=list)
    log: Callable[[str], None] = print


def _exchange(st: Ranks, msg: tuple) -> list:
    got: list[Any] = [None] * st.size
    torch.distributed.all_gather_object(got, msg)
    return got


def split_ids(ids: Sequence[str]) -> list[str]:
    """The sections of ``ids`` that split their images across ranks."""
    return [i for i in ids if i in SPLIT_SECTIONS]


def begin(ctx: Ctx, group: Group | None, ids: Sequence[str], log: Callable[[str], None] = lambda s: None) -> None:
    """After the shared feature pass, on every rank: rank 0 sends the merged feature record (the others scanned a
    shard only) and says which sections are split; ``ctx.ranks`` holds the state."""
    if group is None:
        return
    st = ctx.ranks = Ranks(group.rank, group.size, log=log)
    names = split_ids(ids)
    if st.rank == 0 and names and ctx.feature_store is None:
        ctx.features()  # no pass was needed: the record from the cache
    store = ctx.feature_store if st.rank == 0 and names else None
    if store is not None:  # the pixel vectors stay on rank 0; the features too when they are large
        pen = np.asarray(store.penultimate)
        if store.logits.nbytes + pen.nbytes > SHARE_FEATURES_BYTES:
            pen = pen[:0]
        store = replace(store, logits=np.asarray(store.logits), penultimate=pen, pixels=None)
        if store.logits.nbytes > SHARE_FEATURES_BYTES:
            store = None  # the sections that read them diverge on the other ranks: rank 0 computes alone
    got = _exchange(st, ("features", store))
    if st.rank > 0 and got[0][1] is not None:
        ctx.feature_store = got[0][1]
    if names:
        log(f"Distributed: {', '.join(names)} split their images across {st.size} ranks")


def end(ctx: Ctx | None) -> None:
    """Rank 0, at the end of the build: release the other ranks from :func:`serve`."""
    st = ctx.ranks if ctx is not None else None
    if st is not None and st.rank == 0 and not st.broken:
        st.broken = True  # once: from here everything is rank 0's
        got: list = []
        with contextlib.suppress(Exception):
            got = _exchange(st, ("stop",))
        if st.sections:
            busy = [st.busy] + [g[1] if g and g[0] == "idle" and len(g) > 1 else float("nan") for g in got[1:]]
            st.log(f"Distributed: {st.calls} per-image calls in {', '.join(st.sections)}: all {st.size} ranks took "
                   f"part in {st.full} (rank 0 alone in the rest), {st.divided} divided their work across ranks; "
                   "CPU s in the shares per rank: " + ", ".join(f"{b:.1f}" for b in busy))


def serve(ctx: Ctx, run: Callable[[str], Any]) -> None:
    """A rank other than 0: run each section rank 0 orders (``run(id)``; its section is discarded) until it stops."""
    from ..pictures import figures_unseen

    st: Ranks | None = ctx.ranks
    if st is None:
        return
    figures_unseen()  # this rank's sections are discarded: drawing their figures would only delay its shares
    while True:
        msg = st.pending
        st.pending = None
        if msg is None:
            try:
                msg = _exchange(st, ("idle", st.busy))[0]
            except Exception:  # rank 0 is gone: nothing left to serve
                st.broken = True
                return
        if msg[0] == "stop":
            return
        if msg[0] == "order":
            ctx.config = msg[2]
            st.active = True
            try:
                run(msg[1])
            finally:
                st.active = False
        # anything else: rank 0's call in a section this rank has left; it took no share


@contextlib.contextmanager
def section(ctx: Ctx, sid: str) -> Iterator[None]:
    """Around a section's code on rank 0: a split section is ordered on every rank first."""
    st: Ranks | None = getattr(ctx, "ranks", None)
    if st is None or st.rank != 0 or st.active or st.broken or sid not in SPLIT_SECTIONS:
        yield
        return
    try:
        _exchange(st, ("order", sid, ctx.config))
    except Exception:
        st.broken = True
        yield
        return
    st.active = True
    st.sections.append(sid)
    try:
        yield
    finally:
        st.active = False


def _local(keys: Sequence, fn: Callable[[list], Sequence[R]], have: dict[int, R]) -> list[R]:
    todo = [j for j in range(len(keys)) if j not in have]
    out = dict(have)
    if todo:
        out.update(zip(todo, fn([keys[j] for j in todo])))
    return [out[j] for j in range(len(keys))]


def _compute(st: Ranks, fn: Callable[[list], Sequence[R]], keys: list) -> list[R]:
    """``fn(keys)``, nothing in it split again; a single key goes as two (see :func:`split_rows`)."""
    st.active = False
    t0 = time.process_time()
    try:
        got = list(fn(keys * 2 if len(keys) == 1 else keys))[:len(keys)] if keys else []
    finally:
        st.active = True
        st.busy += time.process_time() - t0
    if len(got) != len(keys):
        raise ValueError(f"{len(got)} results for {len(keys)} keys")
    return got


def _run_share(st: Ranks, fn: Callable[[list], Sequence[R]], keys: list) -> tuple[str, Any]:
    try:
        return "ok", _compute(st, fn, keys)
    except Exception as e:  # noqa: BLE001 - sent to every rank; rank 0 computes the share itself
        return "err", f"{type(e).__name__}: {e}"


def split_rows(ctx: Ctx, keys: Sequence, fn: Callable[[list], Sequence[R]], have: dict[int, R] | None = None, *,
               always: bool = False) -> list[R]:
    """``fn`` over ``keys`` (one result per key, in order), the keys not in ``have`` (position -> result) split across
    the ranks inside a split section; ``fn(keys[todo])`` in one call otherwise. ``keys`` must describe the work
    (equal keys: equal results on any rank); ``fn`` gets a list of keys and returns their results (picklable).
    A share holds 2 keys or more (one key goes as two, the second result dropped): a model pass over one image takes
    other kernels than a batch (a matrix-vector product in the classifier) and differs in the last bits. Under 3
    keys nothing is divided: every rank computes them itself, without a message (``always``: with one, so that
    every rank gets rank 0's results, see :func:`agree`)."""
    have = dict(have or {})
    st: Ranks | None = getattr(ctx, "ranks", None)
    if st is None or not st.active or st.broken or (len(keys) < 3 and not always):
        return _local(keys, fn, have)
    if st.pending is not None:  # this rank already met rank 0's next order
        raise Diverged("rank 0 left the section")
    keys = list(keys)
    try:
        got = _exchange(st, ("split", keys, have if st.rank == 0 else None))
    except Exception:
        st.broken = True
        if st.rank == 0:
            return _local(keys, fn, have)
        raise Diverged("a collective failed") from None
    head = got[0]
    if st.rank > 0 and head[0] != "split":  # rank 0 has moved on
        st.pending = head
        raise Diverged("rank 0 left the section")
    keys0, have0 = head[1], head[2]
    parts = [0] + [r for r in range(1, st.size) if got[r][0] == "split" and got[r][1] == keys0]
    if st.rank not in parts:
        raise Diverged("this rank's work differs from rank 0's")
    todo = [j for j in range(len(keys0)) if j not in have0]
    n = max(1, min(len(parts), (len(todo) + 1) // 2))  # shares of 2 or more (a last one of 1 goes as 2)
    shares = [[int(j) for j in a] for a in np.array_split(np.asarray(todo, dtype=np.int64), n)]
    shares += [[] for _ in range(len(parts) - n)]
    mine = shares[parts.index(st.rank)]
    res = _run_share(st, fn, [keys0[j] for j in mine])
    try:
        got = _exchange(st, ("rows", res))
    except Exception:
        st.broken = True
        if st.rank == 0:
            return _local(keys, fn, have)
        raise Diverged("a collective failed") from None
    if st.rank > 0 and got[0][0] != "rows":  # rank 0 was interrupted and has moved on
        st.pending = got[0]
        raise Diverged("rank 0 left the section")
    out = dict(have0)
    for p, share in zip(parts, shares):
        kind, val = got[p][1] if got[p][0] == "rows" else ("err", "left")
        if kind == "ok":
            out.update(zip(share, val))
        elif st.rank == 0:  # that rank failed: rank 0 computes the share (its own failure is the section's error)
            out.update(zip(share, _compute(st, fn, [keys0[j] for j in share])))
        else:
            raise Diverged(f"rank {p} failed its share: {val}")
    st.calls += 1
    st.full += len(parts) == st.size
    st.divided += n > 1
    return [out[j] for j in range(len(keys0))]


def agree(ctx: Ctx, key: Any, value: R) -> R:
    """Rank 0's ``value`` on every rank inside a split section (a choice each rank could make differently, e.g. by
    timing); ``value`` elsewhere."""
    return split_rows(ctx, [("agree", key)], lambda _: [value], always=True)[0]


def tensor_digest(x: torch.Tensor) -> str:
    """A digest of a tensor's values and shape (work keys of passes over computed copies)."""
    a = x.detach().cpu().contiguous()
    h = hashlib.blake2b(str((tuple(a.shape), str(a.dtype))).encode(), digest_size=16)
    h.update(a.view(torch.uint8).numpy().tobytes() if a.numel() else b"")
    return h.hexdigest()


class SplitForward(torch.nn.Module):
    """``model``'s forward with the batch's rows split across the ranks inside a split section (forward-only passes
    over many copies: faithfulness's perturbations). Its ``source`` is the model's."""

    def __init__(self, ctx: Ctx, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.ctx = (ctx,)  # a tuple: not a submodule
        self.source = getattr(model, "source", "the model's own forward")
        self.kind = type(model).__name__  # the ranks agree on which forward they run

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        st = getattr(self.ctx[0], "ranks", None)
        if st is None or not st.active or st.broken or len(x) < MIN_SPLIT_ROWS:
            return self.model(x)
        tag = (self.kind, tensor_digest(x))

        def rows(keys: list) -> list[torch.Tensor]:
            sel = torch.as_tensor([k[1] for k in keys], device=x.device)
            return list(self.model(x.index_select(0, sel)).detach().cpu())

        got = split_rows(self.ctx[0], [(tag, j) for j in range(len(x))], rows)
        return torch.stack(got).to(x.device)


__all__ = ["SPLIT_SECTIONS", "Diverged", "Ranks", "SplitForward", "agree", "begin", "end", "section", "serve",
           "split_ids", "split_rows", "tensor_digest"]
