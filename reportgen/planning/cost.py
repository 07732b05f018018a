"""Each section's cost in seconds, from its options and one measurement of the model.

The measurement (:func:`measure`): a probe batch of 2 random images at the model's input size, timed 3 times after
one warm-up pass (the median): forward seconds per image and forward+backward (input gradient) seconds per image,
beside the MAC count (:func:`reportgen.device.forward_macs`). MACs alone do not give seconds; the probe does.

A formula (:data:`FORMULAS`, or a technique's own ``cost=`` in its ``@technique`` entry, which wins) is
``fn(opts, m) -> seconds`` for one section, counting the forward passes (``m.fwd``) and gradient passes
(``m.grad``) its options ask for; ``SCALES`` names the options the plan may lower (never below the ``minimal``
preset's value). A technique with neither gets :data:`DEFAULT_COST_S` (stated in the plan as a default).
The estimate is coarse by design: batching makes real passes cheaper per image than the 2-image probe, and
sections with CPU work (t-SNE, k-means, rendering) are counted only by their model passes.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..context import Ctx

#: seconds assumed for a technique that declares no formula (conservative: a minute of work)
DEFAULT_COST_S = 60.0
#: fixed seconds per section (rendering figures, bookkeeping) added to every formula
SECTION_OVERHEAD_S = 0.5
#: per-image share of a probe pass that batched passes keep (a batch of 32 costs less than 16 batches of 2)
BATCH_EFFICIENCY = 0.6

#: seconds per image per training step of fast_style's own transformation net (width 16, 128 px), forward and
#: backward, measured on a 2-core CPU (0.09 s per step of 2 images for the demo model); a GPU is far faster
TRANSFORM_NET_S = 0.045

#: attribution methods (and baselines) the faithfulness section scores in a standard run
FAITH_METHODS = 6

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: Any) -> float | None:
    """``"5m"``, ``"90s"``, ``"1h"``, ``"1m30s"`` or a number of seconds -> seconds (> 0); None stays None.
    Anything else is a :class:`ConfigError` (exit 2, one line)."""
    if text is None:
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        secs = float(text)
    else:
        s = str(text).strip().lower()
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smh]?)", s)
        if not s or not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([smh]?)", "", s).strip():
            raise ConfigError(f"--budget: cannot read {text!r} as a duration; use e.g. 90s, 5m, 1h or 1m30s")
        secs = sum(float(n) * _UNITS[u or "s"] for n, u in parts)
    if not math.isfinite(secs) or secs <= 0:
        raise ConfigError(f"--budget: {text!r} is not a positive duration; use e.g. 90s, 5m, 1h or 1m30s")
    return secs


@dataclass(frozen=True)
class Measure:
    """What the formulas count with: seconds per image of one forward pass (``fwd``) and of one forward+backward
    pass to the input (``grad``), the usable images ``n``, the input side ``size`` and the MACs per image."""

    fwd: float
    grad: float
    n: int
    size: int
    macs: int | None = None
    source: str = "probe"

    def to_dict(self) -> dict[str, Any]:
        return {"forward_s_per_image": round(self.fwd, 5), "grad_s_per_image": round(self.grad, 5),
                "images": self.n, "input_size": self.size, "macs": self.macs, "source": self.source}


def measure(ctx: Ctx) -> Measure:
    """Time the run's model once on a probe batch of 2 images (see the module docstring)."""
    from ..device import forward_macs
    from ..inspection.hooks import eval_mode

    size, model = ctx.pre.size, ctx.pixel_model
    x = torch.rand(2, 3, size, size, device=ctx.device)
    macs = forward_macs(ctx)
    try:
        with eval_mode(ctx.model):
            fwd = _best(lambda: _forward(model, x)) / 2
            grad = _best(lambda: _gradient(model, x)) / 2
        return Measure(fwd=fwd, grad=max(grad, fwd), n=len(ctx.images), size=size, macs=macs)
    except Exception:  # noqa: BLE001 - a model the probe cannot time: assume 1 GMAC/s of CPU throughput
        f = (macs or 2e9) / 1e9
        return Measure(fwd=f, grad=3 * f, n=len(ctx.images), size=size, macs=macs, source="MACs (probe failed)")


