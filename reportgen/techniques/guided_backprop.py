"""Intermediate features via (guided) backprop (Zeiler & Fergus 2014; Springenberg et al. 2015).

Pick a neuron ``a = A_l[c, y, x]`` of a layer (the strongest units of the image) or the predicted class
score, and compute the image-space gradient ``dA/dI`` three ways, differing only in how the signal
crosses each ReLU ``y = relu(x)`` with upstream gradient ``g``: backprop ``g·[x>0]``, deconvnet
``relu(g)``, guided backprop ``relu(g)·[x>0]``. Plain gradients look like noise; guided backprop
keeps only the paths that both fired and push the unit up, so it draws the *part of the image the
unit responds to* (edges, an eye, a wheel). Grey = 0; brighter/darker = positive/negative gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import torch

from .. import attribution as A
from ..attribution.relu_rules import RULES
from ..inspection.hooks import capture_outputs
from ..inspection.layers import activation_after
from ..papers import SPRINGENBERG_2015, ZEILER_FERGUS_2014
from ..registry import AttributionMethod, Range, SanityCheck, technique
from ..report import Block, Figure, Grid, Group, ImageData, Note, Row, Section
from ..results_schema import result_type, to_json
from ..device import gradient_batch_size
from ..sampling import spread_indices
from ..attribution.visualization import attr_item
from ._faith_maps import MapMethod, as_numpy
from ._map_store import MapSpec

if TYPE_CHECKING:
    from ..context import Ctx

# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)


@result_type
class GuidedBackpropUnit:
    channel: int
    """channel of an explained unit"""
    position: list[int]
    """its position [y, x] (the channel's maximum)"""
    activation: float
    """its activation"""


@result_type
class GuidedBackpropImage:
    image: str
    """image name"""
    predicted: str
    """predicted class"""
    p: float
    """its probability"""
    units: list[GuidedBackpropUnit]


@result_type
class GuidedBackpropResults:
    layer: str
    """layer whose units are explained (post-activation by default)"""
    max_pool_calls: int
    """max-pooling calls seen in one forward pass (module or functional); 0: deconvnet is image-independent"""
    unreached_activations: int
    """activation calls the gradient-rule patcher could not reach (they keep the plain gradient)"""
    images: list[GuidedBackpropImage]


RESULTS = GuidedBackpropResults  # report.json "results" of this section (docs/results.md is generated from it)

RULE_TITLES = {"backprop": "backprop", "deconvnet": "deconvnet", "guided": "guided backprop"}


@dataclass
class GuidedBackpropOptions:
    max_images: Annotated[int, Range(ge=1)] = 2
    """How many images (the first ones of the set)."""
    units: Annotated[int, Range(ge=0)] = 3
    """Strongest units (channels, at their maximum position) of the layer to explain, per image."""
    layer: str | None = None
    """Layer whose units are explained (None: the run's --layer, else the activation after the last
    convolution, so units are ranked on what the network passes on, after batch-norm and the ReLU)."""
    include_class: bool = True
    """Also explain the predicted class score."""
    percentile: Annotated[float, Range(gt=0, le=100)] = 99.5
    """Each gradient is shown with +-(this percentile of abs(gradient)) mapped to white/black."""


def top_units(acts: torch.Tensor, k: int) -> list[list[tuple[int, tuple[int, ...], float]]]:
    """Per image, the ``k`` channels with the strongest maximum: [(channel, position, value)]."""
    out = []
    for a in acts:
        flat = a.flatten(1) if a.dim() > 1 else a[:, None]
        vals, pos = flat.max(1)
        order = torch.argsort(vals, descending=True)[:k]
        units = []
        for c in order.tolist():
            p = int(pos[c])
            where = tuple(int(v) for v in np.unravel_index(p, tuple(a.shape[1:]))) if a.dim() > 1 else ()
            units.append((c, where, float(vals[c])))
        out.append(units)
    return out


@dataclass(frozen=True)
class GuidedBackpropResult:
    """What the section shows; :meth:`results` is its report.json entry."""

    layer: str
    images: tuple[int, ...]
    units: list[list[tuple[int, tuple[int, ...], float]]]  # per image: (channel, position, activation)
    preds: np.ndarray  # per image: predicted class
    p: np.ndarray  # per image: its probability
    include_class: bool
    grads: dict[str, list[np.ndarray]]  # rule -> per target (units, then the class): B x 3 x H x W
    reports: dict[str, Any]  # rule -> how the gradient crossed each activation (attribution.relu_rules)

    @property
    def unreached(self) -> int:
        return sum(self.reports["guided"].unreached.values())

    def results(self, ctx: Ctx) -> GuidedBackpropResults:
        return GuidedBackpropResults(
            layer=self.layer,
            max_pool_calls=self.reports["deconvnet"].max_pool_calls,
            unreached_activations=self.unreached,
            images=[GuidedBackpropImage(
                image=ctx.images.name(i),
                predicted=ctx.class_name(int(self.preds[b])),
                p=round(float(self.p[b]), 4),
                units=[GuidedBackpropUnit(channel=c, position=list(p), activation=round(v, 5))
                       for c, p, v in self.units[b]],
            ) for b, i in enumerate(self.images)],
        )


def compute_guided_backprop(ctx: Ctx, opts: GuidedBackpropOptions) -> GuidedBackpropResult:
    """The strongest units of the layer per image, and each unit's (and the class's) gradient under every rule."""
    name = opts.layer or ctx.general.layer
    if not name:  # rank on the post-activation output (BatchNorm's scale and sign change which units fire)
        conv = ctx.chosen_layer()
        name = activation_after(ctx.model, conv) or conv
    pm, layer = ctx.output_model_with(name)  # BatchNorm folded where the layer survives it: same gradients
    n = min(max(1, opts.max_images), len(ctx.images))
    idx = spread_indices(ctx, n, "guided_backprop/images")  # one image per class, seeded
    x = ctx.to_device(ctx.images.batch(idx))
    k = max(1, opts.units)

    with torch.inference_mode(), capture_outputs({name: layer}, grid=(int(x.shape[-2]), int(x.shape[-1]))) as out:
        logits = pm(x)
    if name not in out:
        raise RuntimeError(f"layer {name!r} was not called in the forward pass")
    units = top_units(out[name].float(), min(k, out[name].shape[1]))
    probs = torch.softmax(logits.float(), 1)
    preds = logits.argmax(1)
    k = len(units[0])

    # grads[rule][t]: B x 3 x H x W, t = 0..k-1 units, k = class; cache-sized batches on a CPU
    bs = gradient_batch_size(ctx, cap=ctx.batch_size)
    parts: dict[str, list[list[np.ndarray]]] = {rule: [[] for _ in range(k + int(opts.include_class))]
                                                for rule in RULES}
    reports = {}
    for s in range(0, n, bs):
        chunk = range(s, min(n, s + bs))
        targets = [A.unit_target([units[b][j][0] for b in chunk], [units[b][j][1] for b in chunk]) for j in range(k)]
        if opts.include_class:
            targets.append(A.class_target(preds[s:s + bs]))
        for rule in RULES:
            gl, reports[rule] = A.rule_gradients(pm, x[s:s + bs], targets, rule, layer=layer)
            for t, g in enumerate(gl):
                parts[rule][t].append(g.float().cpu().numpy())
    grads = {rule: [np.concatenate(p) for p in per_target] for rule, per_target in parts.items()}
    p = probs.gather(1, preds[:, None])[:, 0].cpu().numpy()
    return GuidedBackpropResult(name, tuple(idx), units, preds.cpu().numpy(), p, opts.include_class, grads, reports)


def _image_group(ctx: Ctx, res: GuidedBackpropResult, b: int, i: int, percentile: float) -> Group:
    """One image: the input beside a grid of gradients, a row per unit (and the class), a column per rule."""
    pred, p = int(res.preds[b]), float(res.p[b])
    items = []
    rows = [(f"unit {c} of {res.layer}" + (f" at {tuple(pos)}" if pos else ""), f"activation {v:.3g}")
            for c, pos, v in res.units[b]]
    if res.include_class:
        rows.append((f"class score: {ctx.class_name(pred)}", f"p = {p:.2f}"))
    for t, (label, sub) in enumerate(rows):
        for rule in RULES:
            items.append(attr_item(res.grads[rule][t][b], view="map", label=RULE_TITLES[rule],
                                   sublabel=f"{label} ({sub})", sign="all", outlier_perc=100.0 - percentile,
                                   alt=f"{RULE_TITLES[rule]} gradient of {label} for {ctx.images.name(i)}"))
    inp = Figure(ImageData(ctx.images.display(i), display_width=224),
                 caption=f"{ctx.images.name(i)} — predicted {ctx.class_name(pred)} ({p:.2f})",
                 alt=f"input image {ctx.images.name(i)}")
    grid = Grid(items, columns=3, cell_width=min(224, max(96, ctx.pre.size)),
                caption="Rows: the explained unit or class; columns: backprop | deconvnet | guided backprop. "
                        f"Grey = 0, each tile scaled to its own {percentile:g}th percentile of |gradient|.")
    return Group(ctx.images.name(i), [Row([inp, grid])])


def present_guided_backprop(ctx: Ctx, res: GuidedBackpropResult, percentile: float) -> list[Block]:
    """The report blocks of a :class:`GuidedBackpropResult`."""
    blocks: list[Block] = [_image_group(ctx, res, b, i, percentile) for b, i in enumerate(res.images)]
    notes = {rule: rep.describe() for rule, rep in res.reports.items()}
    blocks.append(Note("How the gradient crossed each activation — deconvnet: " + notes["deconvnet"]
                       + " Guided backprop: " + notes["guided"] + " Backprop: " + notes["backprop"]))
    # max-pool calls seen during the forward pass (nn.MaxPool2d and F.max_pool2d alike), not module types
    if res.reports["deconvnet"].max_pool_calls == 0:
        blocks.append(Note("This network has no max-pooling, so the deconvnet signal never looks at the image: "
                           "relu(g) ignores the forward pass and convolutions/batch-norm are linear, so the "
                           "deconvnet column is the same pattern for every image (only the unit's position "
                           "matters). Guided backprop adds the forward ReLU mask, which is what makes it "
                           "image-specific (Springenberg et al.'s motivation)."))
    if res.unreached:
        blocks.append(Note(res.reports["guided"].unreached_text() + " Their columns mix the rule with plain "
                           "gradients.", kind="warning"))
    return blocks


# the class score's guided backprop (max over RGB of |gradient| under the guided ReLU rule), as faithfulness scores it
GUIDED_BACKPROP = MapMethod(MapSpec("guided backprop"),
                            lambda pm, x, t, _i: as_numpy(A.to_map(A.guided_backprop(pm, x, t))))


@technique(
    "guided_backprop", "Guided backprop", role="review", options=GuidedBackpropOptions, order=48, needs_autograd=True,
    needs_layers=True,
    references=[ZEILER_FERGUS_2014, SPRINGENBERG_2015],
    presets={"minimal": {"max_images": 1, "units": 2}, "full": {"max_images": 4, "units": 6}},
    methods=[AttributionMethod("guided backprop", lambda ctx, o: GUIDED_BACKPROP, order=50,
                               sanity=SanityCheck(always=True, order=2))],
)
def guided_backprop(ctx: Ctx, opts: GuidedBackpropOptions) -> Section:
    """For the strongest units of a layer and for the predicted class, the gradient of the unit with respect to the
    pixels, passed back through the ReLUs by plain backprop, by the deconvnet rule and by guided backprop. Grey is
    zero: guided backprop keeps only the evidence that fired and increases the unit, so it outlines the image parts
    the unit detects, while plain gradients look noisy."""
    res = compute_guided_backprop(ctx, opts)
    sec = Section(id="guided_backprop", title="Guided backprop")
    sec.add(*present_guided_backprop(ctx, res, opts.percentile))
    sec.params["layer"] = res.layer
    sec.results = to_json(res.results(ctx))
    return sec
