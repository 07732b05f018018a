"""The one batched pass over the image set that feeds every technique needing activations.

For each image it records the logits, the penultimate features (the input of the last
``nn.Linear``, or the global-average-pooled last convolution when there is none), a small
pixel-space vector (the model-input image area-downsampled to ``PIXEL_SIZE`` x ``PIXEL_SIZE``,
for pixel-space nearest neighbours) and the set's mean colour; and, for each requested layer,
streaming per-channel statistics: the top-``TOPK`` images by the channel's spatial maximum
(value, image index, y, x of that maximum), the channel's peak and its mean response.

Memory is bounded by the batch: activations are reduced batch by batch (running top-k merge)
and never stored, except the N x D penultimate and N x 3*32*32 pixel matrices, both float16.
For layers with a spatial output the top-k is also kept for the "interior" units only, whose
receptive field (:mod:`reportgen.receptive`) lies wholly inside the image, so maximally
activating patches need not show zero padding.

Caching is by content and per piece: the base record (logits, features, pixels) and each
layer's statistics have their own key (model weights + preprocessing + image bytes (+ layer)),
so a second build recomputes nothing it already has, and a build that needs one new layer runs
one pass for that layer only.

One pass for the whole run: when a pass is needed at all, it also gathers the layers the run
will ask for later: ``ctx.chosen_layer()`` and whatever each enabled technique declared with
``@technique(plans_layers=...)`` (e.g. ``patches`` when it picks its own layer). A technique that later asks
for a layer nobody declared (say ``--set patches.layer=...`` on a layer other than the chosen
one without a planner) costs one more pass, for that layer only.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from . import layers as layers_mod
from .accel import autocast_agrees, low_precision_dtype, scan_autocast
from .errors import LayerError
from .hooks import capture_input, capture_outputs, eval_mode, hookable
from .sampling import device_batch_size

FEATURES_VERSION = "3"
TOPK = 16  # top images kept per channel (patches can show at most this many)
PIXEL_SIZE = 32  # side of the pixel-space vectors used for pixel nearest neighbours


@dataclass
class LayerStats:
    """Per-channel statistics of one layer over the whole image set (plain numpy, picklable).

    ``top_*`` are C x K: for each channel the K images with the highest spatial maximum of that
    channel, best first; ``top_y``/``top_x`` locate that maximum in the layer's output grid.
    Entries with ``top_image == -1`` are unused (fewer than K images).
    """

    name: str
    shape: tuple[int, ...]  # output shape without the batch dimension (C, H, W), (C,) or (C, L)
    top_values: np.ndarray  # C x K float32
    top_image: np.ndarray  # C x K int64
    top_y: np.ndarray  # C x K int32
    top_x: np.ndarray  # C x K int32
    mean: np.ndarray  # C float32: mean response over images and positions
    std: np.ndarray  # C float32: standard deviation over images and positions
    # the same top-k restricted to "interior" units, whose whole receptive field lies inside the
    # image (no zero padding): ``interior_region`` = (y0, x0, y1, x1) of those units in the grid
    interior: "LayerStats | None" = None
    interior_region: tuple[int, int, int, int] | None = None

    @property
    def channels(self) -> int:
        return int(self.shape[0])

    @property
    def peak(self) -> np.ndarray:
        """C: the highest response of each channel over the whole set."""
        return self.top_values[:, 0]

    @property
    def spatial(self) -> tuple[int, int]:
        if len(self.shape) >= 3:
            return int(self.shape[-2]), int(self.shape[-1])
        if len(self.shape) == 2:
            return 1, int(self.shape[1])
        return 1, 1


@dataclass
class FeatureStore:
    logits: np.ndarray  # N x C float32
    penultimate: np.ndarray  # N x D float16
    penultimate_source: str
    layers: tuple[str, ...] = ()
    layer_stats: dict = field(default_factory=dict)  # name -> LayerStats
    pixels: np.ndarray | None = None  # N x (3*PIXEL_SIZE*PIXEL_SIZE) float16 in [0, 1]
    pixel_size: int = PIXEL_SIZE
    mean_rgb: np.ndarray | None = None  # (3,) float32 mean colour of the set in [0, 1]
    passes: int = 0  # forward passes this store cost in this process (0: all from the cache)

    @property
    def probs(self) -> np.ndarray:
        z = self.logits - self.logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    @property
    def preds(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    def stats(self, layer: str) -> LayerStats:
        try:
            return self.layer_stats[layer]
        except KeyError:
            raise KeyError(f"layer {layer!r} was not recorded; ask ctx.features(layers=[{layer!r}])") from None


@dataclass
class _Base:
    """The layer-independent part of a pass (cached under its own key)."""

    logits: np.ndarray
    penultimate: np.ndarray
    penultimate_source: str
    pixels: np.ndarray
    mean_rgb: np.ndarray


# ----------------------------------------------------------------------------------------------
# layer planning: techniques declare the layers they will ask for (``@technique(plans_layers=fn)``),
# so one pass gathers them all


def planned_layers(ctx) -> list[str]:
    """Layers worth gathering in the one pass: the chosen layer and enabled techniques' plans."""
    out: list[str] = []
    try:
        out.append(ctx.chosen_layer())
    except LayerError:
        pass
    try:
        enabled = list(ctx.config.enabled())
    except Exception:  # pragma: no cover - a broken config is reported elsewhere
        enabled = []
    for info in enabled:
        fn = getattr(info, "plans_layers", None)
        if fn is None:
            continue
        try:
            out.extend(fn(ctx) or [])
        except Exception:  # a planner must never break the pass; the technique reports its own error
            continue
    return list(dict.fromkeys(out))


