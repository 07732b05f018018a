"""Neural style transfer by optimisation (Gatys, Ecker & Bethge, CVPR 2016).

Starting from the content image ``c``, minimise ``L = ||phi_l(x) - phi_l(c)||^2 / ||phi_l(c)||^2 + w_s sum_k
||G_k(x) - G_k(s)||^2 / ||G_k(s)||^2 + w_tv TV(x)``: keep the content layer's features of the photograph (where
things are) while matching the Gram matrices of the painting (which features co-occur: colours, strokes,
textures). Every term is normalised, so ``w_s`` is the style / content ratio; a strip varies it over four orders
of magnitude: at the low end the photograph is kept, at the high end the painting's texture takes over.
L-BFGS (the paper's optimiser) and Adam are both available; the section says which ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import torch

from ..pictures import unit_to_uint8
from ..optvis.plotting import history_plot
from ..papers import GATYS_STYLE_2016
from ..registry import Range, technique
from ..report import Block, Figure, Grid, GridItem, ImageData, KeyValues, Note, Section
from ..results_schema import local, result_type, to_json
from ..inspection.activations import activations
from ..synthesis.gatys import per_image_seconds, style_setup, transfer
from ..synthesis.style import resolve_parameterization

if TYPE_CHECKING:
    from ..context import Ctx


# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)


@result_type
class StyleTransferResults:
    optimizer: str
    """the optimiser asked for (adam or lbfgs)"""
    seconds_per_image: float
    """wall time per stylised image of the grid, s (batched)"""
    gram_error: float
    """mean relative Gram error of the grid's results against their style"""
    ratios: list[float]
    """the style weights w_s of the strip"""
    strip_gram_error: list[float]
    """per strip step: mean relative Gram error (falls as w_s grows)"""
    strip_content_error: list[float]
    """per strip step: relative content error (rises as w_s grows)"""
    loss_fell: bool
    """the total loss fell for every image"""
    setup: dict[str, Any] = local()  # synthesis.gatys.style_setup's record (styles, contents, layers, ...)
    grid: dict[str, Any] = local()  # synthesis.gatys.per_image_seconds's record (the grid's result and errors)
    strip: Any = local()  # the strip's optvis result
    strip_errors: np.ndarray = local()  # per strip image: Gram error per style layer
    content_errors: np.ndarray = local()  # per strip image: relative content error


RESULTS = StyleTransferResults  # report.json "results" of this section (docs/results.md is generated from it)

@dataclass
class StyleTransferOptions:
    max_contents: Annotated[int, Range(ge=1)] = 2
    """Content images (seeded, spread over the classes)."""
    max_styles: Annotated[int, Range(ge=1)] = 3
    """Style images (the first ones of the style folder, sorted by name)."""
    image_size: Annotated[int, Range(ge=1)] | None = 128
    """Side of the stylised image (None: the model's input size), at most twice the input size."""
    steps: Annotated[int, Range(ge=1)] = 60
    """Optimisation steps (L-BFGS iterations or Adam steps)."""
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    """lbfgs (as in the paper) or adam."""
    lr: Annotated[float, Range(gt=0)] | None = None
    """Learning rate (None: 1 for L-BFGS with its line search, 0.02 for Adam in pixel units)."""
    style_weight: Annotated[float, Range(gt=0)] = 50.0
    """w_s: style / content weight ratio for the grid (both losses are relative errors)."""
    ratios: list[Annotated[float, Range(gt=0)]] | None = None
    """Ratios for the strip (None: five values from w_s/100 to w_s*100, four orders of magnitude)."""
    tv_weight: Annotated[float, Range(ge=0)] = 10.0
    """w_tv: weight of the total-variation term per pixel."""
    parameterization: Literal["fft", "pixel", "auto"] = "auto"
    """fft (Olah et al.'s decorrelated Fourier image: from pixel noise a few dozen L-BFGS steps leave high-frequency
    noise on networks with strided convolutions), pixel (Gatys et al.) or auto (fft from 96 px up, else pixel)."""
    layers: list[str] | None = None
    """Style (Gram) layers (None: first block, then about 1/4, 1/2 and 3/4 of the depth)."""
    content_layer: str | None = None
    """Content layer (None: the block at about half the depth)."""


def _img(x: torch.Tensor, width: int = 160) -> ImageData:
    return ImageData(unit_to_uint8(x.permute(1, 2, 0).numpy()), display_width=width)


@technique(
    "style_transfer", "Style transfer (Gatys et al.)", options=StyleTransferOptions, order=130, needs_autograd=True,
    needs_layers=True,
    references=[GATYS_STYLE_2016],
    presets={
        "minimal": {"max_contents": 1, "max_styles": 1, "image_size": 32, "steps": 8},
        "full": {"max_contents": 3, "image_size": 512, "steps": 300},
    },
)
def style_transfer(ctx: Ctx, opts: StyleTransferOptions) -> Section:
    """Each photograph is changed, starting from itself, so that one layer's features stay those of the photograph
    while the Gram matrices of several layers become those of a painting. The strip shows the trade-off: a low style
    weight keeps the photograph, a high one lets the painting's colours and strokes take over."""
    r = compute_style_transfer(ctx, opts)
    sec = Section(id="style_transfer", title="Style transfer (Gatys et al.)")
    sec.add(*present_style_transfer(ctx, opts, r))
    sec.params.update(layers=r.setup["layers"], content_layer=r.setup["content_layer"], optimizer=opts.optimizer)
    sec.results = to_json(r)
    return sec


