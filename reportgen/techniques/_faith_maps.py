"""The attribution maps of the run as map functions of fixed options, and the choice of the methods a run scores.

The methods themselves are declared by the techniques that show them (``@technique(methods=[AttributionMethod(...)])``,
read back with :func:`reportgen.registry.attribution_methods`): each declaration's ``maps(ctx, options)`` makes a
:class:`MapMethod` -- ``fn(model, x, targets, image indices) -> B x H x W`` numpy (higher = more important) with a
:class:`MapSpec` (its name and the options that change its map), so the same method can be rerun on a randomised copy
or for another class. Every map goes through the run's :mod:`._map_store`, so a map one section computed is never
computed again by another. Faithfulness scores every method of the techniques this run enables, with each
technique's own options (:func:`method_functions`), plus the two baselines here. Not a technique (leading
underscore)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..attribution import faithfulness as FM
from ..registry import AttributionMethod, attribution_methods, get
from ._explain import CostScaled
from ._map_store import ORIGINAL, MapSpec, maps_for
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..context import Ctx

MapFn = Callable[[torch.nn.Module, torch.Tensor, np.ndarray, list[int]], np.ndarray]


@dataclass(frozen=True)
class MapMethod:
    """One method at fixed options: ``fn(model, x, targets, image indices)``; ``fast``: the trained model's maps use
    ``ctx.output_model`` (BatchNorm folded: the same gradients, faster), else ``ctx.pixel_model``; ``window``: the
    occlusion window when it was grown for an expensive model."""

    spec: MapSpec
    fn: MapFn
    fast: bool = False
    window: CostScaled | None = None

    def maps(self, ctx: Ctx, idx: Sequence[int], x: torch.Tensor, targets: Sequence[int] | np.ndarray, model=None,
             variant: str = ORIGINAL) -> np.ndarray:
        """B x H x W maps of images ``idx`` for ``targets`` on ``model`` (default: the trained model, ``variant``
        names any other), from the run's store where they are, else computed and kept there."""
        if model is None:
            model = ctx.output_model if self.fast else ctx.pixel_model
        return maps_for(ctx, self.spec, idx, x, targets, lambda xx, tt, ii: self.fn(model, xx, tt, ii), variant)


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """A map tensor as float32 numpy on the CPU."""
    return t.detach().float().cpu().numpy()


def technique_options(ctx: Ctx, tid: str):
    """Technique ``tid``'s options in this run (its preset's defaults when it is not configured)."""
    try:
        return ctx.config.options(tid)
    except KeyError:
        return get(tid).default_options(ctx.config.preset)


def scored_methods(ctx: Ctx) -> tuple[list[AttributionMethod], bool]:
    """The methods with per-image maps of the techniques this run enables, in the list's order (flagged True); when
    none is enabled, every one of this preset's techniques (flagged False)."""
    enabled = {t.id for t in ctx.config.enabled()}
    methods = [m for m in attribution_methods() if m.maps is not None]
    chosen = [m for m in methods if m.technique in enabled]
    if chosen:
        return chosen, True
    return [m for m in methods if ctx.config.preset in get(m.technique).runs_in], False


def method_functions(ctx: Ctx) -> tuple[dict[str, MapMethod], bool]:
    """method -> :class:`MapMethod` for :func:`scored_methods`, each at its technique's configured options (a method
    that does not apply to this model, e.g. attention rollout without attention, is left out)."""
    chosen, from_config = scored_methods(ctx)
    fns: dict[str, MapMethod] = {}
    for m in chosen:
        assert m.maps is not None
        f = m.maps(ctx, technique_options(ctx, m.technique))
        if f is not None:
            fns[m.name] = f
    return fns, from_config


def method_reads(*also: str, checked: bool = False) -> Callable[[object], dict]:
    """A ``reads`` (:func:`reportgen.registry.technique`) for a section that iterates over the list: which of the
    declaring techniques run (``checked``: of those declaring a sanity check), their options and the code of their
    modules (where the map functions live), plus ``also``'s options."""
    from ..cache import code_digest
    from ..registry import reads_options

    def reads(config) -> dict:
        methods = [m for m in attribution_methods() if not checked or m.sanity is not None]
        ids = tuple(dict.fromkeys(m.technique for m in methods))
        out = reads_options(*ids, *also, enabled=True)(config)
        out["method code"] = code_digest(*dict.fromkeys(m.module for m in methods))
        return out

    return reads


RANDOM, CENTRE = "random map (baseline)", "centre Gaussian (baseline)"
BASELINES = (RANDOM, CENTRE)


def baseline_maps(ctx: Ctx, x: torch.Tensor) -> dict[str, np.ndarray]:
    """The two baselines' maps for the batch ``x``: a seeded uniform random map and a fixed centre Gaussian."""
    return {RANDOM: as_numpy(FM.random_map((len(x), *x.shape[-2:]), ctx.generator("faithfulness/random-map"))),
            CENTRE: as_numpy(FM.centre_map(len(x), *x.shape[-2:]))}
