"""Each section's cost in seconds, from its options and one measurement of the model.

The measurement (:func:`measure`): a probe batch of 2 random images at the model's input size, timed 3 times after
one warm-up pass (the median): forward seconds per image and forward+backward (input gradient) seconds per image,
beside the MAC count (:func:`reportgen.device.forward_macs`), then one forward pass of a batch of
:data:`EFFICIENCY_BATCH` after its warm-up: the batch efficiency, the per-image share of the probe's seconds that the
sections' batched passes keep (a tiny model gains much from batching; ResNet-50 on one CPU thread nothing), and one
forward+backward pass of one image at half the side: the per-call part of a pass that a smaller canvas does not
shrink (:attr:`Measure.call_share`). MACs alone do not give seconds; the probe does.

A formula (:data:`FORMULAS`, or a technique's own ``cost=`` in its ``@technique`` entry, which wins) is
``fn(opts, m) -> seconds`` for one section, counting the forward passes (``m.fwd``) and gradient passes
(``m.grad``) its options ask for; ``SCALES`` names the options the plan may lower (never below the ``minimal``
preset's value). A technique with neither gets :data:`DEFAULT_COST_S` (stated in the plan as a default).
The estimate is coarse by design: the batch efficiency is measured forward and applied to gradient passes too, and
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
#: per-image share of a probe pass that batched passes keep where the probe could not measure it (a model timed by
#: its MACs); otherwise measured (:func:`measure`: ResNet-50 at 1 CPU thread keeps ~1.0, batching gains nothing)
BATCH_EFFICIENCY = 0.6
#: the batch the probe times once more, forward, to measure the batch efficiency (a faithfulness stream batch, a
#: SmoothGrad chunk)
EFFICIENCY_BATCH = 8
#: bounds on the measured efficiency: at most 1, as the sections' batched passes ran no slower per image than the probe
#: even where the probe's one timed batch did (MobileNetV2 on a loaded 2-core CPU: batch of 8 at 1.77x per image,
#: its Integrated Gradients and faithfulness then at 0.53x and 0.59x of the estimate that implied)
EFFICIENCY_RANGE = (0.1, 1.0)


def bounded_efficiency(e: float) -> float:
    """A measured (or recorded) batch efficiency within :data:`EFFICIENCY_RANGE`."""
    return min(EFFICIENCY_RANGE[1], max(EFFICIENCY_RANGE[0], e))

#: seconds per image per training step of fast_style's own transformation net (width 16, 128 px), forward and
#: backward, measured on a 2-core CPU (0.09 s per step of 2 images for the demo model); a GPU is far faster
TRANSFORM_NET_S = 0.045

#: maps faithfulness computes per sanity image for the check of a method the sanity section does not run: on the two
#: randomised copies (top half, all layers) and, but for occlusion (read off the occlusion section's passes), for a
#: random other class; as a multiple of the section's per-image cost (gradcam: Grad-CAM++ and Guided Grad-CAM)
FAITH_TWIN_MAPS = {"smoothgrad": 3.0, "gradcam": 2.0, "occlusion": 2.0}
#: seconds of ROAD's noisy linear imputation per copy of a 224 px image (one sparse solve; 0.17 s measured on this
#: 2-core CPU, half of the pixels imputed), scaled by the pixel count
IMPUTE_S_224 = 0.17

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
    batch_eff: float = BATCH_EFFICIENCY  # seconds per image in a batch of EFFICIENCY_BATCH / in the probe's batch of 2
    attends: bool = False  # the model has global self-attention (attention rollout is scored too)
    fixed_size: bool = False  # the model takes only its input size (optimisation at other sizes is resized to it)
    small_grad: float | None = None  # one forward+backward of 1 image at half the side; None: fixed size or failed

    @property
    def call_share(self) -> float:
        """Share of the 2-image gradient probe pass paid per call, not per pixel, for passes of other sizes: from it
        (``2 grad = c0 + 2 c1``) and the pass of one half-side image (``small_grad = c0 + c1 / 4``) where that was
        measured, else :attr:`fixed_share`. (MobileNetV2 on this CPU: each 112 px texture evaluation took 0.56x the
        probe's 224 px gradient seconds per image, not the 0.25x its pixels say; its texture was estimated at 0.4x.)"""
        if self.small_grad is None or self.grad <= 0:
            return self.fixed_share
        c1 = max(0.0, (2.0 * self.grad - self.small_grad) / 1.75)
        return min(1.0, max(0.0, (2.0 * self.grad - 2.0 * c1) / (2.0 * self.grad)))

    @property
    def fixed_share(self) -> float:
        """Share of the 2-image probe pass that is paid per call, not per image: with a pass of B images costing
        ``c0 + c1 B``, the efficiency ``e = (c0 / 8 + c1) / (c0 / 2 + c1)`` gives ``c0 / (c0 + 2 c1) = 4 (1 - e) / 3``
        (0 where a batch costs as much per image as the probe, or more)."""
        return min(1.0, max(0.0, 4.0 * (1.0 - self.batch_eff) / 3.0))

    def to_dict(self) -> dict[str, Any]:
        return {"forward_s_per_image": round(self.fwd, 5), "grad_s_per_image": round(self.grad, 5),
                "images": self.n, "input_size": self.size, "macs": self.macs, "source": self.source,
                "attends": self.attends, "fixed_size": self.fixed_size, "batch_efficiency": round(self.batch_eff, 3),
                "small_grad_s": None if self.small_grad is None else round(self.small_grad, 5)}


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
            xb = torch.rand(EFFICIENCY_BATCH, 3, size, size, device=ctx.device)
            batched = _best(lambda: _forward(model, xb), repeats=1) / EFFICIENCY_BATCH
            fixed = _fixed_size(ctx)
            small = None if fixed else _small_grad(model, size, ctx.device)
        return Measure(fwd=fwd, grad=max(grad, fwd), n=len(ctx.images), size=size, macs=macs,
                       attends=_attends(ctx), fixed_size=fixed, small_grad=small,
                       batch_eff=bounded_efficiency(batched / fwd) if fwd > 0 else BATCH_EFFICIENCY)
    except Exception:  # noqa: BLE001 - a model the probe cannot time: assume 1 GMAC/s of CPU throughput
        f = (macs or 2e9) / 1e9
        return Measure(fwd=f, grad=3 * f, n=len(ctx.images), size=size, macs=macs, source="MACs (probe failed)")


def _attends(ctx: Ctx) -> bool:
    from ..techniques._explain import attention_reason

    try:
        return attention_reason(ctx) is not None
    except Exception:  # noqa: BLE001 - a model the layer probe cannot run: counted without rollout
        return False


def _fixed_size(ctx: Ctx) -> bool:
    try:
        return ctx.probe().sizes.kind == "fixed"
    except Exception:  # noqa: BLE001 - a model the layer probe cannot run: its sections' own sizes are counted
        return False


def _small_grad(model: Any, size: int, device: Any) -> float | None:
    """Seconds of one forward+backward pass of one image at half the side (None: the model refuses that size)."""
    xs = torch.rand(1, 3, max(1, size // 2), max(1, size // 2), device=device)
    try:
        return _best(lambda: _gradient(model, xs))
    except Exception:  # noqa: BLE001 - e.g. a pooling stack too deep for half the side: the batch split is used
        return None


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


def _pass(m: Measure, per: float, batch: int, area: float = 1.0) -> float:
    """Seconds of one pass of ``batch`` images at ``area`` times the model's input pixels, where ``per`` is the
    probe's seconds per image (``m.fwd`` or ``m.grad``): the per-call part of the probe's 2-image pass
    (:attr:`Measure.call_share`) once, the per-image part for each image and in proportion to its pixels. A tiny
    model's passes cost about the same at any batch and size; a large model's in proportion to pixels."""
    phi = m.call_share
    return 2.0 * per * (phi + (1.0 - phi) * batch * area / 2.0)


def _area(opts: Any, m: Measure, cap: bool = True) -> float:
    """Pixels of a section's own image size relative to the model's input (optimisation sections); with ``cap`` at
    most 1 (class visualisation and inversion optimise at the model's size; texture and style transfer pass their
    own size through the model, measured on the demo: 16x the pixels of its 28 px input cost about 16x)."""
    if m.fixed_size:  # every image is resized to the model's own size (ViT-B/16's 160 px class visualisation)
        return 1.0
    side = getattr(opts, "image_size", None) or m.size
    return min(1.0, (side / m.size) ** 2) if cap else (side / m.size) ** 2


def _occlusion(o: Any, m: Measure) -> float:
    w = int(o.window) if o.window else max(2, round(m.size / 7))
    s = int(o.stride) if o.stride else max(1, w // 2)
    factor = max(1.0, (m.macs or 0) / 2e9) if getattr(o, "scale_with_cost", False) else 1.0
    wf, sf = w * math.sqrt(factor), s * math.sqrt(factor)
    positions = (max(1.0, (m.size - wf) / sf + 1)) ** 2
    return _n(o, m) * positions * m.fwd * m.batch_eff


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


def _layers(o: Any) -> int:
    """Layers a synthesis or inversion section runs one optimisation for: its option, else the 4 it picks."""
    return len(o.layers) if getattr(o, "layers", None) else 4


def _evals(o: Any) -> int:
    """Forward+backward passes per optimisation step: L-BFGS's line search evaluates twice (measured on
    ResNet-50's texture section: 1,920 evaluations for 960 steps), Adam once."""
    return 2 if getattr(o, "optimizer", "adam") == "lbfgs" else 1


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
    # the crops' forward passes, then a forward+backward pass per image for the concepts' importance
    "concepts": (lambda o, m: min(m.n, o.max_classes * o.per_class) * ((1 + o.grid ** 2 * _crop_area(o)) * m.fwd
                                                                       + m.grad), ("per_class", "max_classes")),
    "occlusion": (_occlusion, ("max_images",)),
    "saliency": (lambda o, m: _n(o, m) * m.grad, ("max_images",)),
    "smoothgrad": (lambda o, m: _n(o, m) * o.samples * m.grad * m.batch_eff, ("samples", "max_images")),
    "vargrad": (lambda o, m: _n(o, m) * o.samples * m.grad * m.batch_eff, ("samples", "max_images")),
    "gradcam": (lambda o, m: _n(o, m) * m.grad, ("max_images",)),
    "segmentation": (lambda o, m: _n(o, m) * (1 + o.iterations) * m.grad, ("max_images",)),
    # steps doubles until the completeness gap is within tolerance, up to max_steps: counted as if it reaches it
    "integrated_gradients": (lambda o, m: _n(o, m) * _ig_passes(o.steps, o.max_steps) * m.grad * m.batch_eff,
                             ("max_steps", "steps", "max_images")),
    "mistakes": (lambda o, m: o.max_pairs * o.images_per_pair * 2 * m.grad, ("images_per_pair", "max_pairs")),
    "attention": (lambda o, m: (_n(o, m) + min(o.distance_images, m.n)) * m.fwd, ("distance_images", "max_images")),
    "shortcuts": (lambda o, m: _features(m), ()),
    # the maps on the image, then after each cascading and each independent randomisation stage
    "sanity": (lambda o, m: _n(o, m) * (1 + 2 * o.stages) * (3 + o.ig_steps) * m.grad, ("stages", "max_images")),
    "faithfulness": (lambda o, m: _faithfulness(o, m), ("mufidelity_runs", "steps", "max_images")),
    "corruptions": (lambda o, m: _n(o, m) * 15 * m.fwd * m.batch_eff, ("max_images",)),
    "slices": (lambda o, m: _features(m), ()),
    "data_issues": (lambda o, m: _features(m), ()),
    "guided_backprop": (lambda o, m: _n(o, m) * o.units * m.grad, ("max_images",)),
    # two optimisations per class (L2 only, regularised)
    "class_visualization": (lambda o, m: 2 * o.steps * _pass(m, m.grad, o.num_classes, _area(o, m)),
                            ("steps", "num_classes")),
    "adversarial": (lambda o, m: (_n(o, m) * o.max_steps + min(o.attack_images, m.n) * o.pgd_steps) * m.grad,
                    ("max_steps", "attack_images", "max_images")),
    "deepdream": (lambda o, m: _n(o, m) * o.octaves * o.steps * m.grad, ("steps", "max_images")),
    # one reconstruction of the images per layer (4 by default: 1/4, 1/2, 3/4 of the depth and the last block)
    "inversion": (lambda o, m: _layers(o) * o.steps * _evals(o) * _pass(m, m.grad, _n(o, m), _area(o, m)),
                  ("steps", "max_images")),
    # one synthesis of one image per texture and growing layer set (4 by default)
    "texture": (lambda o, m: o.max_textures * _layers(o) * o.steps * _evals(o)
                * _pass(m, m.grad, 1, _area(o, m, cap=False)), ("steps", "max_textures")),
    "gram": (lambda o, m: o.max_styles * m.fwd, ()),
    # two batches: the content x style grid and the style-weight strip (5 ratios by default)
    "style_transfer": (lambda o, m: o.steps * _evals(o) * (_pass(m, m.grad, _n(o, m, "max_contents") * o.max_styles,
                                                                 _area(o, m, cap=False))
                                                           + _pass(m, m.grad, len(o.ratios or range(5)),
                                                                   _area(o, m, cap=False))), ("steps", "max_styles")),
    "fast_style": (lambda o, m: o.max_styles * o.iterations * o.batch
                   * (m.grad * min(1.0, (128 / m.size) ** 2) + TRANSFORM_NET_S * o.width / 16),
                   ("iterations",)),
}


def _faithfulness(o: Any, m: Measure, cfg: Any = None) -> float:
    """The faithfulness section: one stream of perturbed copies (per image the image, the fill and the blurred start
    once, each method's inner deletion and insertion steps, the MuFidelity subsets; ROAD's imputed copies), and, with
    the run's configuration ``cfg``, the maps it computes itself: those of the images a method's section does not
    show and the sanity checks of the methods the sanity section does not run (:data:`FAITH_TWIN_MAPS`)."""
    n, srcs = _n(o, m), _faith_sources(cfg)
    k = sum(srcs.values()) + 2 + int(m.attends)
    copies = n * (3 + 2 * k * (max(2, int(o.steps)) - 1) + int(o.mufidelity_runs))
    road = min(n, int(o.road_images)) * 2 * k * len(o.road_fractions) if o.road else 0
    total = (copies + road) * m.fwd * m.batch_eff + road * IMPUTE_S_224 * (m.size / 224) ** 2
    if cfg is None:
        return total
    from .. import registry

    on = {t.id for t in cfg.enabled()}
    checked = min(int(_options(cfg, "sanity").max_images), m.n) if o.sanity else 0
    for tid in srcs:
        so = _options(cfg, tid)
        shown = _n(so, m) if tid in on else 0  # a section not run leaves every map to faithfulness
        per = max(0.0, estimate(registry.get(tid), so, m) - SECTION_OVERHEAD_S) / max(1, _n(so, m))
        total += per * (max(0, n - shown) + checked * FAITH_TWIN_MAPS.get(tid, 0.0))
    return total


def faith_sources(preset: str | None = None) -> dict[str, int]:
    """Technique -> how many of its methods the faithfulness section scores (gradcam: Grad-CAM, Grad-CAM++ and
    Guided Grad-CAM), read off the one list of attribution methods (``registry.attribution_methods``), for the
    techniques of ``preset`` (every one when None); attention rollout is counted apart (on a model that attends)."""
    from .. import registry

    out: dict[str, int] = {}
    for meth in registry.attribution_methods():
        if meth.maps is None or meth.technique == "attention":
            continue
        if preset is None or preset in registry.get(meth.technique).runs_in:
            out[meth.technique] = out.get(meth.technique, 0) + 1
    return out


def _faith_sources(cfg: Any) -> dict[str, int]:
    """:func:`faith_sources` of the sections ``cfg`` enables (those of its preset when it enables none; all of them
    when ``cfg`` is None)."""
    if cfg is None:
        return faith_sources()
    on = {t.id for t in cfg.enabled()}
    every = faith_sources(cfg.preset)
    out = {tid: k for tid, k in every.items() if tid in on}
    if "gradcam" in out and not getattr(_options(cfg, "gradcam"), "guided", True):
        out["gradcam"] = 2
    return out or every


def _options(cfg: Any, tid: str) -> Any:
    try:
        return cfg.options(tid)
    except KeyError:
        from .. import registry

        return registry.get(tid).default_options(cfg.preset)


#: formulas that read the run's configuration too (``fn(opts, m, cfg)``)
WITH_CONFIG = {"faithfulness": _faithfulness}


def _crop_area(o: Any) -> float:
    return float(getattr(o, "crop", 0.5)) ** 2


def formula_for(info: Any) -> tuple[Formula | None, tuple[str, ...]]:
    """``(formula, scalable options)`` of technique ``info``: its registry ``cost`` (with ``cost_scales``), else
    :data:`FORMULAS`, else ``(None, ())`` (the plan then uses :data:`DEFAULT_COST_S`)."""
    own = getattr(info, "cost", None)
    if own is not None:
        return own, tuple(getattr(info, "cost_scales", ()) or ())
    return FORMULAS.get(info.id, (None, ()))


def estimate(info: Any, opts: Any, m: Measure, cfg: Any = None) -> float:
    """Seconds the section of ``info`` with options ``opts`` is expected to take (see the module docstring); ``cfg``:
    the run's configuration, for the formulas that depend on other sections (:data:`WITH_CONFIG`)."""
    fn, _ = formula_for(info)
    if fn is None:
        return DEFAULT_COST_S
    try:
        if getattr(info, "cost", None) is None and info.id in WITH_CONFIG:
            return SECTION_OVERHEAD_S + max(0.0, float(WITH_CONFIG[info.id](opts, m, cfg)))
        return SECTION_OVERHEAD_S + max(0.0, float(fn(opts, m)))
    except (AttributeError, TypeError, ValueError):  # options changed under the formula: the default
        return DEFAULT_COST_S


def feature_pass_s(m: Measure) -> float:
    """The shared feature pass: every image once, forward."""
    return m.n * m.fwd * m.batch_eff