def _forward(model: Any, x: torch.Tensor) -> None:
    with torch.no_grad():
        model(x)


def _gradient(model: Any, x: torch.Tensor) -> None:
    xg = x.clone().requires_grad_(True)
    with torch.enable_grad():
        torch.autograd.grad(model(xg).sum(), xg)


def _best(fn: Callable[[], None], repeats: int = 3) -> float:
    """Median of ``repeats`` timed calls of ``fn`` after one warm-up call (first calls pay allocation; the median,
    not the fastest, as the sections run under the machine's load of the moment)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def _area(opts: Any, m: Measure, cap: bool = True) -> float:
    """Pixels of a section's own image size relative to the model's input (optimisation sections); with ``cap`` at
    most 1 (class visualisation and inversion optimise at the model's size; texture and style transfer pass their
    own size through the model, measured on the demo: 16x the pixels of its 28 px input cost about 16x)."""
    side = getattr(opts, "image_size", None) or m.size
    return min(1.0, (side / m.size) ** 2) if cap else (side / m.size) ** 2


def _occlusion(o: Any, m: Measure) -> float:
    w = int(o.window) if o.window else max(2, round(m.size / 7))
    s = int(o.stride) if o.stride else max(1, w // 2)
    factor = max(1.0, (m.macs or 0) / 2e9) if getattr(o, "scale_with_cost", False) else 1.0
    wf, sf = w * math.sqrt(factor), s * math.sqrt(factor)
    positions = (max(1.0, (m.size - wf) / sf + 1)) ** 2
    return _n(o, m) * positions * m.fwd * BATCH_EFFICIENCY


def _n(o: Any, m: Measure, name: str = "max_images") -> int:
    """A section's image count: its option, at most the images the run has."""
    return min(int(getattr(o, name)), m.n)


def _ig_passes(steps: int, max_steps: int) -> int:
    """Gradient passes per image of Integrated Gradients when it doubles ``steps`` while that stays within
    ``max_steps`` and never converges (the worst case: 16 + 32 + ... + 256 = 496 at standard)."""
    total, s = 0, max(1, steps)
    while True:
        total += s
        if 2 * s > max_steps:
            return total
        s *= 2


def _features(m: Measure) -> float:
    return 0.05 + m.n * 1e-3  # reads the shared feature pass (costed once as "features")


Formula = Callable[[Any, Measure], float]

