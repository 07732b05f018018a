"""The forward pass over the image set behind :func:`reportgen.features.compute.compute_features`, in bounded memory.

* Rows (logits, penultimate features, pixel vectors) go straight into preallocated N-row matrices, memory-
  mapped in the cache (:mod:`reportgen.features.rowstore`), never into growing lists: peak memory does not grow with N.
* Images are decoded and resized in ``general.num_workers`` DataLoader worker processes (0: in this process),
  which prepare the next batches while the model runs on the current one.
* Per-layer statistics are streamed: a running per-channel top-k (:class:`TopK`) and sums of squares.
* Under ``torch.distributed`` (:mod:`reportgen.features.distributed`) each rank scans its shard (every ``world``-th
  image) and rank 0 merges the shards: rows by image index, top-k by (value, then the lower image index:
  the same tie-break as one process), sums added, so the merged record equals a one-process pass.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
import torch.nn.functional as F

from ..inspection import layers as layers_mod
from ..device import autocast_agrees, low_precision_dtype, scan_autocast
from .rowstore import Rows
from ..inspection.hooks import capture_input, capture_outputs, eval_mode, hookable
from .records import BaseRecord, LayerStats, field_or_none
from ..report import plural

if TYPE_CHECKING:
    from ..context import Ctx


class TopK:
    """Running per-channel top-k over images of the channel's spatial maximum (bounded memory)."""

    def __init__(self, k: int, region: tuple[int, int, int, int] | None = None):
        self.k = k
        self.region = region  # (y0, x0, y1, x1): only units in this part of the grid
        self.values: torch.Tensor | None = None  # C x k
        self.image: torch.Tensor | None = None  # C x k, set together with values
        self.pos: torch.Tensor | None = None
        self.sum: torch.Tensor | None = None
        self.sumsq: torch.Tensor | None = None
        self.count = 0
        self.shape: tuple[int, ...] = ()

    def update(self, act: torch.Tensor, idx: list[int]) -> None:
        a = act.detach().float()
        if a.dim() == 1:
            a = a[:, None]
        self.shape = tuple(a.shape[1:])
        b, c = a.shape[:2]
        if self.region is not None:
            y0, x0, y1, x1 = self.region
            a = a[:, :, y0:y1, x0:x1]
        flat = a.reshape(b, c, -1)
        vmax, pos = flat.max(dim=2)  # B x C
        if self.region is not None:  # back to positions in the full grid
            rw = x1 - x0
            pos = (pos // rw + y0) * self.shape[-1] + (pos % rw + x0)
        s = flat.sum(dim=(0, 2)).double().cpu()
        s2 = flat.double().pow(2).sum(dim=(0, 2)).cpu()
        self.sum = s if self.sum is None else self.sum + s
        self.sumsq = s2 if self.sumsq is None else self.sumsq + s2
        self.count += b * flat.shape[2]
        imgs = torch.as_tensor(idx, dtype=torch.int64)[None, :].expand(c, b)
        self._keep(vmax.t().cpu(), imgs, pos.t().cpu().to(torch.int64))

    def _keep(self, vals: torch.Tensor, imgs: torch.Tensor, poss: torch.Tensor) -> None:
        if self.values is not None:
            vals = torch.cat([self.values, vals], 1)
            imgs = torch.cat([cast(torch.Tensor, self.image), imgs], 1)
            poss = torch.cat([cast(torch.Tensor, self.pos), poss], 1)
        k = min(self.k, vals.shape[1])
        # ties: the lower image index wins (the argmax over the set), whatever order the images came in
        order = torch.sort(imgs, dim=1, stable=True).indices
        vals, imgs, poss = vals.gather(1, order), imgs.gather(1, order), poss.gather(1, order)
        order = torch.sort(vals, dim=1, descending=True, stable=True).indices[:, :k]
        self.values = vals.gather(1, order)
        self.image = imgs.gather(1, order)
        self.pos = poss.gather(1, order)

    def merge(self, other: "TopK") -> None:
        """Fold in another shard's state (distributed passes)."""
        if other.values is None:
            return
        self.shape = self.shape or other.shape
        self.sum = other.sum if self.sum is None else self.sum + cast(torch.Tensor, other.sum)
        self.sumsq = other.sumsq if self.sumsq is None else self.sumsq + cast(torch.Tensor, other.sumsq)
        self.count += other.count
        self._keep(other.values, cast(torch.Tensor, other.image), cast(torch.Tensor, other.pos))

    def finish(self, name: str):
        # called after at least one update: every running tensor is set
        values, image = cast(torch.Tensor, self.values), cast(torch.Tensor, self.image)
        c = values.shape[0]
        k = self.k
        vals = np.full((c, k), -np.inf, dtype=np.float32)
        img = np.full((c, k), -1, dtype=np.int64)
        ys = np.zeros((c, k), dtype=np.int32)
        xs = np.zeros((c, k), dtype=np.int32)
        n = values.shape[1]
        vals[:, :n] = values.numpy()
        img[:, :n] = image.numpy()
        w = int(self.shape[-1]) if len(self.shape) >= 2 else 1
        pos = cast(torch.Tensor, self.pos).numpy()
        ys[:, :n] = pos // w if len(self.shape) >= 2 else 0
        xs[:, :n] = pos % w if len(self.shape) >= 2 else 0
        shape = self.shape if len(self.shape) >= 1 else (c,)
        n_all = max(1, self.count)
        mean = cast(torch.Tensor, self.sum) / n_all
        var = (cast(torch.Tensor, self.sumsq) / n_all - mean ** 2).clamp_min(0)
        return LayerStats(name=name, shape=tuple(int(s) for s in shape), top_values=vals, top_image=img,
                          top_y=ys, top_x=xs, mean=mean.float().numpy(), std=var.sqrt().float().numpy())


class _Chunks(torch.utils.data.Dataset):
    """Item i = (indices, decoded batch) of the i-th chunk: what a DataLoader worker prepares."""

    def __init__(self, images, chunks: list[list[int]]):
        self.images, self.chunks = images, chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int):
        return self.chunks[i], self.images.batch(self.chunks[i])