def _base_key(ctx) -> str:
    return ctx.cache_key("features", "base", FEATURES_VERSION, PIXEL_SIZE)


def _layer_key(ctx, name: str) -> str:
    return ctx.cache_key("features", "layer", FEATURES_VERSION, name, TOPK)


def compute_features(ctx, layers: list[str]) -> FeatureStore:
    """Logits, penultimate features, pixel vectors and per-layer stats, from memory, cache or ONE pass."""
    requested = list(dict.fromkeys(layers))
    for name in requested:
        ctx.layer(name)  # LayerError with close names for a typo
    have: FeatureStore | None = getattr(ctx, "_features", None)
    stats: dict[str, LayerStats] = dict(have.layer_stats) if have is not None else {}
    base: _Base | None = None
    if have is not None and have.pixels is not None and have.mean_rgb is not None:
        base = _Base(have.logits, have.penultimate, have.penultimate_source, have.pixels, have.mean_rgb)
    cache = ctx.cache

    def from_cache(name: str) -> None:
        if name in stats or cache is None:
            return
        hit = cache.get(_layer_key(ctx, name))
        if isinstance(hit, LayerStats):
            stats[name] = hit

    if base is None and cache is not None:
        hit = cache.get(_base_key(ctx))
        if isinstance(hit, _Base):
            base = hit
    for name in requested:
        from_cache(name)
    missing = [n for n in requested if n not in stats]
    passes = 0
    if base is None or missing:
        # a pass is needed anyway: gather the layers the rest of the run will ask for too
        for name in planned_layers(ctx):
            from_cache(name)
            if name not in stats and name not in missing:
                missing.append(name)
        base, new = _forward_pass(ctx, missing)
        passes = 1
        if cache is not None:
            cache.put(_base_key(ctx), base)
            for name, st in new.items():
                cache.put(_layer_key(ctx, name), st)
        stats.update(new)
    return FeatureStore(
        logits=base.logits, penultimate=base.penultimate, penultimate_source=base.penultimate_source,
        layers=tuple(sorted(stats)), layer_stats=stats, pixels=base.pixels, pixel_size=PIXEL_SIZE,
        mean_rgb=base.mean_rgb, passes=passes,
    )


class _TopK:
    """Running per-channel top-k over images of the channel's spatial maximum (bounded memory)."""

    def __init__(self, k: int, region: tuple[int, int, int, int] | None = None):
        self.k = k
        self.region = region  # (y0, x0, y1, x1): only units in this part of the grid
        self.values: torch.Tensor | None = None  # C x k
        self.image = self.pos = None
        self.sum = self.sumsq = None
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
        vals = vmax.t().cpu()  # C x B
        imgs = torch.as_tensor(idx, dtype=torch.int64)[None, :].expand(c, b)
        poss = pos.t().cpu().to(torch.int64)
        if self.values is not None:
            vals = torch.cat([self.values, vals], 1)
            imgs = torch.cat([self.image, imgs], 1)
            poss = torch.cat([self.pos, poss], 1)
        k = min(self.k, vals.shape[1])
        # stable tie-break: among equal values the earlier image wins (the argmax over the set)
        order = torch.sort(vals, dim=1, descending=True, stable=True).indices[:, :k]
        self.values = vals.gather(1, order)
        self.image = imgs.gather(1, order)
        self.pos = poss.gather(1, order)

    def finish(self, name: str) -> LayerStats:
        c = self.values.shape[0]
        k = self.k
        vals = np.full((c, k), -np.inf, dtype=np.float32)
        img = np.full((c, k), -1, dtype=np.int64)
        ys = np.zeros((c, k), dtype=np.int32)
        xs = np.zeros((c, k), dtype=np.int32)
        n = self.values.shape[1]
        vals[:, :n] = self.values.numpy()
        img[:, :n] = self.image.numpy()
        w = int(self.shape[-1]) if len(self.shape) >= 2 else 1
        pos = self.pos.numpy()
        ys[:, :n] = pos // w if len(self.shape) >= 2 else 0
        xs[:, :n] = pos % w if len(self.shape) >= 2 else 0
        shape = self.shape if len(self.shape) >= 1 else (c,)
        n_all = max(1, self.count)
        mean = self.sum / n_all
        var = (self.sumsq / n_all - mean ** 2).clamp_min(0)
        return LayerStats(name=name, shape=tuple(int(s) for s in shape), top_values=vals, top_image=img,
                          top_y=ys, top_x=xs, mean=mean.float().numpy(), std=var.sqrt().float().numpy())


