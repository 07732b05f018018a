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
:func:`plans_layers` (e.g. ``patches`` when it picks its own layer). A technique that later asks
for a layer nobody declared (say ``--set patches.layer=...`` on a layer other than the chosen
one without a planner) costs one more pass, for that layer only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .arrays import resolve
from .errors import LayerError
from .hooks import capture_outputs, eval_mode, hookable

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
# layer planning: techniques declare the layers they will ask for, so one pass gathers them all

_PLANNERS: dict[str, Callable] = {}


def plans_layers(technique_id: str):
    """Decorator: ``fn(ctx) -> list[str]`` names the layers technique ``technique_id`` will request."""

    def deco(fn):
        _PLANNERS[technique_id] = fn
        return fn

    return deco


def planned_layers(ctx) -> list[str]:
    """Layers worth gathering in the one pass: the chosen layer and enabled techniques' plans."""
    out: list[str] = []
    try:
        out.append(ctx.chosen_layer())
    except LayerError:
        pass
    try:
        enabled = [t.id for t in ctx.config.enabled()]
    except Exception:  # pragma: no cover - a broken config is reported elsewhere
        enabled = []
    for tid in enabled:
        fn = _PLANNERS.get(tid)
        if fn is None:
            continue
        try:
            out.extend(fn(ctx) or [])
        except Exception:  # a planner must never break the pass; the technique reports its own error
            continue
    return list(dict.fromkeys(out))


# ----------------------------------------------------------------------------------------------


def _base_key(ctx) -> str:
    return ctx.cache_key("features", "base", FEATURES_VERSION, PIXEL_SIZE)


def _layer_key(ctx, name: str) -> str:
    return ctx.cache_key("features", "layer", FEATURES_VERSION, name, TOPK)


def cached_features_complete(ctx, layers: list[str]) -> bool:
    """True when the cache already holds the base record and every layer in ``layers`` (no pass needed)."""
    cache = ctx.cache
    if cache is None or not cache.enabled:
        return False
    hit = cache.get(_base_key(ctx))
    if not (isinstance(hit, _Base) and resolve(hit.penultimate, cache) is not None
            and resolve(hit.pixels, cache) is not None):
        return False
    return all(isinstance(cache.get(_layer_key(ctx, n)), LayerStats) for n in layers)


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
        if isinstance(hit, _Base):  # its big matrices are memory-mapped files beside it (reportgen.arrays)
            pen, pix = resolve(hit.penultimate, cache), resolve(hit.pixels, cache)
            if pen is not None and pix is not None:
                base = dataclasses.replace(hit, penultimate=pen, pixels=pix)
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
        base, new, refs = _forward_pass(ctx, missing)
        passes = 1
        if cache is not None:
            cache.put(_base_key(ctx), dataclasses.replace(base, **{k: v for k, v in refs.items() if v is not None}))
            for name, st in new.items():
                cache.put(_layer_key(ctx, name), st)
        stats.update(new)
    return FeatureStore(
        logits=base.logits, penultimate=base.penultimate, penultimate_source=base.penultimate_source,
        layers=tuple(sorted(stats)), layer_stats=stats, pixels=base.pixels, pixel_size=PIXEL_SIZE,
        mean_rgb=base.mean_rgb, passes=passes,
    )


def _forward_pass(ctx, layer_names: list[str]):
    """One pass over the set (see :mod:`reportgen.scan`): (base, {layer: LayerStats}, {name: ArrayRef})."""
    from .scan import forward_pass

    key = _base_key(ctx) if ctx.cache is not None and ctx.cache.enabled else None
    return forward_pass(ctx, layer_names, key, TOPK, PIXEL_SIZE)


def _field_or_none(ctx, name: str):
    """The layer's receptive field (for the interior top-k), or None if it cannot be computed."""
    try:
        from .receptive import field_for

        return field_for(ctx, name)
    except Exception:  # noqa: BLE001 - exotic models: fall back to all units
        return None


# ----------------------------------------------------------------------------------------------
# helpers shared by the image-set techniques

CPU_BATCH_BUDGET = 16 << 20  # bytes of the largest activation of one CPU batch (about a last-level cache)


def device_batch_size(ctx, cap: int = 64, budget: int = CPU_BATCH_BUDGET) -> int:
    """A batch size for many small forward passes (occlusion): ``cap`` on a GPU; on the CPU as many
    images as keep the model's largest intermediate activation within ``budget`` bytes.

    On a CPU, big batches of a large-resolution network spill its activations out of the caches
    and run slower per image than small ones (MobileNetV2 at 224 px: ~25 ms/image at batch 4 vs
    ~60 ms at batch 64 on 2 cores), while small models gain from batching. Memoised per run.
    """
    if ctx.device.type != "cpu":
        return cap
    if not hookable(ctx.model):  # no hooks to measure activations with: a cautious fixed size
        return int(max(1, min(cap, 8)))

    def probe() -> int:
        leaves = {n: m for n, m in ctx.model.named_modules() if n and not list(m.children())}
        x = ctx.to_device(torch.zeros(1, 3, ctx.pre.size, ctx.pre.size))
        with eval_mode(ctx.model), torch.inference_mode(), capture_outputs(leaves) as outs:
            ctx.pixel_model(x)
        biggest = max([t.numel() * t.element_size() for t in outs.values() if isinstance(t, torch.Tensor)]
                      + [x.numel() * x.element_size()])
        return int(max(1, min(cap, budget // max(1, biggest))))

    return ctx.memo(f"device_batch_size:{cap}:{budget}", probe)



def target_classes(ctx, indices: list[int], preds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(class per image, is_true_label per image): the true label when known, else the prediction.

    ``preds`` are the model's predictions for ``indices`` (needed only where a label is unknown).
    """
    labels = ctx.images.labels[list(indices)]
    known = labels >= 0
    if not known.all():
        if preds is None:
            raise ValueError("predictions are needed for images without a label")
        labels = np.where(known, labels, np.asarray(preds))
    return labels.astype(np.int64), known


def spread_indices(ctx, n: int, offset: int = 0, classes: np.ndarray | None = None) -> list[int]:
    """``n`` image indices chosen deterministically (seeded) and spread across classes.

    Classes are the labels when known (or ``classes``, e.g. predictions); images are visited in
    a seeded random order, one per class in turn, so the first ``n`` of a longer list are the
    same images (techniques that show fewer images share a prefix).
    """
    total = len(ctx.images)
    n = max(0, min(n, total))
    order = ctx.rng(7919 + offset).permutation(total)
    cls = classes
    if cls is None and ctx.images.has_labels:
        cls = ctx.images.labels
    if cls is None:
        return [int(i) for i in order[:n]]
    cls = np.asarray(cls)
    buckets: dict[int, list[int]] = {}
    for i in order:
        buckets.setdefault(int(cls[i]), []).append(int(i))
    # visit classes in order of their first appearance in the permutation
    queues = list(buckets.values())
    out: list[int] = []
    depth = 0
    while len(out) < n:
        progressed = False
        for q in queues:
            if depth < len(q):
                out.append(q[depth])
                progressed = True
                if len(out) == n:
                    break
        if not progressed:
            break
        depth += 1
    return out
