"""The randomisation checks of the attribution maps, computed once per run: the sanity section owns them and shows
their curves; the faithfulness section shows the same verdicts beside its scores (it calls :func:`method_check`
with the same protocol, and the maps come from the run's :mod:`._map_store`, so the numbers are the sanity
section's whether it ran first, was served from the cache or is not enabled).

* Model-parameter randomisation (Adebayo et al. 2018): the layers are re-initialised from the top (logits) down;
  ``rho`` = Spearman rank correlation of the map to the trained model's map, per image. Verdict from the mean over
  the images: ``fails`` when rho >= :data:`FLAG_RHO` with every layer random, ``insensitive to top layers`` when
  rho >= FLAG_RHO with the top half random, else ``passes``.
* Random logit (Sixt, Granz & Landgraf 2020): the map for a random other class (seeded, one per image); ``fails``
  when its mean rho to the explained class's map is >= FLAG_RHO.
The uncertainty stated with each verdict is the range of the per-image rho over the check's images.
Not a technique (leading underscore).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..attribution import randomization as R
from ..attribution.metrics import rank_correlation
from ._explain import Batch, cam_layer_choice, explain_batch
from ._faith_maps import GUIDED_BACKPROP, SALIENCY, MapMethod, cams, integrated_gradients
from ._map_store import ORIGINAL, maps_for

FLAG_RHO = 0.5  # mean rank correlation at or above which a map "barely changes"
SANITY_METHODS = ("gradient", "guided backprop", "Grad-CAM", "Integrated Gradients")
# the sanity section's name of a method -> the faithfulness section's name of the same map
FAITH_NAME = {"gradient": "saliency"}


@dataclass
class Protocol:
    """What the checks run on: the images (the first ``max_images`` the attribution sections show) and their
    classes, a random other class per image, the parameter layers from the top down, the cascade stages (how many
    top layers are random) and the seeds of the re-initialisations."""

    batch: Batch
    other: np.ndarray
    top_down: list[str]
    stages: list[int]
    cascade_seed: int
    independent_seed: int

    @property
    def half(self) -> int:
        """Index of the first stage with at least half the layers random (the "top layers" verdict)."""
        n = len(self.top_down)
        return next((i for i, k in enumerate(self.stages) if k >= n / 2), len(self.stages) - 1)


def protocol(ctx, opts) -> Protocol:
    """The checks' protocol for the sanity section's options ``opts`` (memoised per run)."""

    def make() -> Protocol:
        b = explain_batch(ctx, opts.max_images)
        names = R.param_layers(ctx.model, ctx.to_device(ctx.images.batch([0])))
        if not names:
            raise ValueError("the model has no parameters to randomise")
        other = R.random_other_classes(b.targets, ctx.num_classes, ctx.seed_for("sanity/random-logit"))
        return Protocol(b, other, names[::-1], R.cascade_stages(len(names), opts.stages),
                        ctx.seed_for("sanity/cascade"), ctx.seed_for("sanity/independent"))

    return ctx.memo(f"sanity:protocol:{opts.max_images}:{opts.stages}", make)


def sanity_methods(ctx, opts) -> dict[str, MapMethod]:
    """The sanity section's four methods (its names): the gradient, guided backprop, Grad-CAM at ``opts.layer``
    (left out where no layer reaches the class score) and Integrated Gradients with a black baseline and
    ``opts.ig_steps`` fixed steps."""
    cam = cam_layer_choice(ctx, opts.layer).name  # None: no layer reaches the class score, no Grad-CAM
    fns = {"gradient": SALIENCY, "guided backprop": GUIDED_BACKPROP,
           **({"Grad-CAM": cams(cam, guided=False)["Grad-CAM"]} if cam is not None else {}),
           "Integrated Gradients": integrated_gradients(ctx, "black", opts.ig_steps, 0.01, opts.ig_steps)}
    return fns


class Twin:
    """A randomised copy of the model, made only when a map on it is not in the store yet."""

    def __init__(self, ctx, layers: list[str], seed: int, variant: str):
        self.ctx, self.layers, self.seed, self.variant = ctx, layers, seed, variant
        self._model: torch.nn.Module | None = None

    def model(self) -> torch.nn.Module:
        if self._model is None:
            self._model = R.randomized_copy(self.ctx.pixel_model, self.layers, self.seed, root="model")
        return self._model


def cascade_twin(ctx, p: Protocol, k: int) -> Twin:
    return Twin(ctx, p.top_down[:k], p.cascade_seed, f"cascade:{p.cascade_seed}:{k}")


def independent_twin(ctx, p: Protocol, k: int) -> Twin:
    name = p.top_down[k - 1]
    return Twin(ctx, [name], p.independent_seed, f"independent:{p.independent_seed}:{name}")


def maps_on(ctx, p: Protocol, method: MapMethod, twin: Twin | None = None, classes=None) -> np.ndarray:
    """``method``'s maps of the protocol's images on ``twin`` (None: the trained model) for ``classes`` (None: the
    explained ones), through the run's store."""
    b = p.batch
    t = b.targets if classes is None else classes
    if twin is None:
        return method.maps(ctx, b.idx, b.x, t)
    return maps_for(ctx, method.spec, b.idx, b.x, t, lambda xx, tt, ii: method.fn(twin.model(), xx, tt, ii),
                    twin.variant)