def compute_style_transfer(ctx: Ctx, opts: StyleTransferOptions) -> StyleTransferResults:
    """The grid (every content image in every style) and the strip (one pair at growing style weights) with their
    Gram and content errors: numbers and images, no blocks."""
    s = style_setup(ctx, opts)
    grid = per_image_seconds(ctx, opts)
    contents = s["contents"]
    ratios = list(opts.ratios) if opts.ratios else [opts.style_weight * 10.0 ** e for e in (-2, -1, 0, 1, 2)]
    strip, serr = transfer(ctx, opts, s, [(0, 0)] * len(ratios), ratios, "Style transfer: weight ratios")
    ctarget = activations(ctx.pixel_model, [s["content_layer"]], ctx.to_device(contents[:1]), root=ctx.model,
                          fit=ctx.fit_input)
    got = activations(ctx.pixel_model, [s["content_layer"]], ctx.to_device(strip.images), root=ctx.model,
                      fit=ctx.fit_input)
    cerr = ((got[s["content_layer"]] - ctarget[s["content_layer"]]).pow(2).flatten(1).sum(1)
            / ctarget[s["content_layer"]].pow(2).sum()).cpu().numpy()
    fell = np.concatenate([grid["result"].improved(), strip.improved()])
    return StyleTransferResults(
        optimizer=opts.optimizer, seconds_per_image=round(grid["seconds_per_image"], 3),
        gram_error=float(grid["errors"].mean()), ratios=ratios, strip_gram_error=[float(v) for v in serr.mean(1)],
        strip_content_error=[float(v) for v in cerr], loss_fell=bool(fell.all()),
        setup=s, grid=grid, strip=strip, strip_errors=serr, content_errors=cerr)


def present_style_transfer(ctx: Ctx, opts: StyleTransferOptions, r: StyleTransferResults) -> list[Block]:
    """The grid, the strip, what the strip's errors show, the loss curves and the settings."""
    s, grid, strip, serr, cerr, ratios = r.setup, r.grid, r.strip, r.strip_errors, r.content_errors, r.ratios
    res, errs = grid["result"], grid["errors"]
    styles, contents, idx = s["styles"], s["contents"], s["idx"]
    opt_name = "L-BFGS" if opts.optimizer == "lbfgs" else "Adam"
    items = [GridItem(_img(torch.ones_like(contents[0]), 64), label="content \\ style")]
    items += [GridItem(_img(st.image), label=st.name, sublabel="style", alt=f"style {st.name}") for st in styles]
    for ci in range(len(contents)):
        items.append(GridItem(_img(contents[ci]), label=ctx.images.name(idx[ci]), sublabel="content",
                              alt=f"content image {ctx.images.name(idx[ci])}"))
        for si, st in enumerate(styles):
            b = grid["pairs"].index((ci, si))
            items.append(GridItem(_img(res.images[b]), label=f"× {st.name}",
                                  sublabel=f"Gram err {errs[b].mean():.3f}",
                                  alt=f"{ctx.images.name(idx[ci])} in the style of {st.name}"))
    blocks: list[Block] = [Grid(items, columns=len(styles) + 1, cell_width=160,
                                caption=f"Rows: content images; columns: styles. w_s = {opts.style_weight:g}; "
                                        "Gram err = mean relative "
                                        "Gram error over the style layers after the optimisation.")]
    blocks.append(Grid([GridItem(_img(strip.images[k]), label=f"w_s = {w:g}",
                                 sublabel=f"content err {cerr[k]:.3f}, Gram err {serr[k].mean():.3f}",
                                 alt=f"style weight {w:g}") for k, w in enumerate(ratios)],
                       columns=len(ratios), cell_width=140,
                       title=f"Style / content ratio: {ctx.images.name(idx[0])} × {styles[0].name}",
                       caption="The same pair with the style weight growing over four orders of magnitude (left to "
                               "right)."))
    monotone = bool(np.all(np.diff(serr.mean(1)) <= 1e-6)) and bool(np.all(np.diff(cerr) >= -1e-6))
    blocks.append(Note(
        f"{opt_name} ran. " + ("Along the strip the Gram error falls and the content error rises as w_s grows: the "
                               "two losses trade off as in the paper." if monotone else
                               "Along the strip the errors do not change monotonically with w_s in this run "
                               f"(Gram err {', '.join(f'{v:.3f}' for v in serr.mean(1))}; content err "
                               f"{', '.join(f'{v:.3f}' for v in cerr)}): more steps would be needed."),
        kind="info" if monotone else "warning"))
    if not r.loss_fell:
        blocks.append(Note("The total loss did not fall for some images.", kind="warning"))
    curves = {f"{ctx.images.name(idx[ci])} × {styles[si].name}"[:40]: -res.history[:, b]
              for b, (ci, si) in enumerate(grid["pairs"][:6])}
    blocks.append(Figure(history_plot(curves, title=f"total loss per {opt_name} step", ylabel="loss"),
                         caption="Total loss per step (grid images).", alt="style transfer loss per step"))
    blocks.append(KeyValues([
        ("styles", s["where"]),
        ("content layer", s["content_layer"]),
        ("style layers", ", ".join(s["layers"])),
        ("optimiser", f"{opt_name} ran ({res.steps} steps, {res.info['evaluations']} loss evaluations), from the "
                      f"content image, {resolve_parameterization(opts.parameterization, s['size'])} parameterisation, "
                      f"{s['size']} px short side; w_tv = {opts.tv_weight:g}"),
        ("time", f"grid {res.wall_time_s:.1f} s for {len(grid['pairs'])} images ({grid['seconds_per_image']:.2f} s "
                 f"per image, batched), strip {strip.wall_time_s:.1f} s"),
    ], title="Settings"))
    return blocks
