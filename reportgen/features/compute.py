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
receptive field (:mod:`reportgen.inspection.receptive`) lies wholly inside the image, so maximally
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

import dataclasses

from ..cache import code_digest
from .rowstore import resolve
from ..errors import LayerError
from .records import PIXEL_SIZE, BaseRecord, FeatureStore, LayerStats
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..context import Ctx

FEATURES_VERSION = "3"
TOPK = 16  # top images kept per channel (patches can show at most this many)


# ----------------------------------------------------------------------------------------------
# layer planning: techniques declare the layers they will ask for (``@technique(plans_layers=fn)``),
# so one pass gathers them all


def planned_layers(ctx: Ctx) -> list[str]:
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


def _base_key(ctx: Ctx) -> str:
    return ctx.cache_key("features", "base", FEATURES_VERSION, code_digest(__name__), PIXEL_SIZE)


def _layer_key(ctx: Ctx, name: str) -> str:
    # code_digest: this module's import closure (features/, inspection/, ...) and reportgen's version
    return ctx.cache_key("features", "layer", FEATURES_VERSION, code_digest(__name__), name, TOPK)


def cached_features_complete(ctx: Ctx, layers: list[str]) -> bool:
    """True when the cache already holds the base record and every layer in ``layers`` (no pass needed)."""
    cache = ctx.cache
    if cache is None or not cache.enabled:
        return False
    hit = cache.get(_base_key(ctx))
    if not (isinstance(hit, BaseRecord) and resolve(hit.penultimate, cache) is not None
            and resolve(hit.pixels, cache) is not None):
        return False
    return all(isinstance(cache.get(_layer_key(ctx, n)), LayerStats) for n in layers)


def compute_features(ctx: Ctx, layers: list[str]) -> FeatureStore:
    """Logits, penultimate features, pixel vectors and per-layer stats, from memory, cache or ONE pass."""
    requested = list(dict.fromkeys(layers))
    for name in requested:
        ctx.layer(name)  # LayerError with close names for a typo
    have: FeatureStore | None = ctx.feature_store
    stats: dict[str, LayerStats] = dict(have.layer_stats) if have is not None else {}
    base: BaseRecord | None = None
    if have is not None and have.pixels is not None and have.mean_rgb is not None:
        base = BaseRecord(have.logits, have.penultimate, have.penultimate_source, have.pixels, have.mean_rgb)
    cache = ctx.cache

    def from_cache(name: str) -> None:
        if name in stats or cache is None:
            return
        hit = cache.get(_layer_key(ctx, name))
        if isinstance(hit, LayerStats):
            stats[name] = hit

    if base is None and cache is not None:
        hit = cache.get(_base_key(ctx))
        # its big matrices are memory-mapped files beside it (reportgen.features.rowstore)
        if isinstance(hit, BaseRecord):
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


def _forward_pass(ctx: Ctx, layer_names: list[str]):
    """One pass over the set (see :mod:`reportgen.features.scan`): (base, {layer: LayerStats}, {name: ArrayRef})."""
    from .scan import forward_pass

    key = _base_key(ctx) if ctx.cache is not None and ctx.cache.enabled else None
    return forward_pass(ctx, layer_names, key, TOPK, PIXEL_SIZE)


def shared_pass(ctx: Ctx, group) -> None:
    """Every rank of a ``torchrun`` group: run the run's one feature pass together (rank 0 keeps the merged
    record in ``ctx``; see :mod:`reportgen.features.distributed`)."""
    from . import distributed

    layers = planned_layers(ctx)
    if not distributed.agree_needed(group, group.rank != 0 or not cached_features_complete(ctx, layers)):
        return
    with distributed.joined(ctx, group):
        ctx.features(layers)