def rhos(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Per image: Spearman rho of map ``b`` to map ``a``."""
    return [rank_correlation(x, y) for x, y in zip(a, b)]


@dataclass
class MethodCheck:
    """One method's two checks: per-image rho with the top half of the layers random (``mid``), with all of them
    (``final``) and for the random other class (``other``); verdicts from the means."""

    method: str
    mid: list[float]
    final: list[float]
    other: list[float]
    weights: str = field(init=False)
    random_class: str = field(init=False)

    def __post_init__(self) -> None:
        fin, mid = float(np.mean(self.final)), float(np.mean(self.mid))
        self.weights = "fails" if fin >= FLAG_RHO else "insensitive to top layers" if mid >= FLAG_RHO else "passes"
        self.random_class = "passes" if float(np.mean(self.other)) < FLAG_RHO else "fails"

    @staticmethod
    def stat(v: list[float]) -> dict[str, float | list[float]]:
        return {"mean": round(float(np.mean(v)), 4), "range": [round(float(min(v)), 4), round(float(max(v)), 4)]}

    def to_dict(self) -> dict:
        return {"weights": self.weights, "weights_rho_all_random": self.stat(self.final),
                "weights_rho_top_half_random": self.stat(self.mid), "random_class": self.random_class,
                "random_class_rho": self.stat(self.other)}

    def text(self) -> str:
        """The verdicts in one line, with the mean rho (all layers random; with the top half random too where that is
        the verdict) and its range over the images."""
        def fmt(v: list[float]) -> str:
            return f"{np.mean(v):.2f}" + (f" [{min(v):.2f}, {max(v):.2f}]" if len(v) > 1 else "")
        top = f", {fmt(self.mid)} top half" if self.weights == "insensitive to top layers" else ""
        return f"weights {self.weights} (rho {fmt(self.final)}{top}), class {self.random_class} (rho {fmt(self.other)})"


def method_check(ctx, p: Protocol, name: str, method: MapMethod) -> MethodCheck:
    """Both checks of ``method`` under protocol ``p`` (its maps from the store where they are)."""
    orig = maps_on(ctx, p, method)
    mid = maps_on(ctx, p, method, cascade_twin(ctx, p, p.stages[p.half]))
    final = maps_on(ctx, p, method, cascade_twin(ctx, p, p.stages[-1]))
    other = maps_on(ctx, p, method, None, p.other)
    return MethodCheck(name, rhos(orig, mid), rhos(orig, final), rhos(orig, other))


__all__ = ["FAITH_NAME", "FLAG_RHO", "MethodCheck", "ORIGINAL", "Protocol", "SANITY_METHODS", "Twin", "cascade_twin",
           "independent_twin", "maps_on", "method_check", "protocol", "rhos", "sanity_methods"]