#: technique id -> (formula, options the plan may scale, most worth scaling first)
FORMULAS: dict[str, tuple[Formula, tuple[str, ...]]] = {
    "card": (lambda o, m: _features(m), ()),
    "calibration": (lambda o, m: _features(m), ()),
    "filters": (lambda o, m: 0.5, ()),
    "neighbors": (lambda o, m: _features(m) + o.num_queries * m.fwd, ()),
    "embedding": (lambda o, m: _features(m) + 2e-6 * m.n * o.tsne_iter, ("tsne_iter",)),
    "activations": (lambda o, m: _n(o, m) * m.fwd, ("max_images",)),
    "patches": (lambda o, m: _features(m) + o.num_channels * o.k * m.fwd, ("num_channels",)),
    "concepts": (lambda o, m: min(m.n, o.max_classes * o.per_class) * (1 + o.grid ** 2 * _crop_area(o)) * m.fwd,
                 ("per_class", "max_classes")),
    "occlusion": (_occlusion, ("max_images",)),
    "saliency": (lambda o, m: _n(o, m) * m.grad, ("max_images",)),
    "smoothgrad": (lambda o, m: _n(o, m) * o.samples * m.grad * BATCH_EFFICIENCY, ("samples", "max_images")),
    "gradcam": (lambda o, m: _n(o, m) * m.grad, ("max_images",)),
    "segmentation": (lambda o, m: _n(o, m) * (1 + o.iterations) * m.grad, ("max_images",)),
    # steps doubles until the completeness gap is within tolerance, up to max_steps: counted as if it reaches it
    "integrated_gradients": (lambda o, m: _n(o, m) * _ig_passes(o.steps, o.max_steps) * m.grad * BATCH_EFFICIENCY,
                             ("max_steps", "steps", "max_images")),
    "mistakes": (lambda o, m: o.max_pairs * o.images_per_pair * 2 * m.grad, ("images_per_pair", "max_pairs")),
    "attention": (lambda o, m: (_n(o, m) + min(o.distance_images, m.n)) * m.fwd, ("distance_images", "max_images")),
    "shortcuts": (lambda o, m: _features(m), ()),
    "sanity": (lambda o, m: _n(o, m) * o.stages * (3 + o.ig_steps) * m.grad, ("stages", "max_images")),
    "faithfulness": (lambda o, m: _n(o, m) * FAITH_METHODS * (2 * o.steps + o.mufidelity_runs) * m.fwd
                     * BATCH_EFFICIENCY + o.road_images * FAITH_METHODS * 2 * o.steps * m.fwd,
                     ("mufidelity_runs", "steps", "max_images")),
    "corruptions": (lambda o, m: _n(o, m) * 15 * m.fwd * BATCH_EFFICIENCY, ("max_images",)),
    "slices": (lambda o, m: _features(m), ()),
    "data_issues": (lambda o, m: _features(m), ()),
    "guided_backprop": (lambda o, m: _n(o, m) * o.units * m.grad, ("max_images",)),
    "class_visualization": (lambda o, m: o.num_classes * o.steps * m.grad * _area(o, m), ("steps", "num_classes")),
    "adversarial": (lambda o, m: (_n(o, m) * o.max_steps + min(o.attack_images, m.n) * o.pgd_steps) * m.grad,
                    ("max_steps", "attack_images", "max_images")),
    "deepdream": (lambda o, m: _n(o, m) * o.octaves * o.steps * m.grad, ("steps", "max_images")),
    "inversion": (lambda o, m: _n(o, m) * o.steps * m.grad * _area(o, m), ("steps", "max_images")),
    "texture": (lambda o, m: o.max_textures * o.steps * m.grad * _area(o, m, cap=False), ("steps", "max_textures")),
    "gram": (lambda o, m: o.max_styles * m.fwd, ()),
    "style_transfer": (lambda o, m: _n(o, m, 'max_contents') * o.max_styles * o.steps * m.grad * _area(o, m, cap=False),
                       ("steps", "max_styles")),
    "fast_style": (lambda o, m: o.max_styles * o.iterations * o.batch
                   * (m.grad * min(1.0, (128 / m.size) ** 2) + TRANSFORM_NET_S * o.width / 16),
                   ("iterations",)),
}


def _crop_area(o: Any) -> float:
    return float(getattr(o, "crop", 0.5)) ** 2


def formula_for(info: Any) -> tuple[Formula | None, tuple[str, ...]]:
    """``(formula, scalable options)`` of technique ``info``: its registry ``cost`` (with ``cost_scales``), else
    :data:`FORMULAS`, else ``(None, ())`` (the plan then uses :data:`DEFAULT_COST_S`)."""
    own = getattr(info, "cost", None)
    if own is not None:
        return own, tuple(getattr(info, "cost_scales", ()) or ())
    return FORMULAS.get(info.id, (None, ()))


def estimate(info: Any, opts: Any, m: Measure) -> float:
    """Seconds the section of ``info`` with options ``opts`` is expected to take (see the module docstring)."""
    fn, _ = formula_for(info)
    if fn is None:
        return DEFAULT_COST_S
    try:
        return SECTION_OVERHEAD_S + max(0.0, float(fn(opts, m)))
    except (AttributeError, TypeError, ValueError):  # options changed under the formula: the default
        return DEFAULT_COST_S


def feature_pass_s(m: Measure) -> float:
    """The shared feature pass: every image once, forward."""
    return m.n * m.fwd * BATCH_EFFICIENCY