def _forward_pass(ctx, layer_names: list[str]) -> tuple[_Base, dict[str, LayerStats]]:
    model = ctx.model
    clf_name = layers_mod.classifier_layer(model)
    last_conv = layers_mod.last_conv(model)
    if not hookable(model):  # TorchScript: no hooks, so the logits stand in for the features
        clf_name = last_conv = None
        layer_names = []
    modules = {n: ctx.layer(n) for n in layer_names}
    logits, feats, pixels = [], [], []
    rgb_sum = torch.zeros(3, dtype=torch.float64)
    n_pix = 0
    tops = {n: _TopK(TOPK) for n in layer_names}
    inner: dict[str, _TopK | None] = {}
    fields = {n: _field_or_none(ctx, n) for n in layer_names}
    source = ""
    micro = device_batch_size(ctx, cap=ctx.batch_size)
    low, checked = low_precision_dtype(ctx.device), False  # None on the CPU: float32 as before
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
        acts = stack.enter_context(capture_outputs(modules)) if modules else {}
        nb = (len(ctx.images) + ctx.batch_size - 1) // ctx.batch_size
        desc = "Forward pass over the image set" + (f" (+{len(modules)} layer(s))" if modules else "")
        for idx_b, x_b in ctx.progress(ctx.images.batches(ctx.batch_size), desc, total=nb):
            for s0 in range(0, len(idx_b), micro):  # cache-sized chunks on the CPU (same results)
                idx = idx_b[s0:s0 + micro]
                x = ctx.to_device(x_b[s0:s0 + micro])
                if low is not None and not checked:  # GPU: bf16/fp16 only where top-1 agrees with float32
                    low = low if autocast_agrees(ctx.pixel_model, x, low) else None
                    checked = True
                with scan_autocast(ctx.device, low):
                    out = ctx.pixel_model(x)  # logits: PixelModel unpacks tuple / dict outputs
                logits.append(out.float().cpu().numpy())
                if pen is not None:
                    f = pen["input"].flatten(1)
                elif outs_last is not None:
                    a = outs_last[last_conv]
                    f = a.mean(dim=(2, 3)) if a.dim() == 4 else a.flatten(1)
                else:
                    f = out
                feats.append(f.float().cpu().numpy().astype(np.float16))
                xf = x.float()
                small = F.adaptive_avg_pool2d(xf, PIXEL_SIZE) if xf.shape[-1] != PIXEL_SIZE else xf
                pixels.append(small.flatten(1).cpu().numpy().astype(np.float16))
                rgb_sum += xf.sum(dim=(0, 2, 3)).double().cpu()
                n_pix += xf.shape[0] * xf.shape[2] * xf.shape[3]
                for name in layer_names:
                    if name not in acts:
                        raise RuntimeError(f"layer {name!r} was not called during the forward pass")
                    a = acts[name]
                    tops[name].update(a, idx)
                    if name not in inner:
                        region = None
                        if a.dim() == 4 and fields[name] is not None:
                            from .receptive import interior_units

                            region = interior_units(fields[name], tuple(a.shape[-2:]), int(x.shape[-1]))
                        inner[name] = _TopK(TOPK, region) if region is not None else None
                    if inner[name] is not None:
                        inner[name].update(a, idx)
    base = _Base(
        logits=np.concatenate(logits).astype(np.float32),
        penultimate=np.concatenate(feats),
        penultimate_source=source,
        pixels=np.concatenate(pixels),
        mean_rgb=(rgb_sum / max(1, n_pix)).float().numpy(),
    )
    out = {}
    for n, t in tops.items():
        st = t.finish(n)
        if inner.get(n) is not None:
            st.interior = inner[n].finish(n)
            st.interior_region = inner[n].region
        out[n] = st
    return base, out


def _field_or_none(ctx, name: str):
    """The layer's receptive field (for the interior top-k), or None if it cannot be computed."""
    try:
        from .receptive import field_for

        return field_for(ctx, name)
    except Exception:  # noqa: BLE001 - exotic models: fall back to all units
        return None