def image_batches(images, indices: list[int], batch_size: int, num_workers: int = 0):
    """(indices, float batch in [0, 1]) over ``indices``, decoded in ``num_workers`` processes ahead of use."""
    chunks = [indices[s:s + batch_size] for s in range(0, len(indices), batch_size)]
    if num_workers <= 0 or len(chunks) < 2:
        for c in chunks:
            yield c, images.batch(c)
        return
    loader = torch.utils.data.DataLoader(_Chunks(images, chunks), batch_size=None, shuffle=False,
                                         num_workers=min(num_workers, len(chunks)), prefetch_factor=4)
    yield from loader


def forward_pass(ctx: Ctx, layer_names: list[str], key: str | None, topk: int, pixel_size: int):
    """(base record, {layer: LayerStats}, {"penultimate"|"pixels": ArrayRef or None}) from one pass.

    ``key`` names the memory-mapped matrices in the cache (None: in memory).
    """
    from . import distributed
    from ..device import device_batch_size

    model = ctx.model
    clf_name = layers_mod.classifier_layer(model)
    last_conv = layers_mod.last_conv(model)
    if not hookable(model):  # TorchScript: no hooks, so the logits stand in for the features
        clf_name = last_conv = None
        layer_names = []
    modules = {n: ctx.layer(n) for n in layer_names}
    group = distributed.group_of(ctx)
    n_all = len(ctx.images)
    mine = list(range(n_all))[group.rank::group.size] if group else list(range(n_all))
    rows = Rows(ctx, n_all if not group else len(mine), key if not group else None)
    rgb_sum = torch.zeros(3, dtype=torch.float64)
    n_pix = 0
    tops = {n: TopK(topk) for n in layer_names}
    inner: dict[str, TopK | None] = {}
    fields = {n: field_or_none(ctx, n) for n in layer_names}
    source = ""
    micro = device_batch_size(ctx, cap=ctx.batch_size)
    low, checked = low_precision_dtype(ctx.device), False  # None on the CPU: float32 as before
    done = 0
    try:
        with eval_mode(model), torch.inference_mode(), contextlib.ExitStack() as stack:
            pen = outs_last = None
            if clf_name is not None:
                pen = stack.enter_context(capture_input(layers_mod.resolve_layer(model, clf_name)))
                source = f"input of {clf_name} (last Linear)"
            elif last_conv is not None:
                outs_last = stack.enter_context(
                    capture_outputs({last_conv: layers_mod.resolve_layer(model, last_conv)}))
                source = f"global-average-pooled output of {last_conv}"
            else:
                source = ("logits (TorchScript archive: no hooks)" if not hookable(model)
                          else "logits (no Linear or Conv2d layer found)")
            grid = (ctx.pre.size, ctx.pre.size)  # token / channels-last layers in their grid view (B, C, h, w)
            acts = stack.enter_context(capture_outputs(modules, grid=grid)) if modules else {}
            nb = (len(mine) + ctx.batch_size - 1) // ctx.batch_size
            desc = "Forward pass over the image set" + (f" (+{plural(len(modules), 'layer')})" if modules else "")
            batches = image_batches(ctx.images, mine, ctx.batch_size, int(ctx.config.general.num_workers or 0))
            for idx_b, x_b in ctx.progress(batches, desc, total=nb):
                for s0 in range(0, len(idx_b), micro):  # cache-sized chunks on the CPU (same results)
                    idx = list(idx_b[s0:s0 + micro])
                    where = list(range(done, done + len(idx))) if group else idx
                    done += len(idx)
                    x = ctx.to_device(x_b[s0:s0 + micro])
                    if low is not None and not checked:  # GPU: bf16/fp16 only where top-1 agrees with float32
                        low = low if autocast_agrees(ctx.pixel_model, x, low) else None
                        checked = True
                    with scan_autocast(ctx.device, low):
                        out = ctx.pixel_model(x)  # logits: PixelModel unpacks tuple / dict outputs
                    rows.write("logits", out.float().cpu().numpy(), where, np.float32)
                    if pen is not None:
                        f = pen["input"].flatten(1)
                    elif outs_last is not None:
                        a = outs_last[cast(str, last_conv)]  # captured only when there is one
                        f = a.mean(dim=(2, 3)) if a.dim() == 4 else a.flatten(1)
                    else:
                        f = out
                    rows.write("penultimate", f.float().cpu().numpy().astype(np.float16), where, np.float16)
                    xf = x.float()
                    small = F.adaptive_avg_pool2d(xf, pixel_size) if xf.shape[-1] != pixel_size else xf
                    rows.write("pixels", small.flatten(1).cpu().numpy().astype(np.float16), where, np.float16)
                    rgb_sum += xf.sum(dim=(0, 2, 3), dtype=torch.float64).cpu()  # float64: one mean for any sharding
                    n_pix += xf.shape[0] * xf.shape[2] * xf.shape[3]
                    for name in layer_names:
                        if name not in acts:
                            raise RuntimeError(f"layer {name!r} was not called during the forward pass")
                        a = acts[name]
                        tops[name].update(a, idx)
                        if name not in inner:
                            region = None
                            if a.dim() == 4 and fields[name] is not None:
                                from ..inspection.receptive import interior_units

                                region = interior_units(fields[name], cast(tuple[int, int], tuple(a.shape[-2:])),
                                                        int(x.shape[-1]))
                            inner[name] = TopK(topk, region) if region is not None else None
                        if inner[name] is not None:
                            cast(TopK, inner[name]).update(a, idx)
        mats, refs = rows.finish()
    except BaseException:
        rows.discard()
        raise
    if group:  # rank 0 gets every shard's rows and statistics; the others stop after this pass
        mats, refs, rgb_sum, n_pix, tops, inner = distributed.merge_pass(
            ctx, group, mine, mats, rgb_sum, n_pix, tops, inner, key)
    base = BaseRecord(logits=mats["logits"], penultimate=mats["penultimate"], penultimate_source=source,
                 pixels=mats["pixels"], mean_rgb=(rgb_sum / max(1, n_pix)).float().numpy())
    out = {}
    for n, t in tops.items():
        st = t.finish(n)
        if inner.get(n) is not None:
            st.interior = cast(TopK, inner[n]).finish(n)
            st.interior_region = cast(TopK, inner[n]).region
        out[n] = st
    return base, out, {k: refs.get(k) for k in ("penultimate", "pixels")}
