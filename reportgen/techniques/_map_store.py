"""The run's attribution maps, in one place: each map computed once per run and method options, whoever needs it.

The attribution sections (saliency, smoothgrad, integrated_gradients, gradcam) and the sanity section put the maps
they compute here; the faithfulness section reads them and computes only what is missing. A map is keyed by
:class:`MapKey` -- method, the options that change it, image index, explained class and model variant (the trained
model, or a randomised copy named by its seed and the layers re-initialised) -- and kept for the run
(``ctx.memo``) and in the content-addressed cache (``ctx.cache``), so a later run whose sections were served from the
cache still finds the very maps those sections computed: a section's output does not depend on which other sections
ran or were cached. The cache key holds the model, preprocessing and image set (:meth:`RunContext.cache_key`), the
source of the map functions (:func:`reportgen.cache.code_digest`) and the run's general options.
Not a technique (leading underscore).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..cache import MemoKey, code_digest
from ..features.split import split_rows

if TYPE_CHECKING:
    from ..context import Ctx

ORIGINAL = "original"  # the model being reported (any other variant names a randomised copy)
MEMO_KEY: MemoKey[MapStore] = MemoKey("attribution.map_store")  # the run's maps (:func:`run_store`)
MAP_MODULES = ("reportgen.techniques._faith_maps", "reportgen.techniques._map_store")


@dataclass(frozen=True)
class MapSpec:
    """A method as a map function of fixed options: ``method`` (its name in the report) and ``options`` (a sorted
    tuple of the option values that change the map)."""

    method: str
    options: tuple = ()


SALIENCY_SPEC = MapSpec("saliency")  # |gradient| max over RGB, of ctx.output_model (the saliency section's maps)


@dataclass(frozen=True)
class MapKey:
    """One map: ``spec``'s method and options, image index, explained class and model ``variant``."""

    spec: MapSpec
    image: int
    target: int
    variant: str = ORIGINAL


@dataclass
class MapStore:
    """The maps of this run (H x W float32 numpy per :class:`MapKey`) and how each was obtained: ``computed`` counts
    the maps computed by a map function through :func:`maps_for`, ``put`` those handed in by the section that
    computed them, ``from_cache`` those read back from the cache."""

    maps: dict[MapKey, np.ndarray] = field(default_factory=dict)
    computed: Counter = field(default_factory=Counter)
    put: Counter = field(default_factory=Counter)
    from_cache: Counter = field(default_factory=Counter)


def run_store(ctx: Ctx) -> MapStore:
    """This run's :class:`MapStore`."""
    return ctx.memo(MEMO_KEY, MapStore)


def map_modules() -> tuple[str, ...]:
    """The store's modules and those the map functions live in (every module that declares an attribution method)."""
    from ..registry import attribution_methods

    return MAP_MODULES + tuple(dict.fromkeys(m.module for m in attribution_methods()))


def _cache_key(ctx: Ctx, key: MapKey) -> str:
    g = dataclasses.asdict(ctx.config.general)
    for k in ("max_images", "num_workers", "threads"):
        g.pop(k, None)
    return ctx.cache_key("attribution-map", code_digest(*map_modules()), key.spec.method, repr(key.spec.options),
                         key.image, key.target, key.variant, g, str(ctx.device.type))


def _lookup(ctx: Ctx, store: MapStore, key: MapKey) -> np.ndarray | None:
    if key in store.maps:
        return store.maps[key]
    if ctx.cache is not None:
        hit = ctx.cache.get(_cache_key(ctx, key))
        if isinstance(hit, np.ndarray):
            store.maps[key] = hit
            store.from_cache[(key.spec.method, key.variant == ORIGINAL)] += 1
            return hit
    return None


def put_maps(ctx: Ctx, spec: MapSpec, idx: Sequence[int], targets: Sequence[int] | np.ndarray,
             maps: np.ndarray | torch.Tensor, variant: str = ORIGINAL) -> None:
    """Keep the maps a section computed (B x H x W, one per image of ``idx`` for the class ``targets``)."""
    store = run_store(ctx)
    arr = maps.detach().float().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps, np.float32)
    for i, t, m in zip(idx, targets, arr):
        key = MapKey(spec, int(i), int(t), variant)
        if key in store.maps:
            continue
        store.maps[key] = np.ascontiguousarray(m, dtype=np.float32)
        store.put[(spec.method, variant == ORIGINAL)] += 1
        if ctx.cache is not None:
            ctx.cache.put(_cache_key(ctx, key), store.maps[key])


def maps_for(ctx: Ctx, spec: MapSpec, idx: Sequence[int], x: torch.Tensor, targets: Sequence[int] | np.ndarray,
             compute: Callable[[torch.Tensor, np.ndarray, list[int]], Any], variant: str = ORIGINAL) -> np.ndarray:
    """B x H x W float32: the maps of ``spec`` for images ``idx`` (pixels ``x``) and classes ``targets``, from the
    store where they are, else ``compute(x[missing], targets[missing], idx[missing])`` (one call for all missing
    images), which are then kept."""
    store = run_store(ctx)
    keys = [MapKey(spec, int(i), int(t), variant) for i, t in zip(idx, targets)]
    found = [_lookup(ctx, store, k) for k in keys]
    pos = {k: j for j, k in enumerate(keys)}

    def rows(todo_keys: list[MapKey]) -> list[np.ndarray]:  # under torchrun, each rank's share (features/split.py)
        todo = [pos[k] for k in todo_keys]
        t = np.asarray([int(targets[j]) for j in todo], dtype=np.int64)
        sel = torch.as_tensor(todo, device=x.device)
        new = compute(x.index_select(0, sel) if len(todo) < len(x) else x, t, [int(idx[j]) for j in todo])
        new = new.detach().float().cpu().numpy() if isinstance(new, torch.Tensor) else np.asarray(new, np.float32)
        return [np.ascontiguousarray(m, dtype=np.float32) for m in new]

    have = split_rows(ctx, keys, rows, {j: m for j, m in enumerate(found) if m is not None})
    store.computed[(spec.method, variant == ORIGINAL)] += sum(m is None for m in found)
    for j, m in enumerate(have):
        if found[j] is None:
            store.maps[keys[j]] = m
            if ctx.cache is not None:
                ctx.cache.put(_cache_key(ctx, keys[j]), m)
    return np.stack([np.asarray(m, dtype=np.float32) for m in have]) if have else np.zeros((0, 0, 0), np.float32)


__all__ = ["SALIENCY_SPEC", "ORIGINAL", "MapKey", "MapSpec", "MapStore", "maps_for", "put_maps", "run_store"]
