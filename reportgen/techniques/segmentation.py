"""Weakly supervised segmentation from saliency (Simonyan et al. 2014, section 3.1) with GrabCut.

As in the paper: the saliency map (see :mod:`reportgen.techniques.saliency`, reused from the same
run) is smoothed; pixels above its ``fg_quantile`` (95%) are foreground seeds and pixels below its
``bg_quantile`` (30%) background seeds. The foreground and background colour models (GMMs, 5
components each) are estimated from the seed pixels only; every other pixel is unknown. GrabCut
(Rother et al. 2004; OpenCV) then labels the unknown pixels by a graph cut with those frozen models
(``iterations`` > 1 adds GrabCut's own re-estimation from the current labelling), and the mask is
the largest connected component of the foreground. The model was never trained to segment: a good
mask means its saliency sits on the object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np

from ..pictures import mask_overlay
from ..papers import ROTHER_2004, SIMONYAN_2014
from ..registry import Range, technique
from ..report import Block, Grid, GridItem, ImageData, Note, Section
from ..results_schema import local, result_type, to_json
from ._explain import cached_saliency, image_item, show_indices, smooth

if TYPE_CHECKING:
    from ..context import Ctx

# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)


@result_type
class SegmentationImage:
    image: str
    """image name"""
    class_: str
    """class whose saliency seeded the cut"""
    class_from_label: bool
    """the class is the true label (else the prediction)"""
    foreground_fraction: float
    """share of the image in the mask (largest connected component)"""
    fg_seed_fraction: float
    """share of pixels seeded as foreground"""
    bg_seed_fraction: float
    """share of pixels seeded as background"""
    saliency: Any = local()  # the image's saliency record (_explain.cached_saliency: index, map, target, ...)
    mask: np.ndarray = local()  # H x W foreground mask
    seeds: np.ndarray = local()  # H x W: 1 foreground seed, 0 background seed, else unseeded


@result_type
class SegmentationResults:
    images: list[SegmentationImage]
    skipped: int
    """images where GrabCut could not run (flat map)"""
    iterations: int
    """graph cuts (1: colour models from the seeds only, as in the paper)"""
    mean_foreground_fraction: float | None
    """mean share of the image in the mask (null: no image)"""
    failed: list[str] = local()  # "image: why" of each image GrabCut could not run on
    tried: list[str] = local()  # every image tried


RESULTS = SegmentationResults  # report.json "results" of this section (docs/results.md is generated from it)


def seeds_from_saliency(sal: np.ndarray, fg_quantile: float, bg_quantile: float, blur: float) -> np.ndarray:
    """GrabCut mask (cv2.GC_* values): sure foreground above the ``fg_quantile`` of the (smoothed) map,
    sure background below its ``bg_quantile``, everything else unknown (``GC_PR_BGD``; its value does
    not reach the colour models, see :func:`seed_color_models`)."""
    import cv2

    m = np.asarray(sal, dtype=np.float32)
    if blur > 0:
        m = smooth(m, blur)
    hi, lo = np.quantile(m, [fg_quantile, bg_quantile])
    mask = np.full(m.shape, cv2.GC_PR_BGD, np.uint8)
    mask[m >= hi] = cv2.GC_FGD
    mask[m <= lo] = cv2.GC_BGD
    return mask


def seed_color_models(image: np.ndarray, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(background, foreground) GMMs in OpenCV's 1x65 layout, fit on the seed pixels ONLY.

    OpenCV's ``GC_INIT_WITH_MASK`` fits the models on every pixel of the mask (probable labels
    included), so the seed pixels are passed alone, as a 1xN image, with ``iterCount=0`` (fit,
    no cut)."""
    import cv2

    sel = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_BGD)
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    pix = np.ascontiguousarray(bgr[sel][None])  # 1 x N x 3
    lab = np.ascontiguousarray(seeds[sel][None])
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    cv2.grabCut(pix, lab, None, bgd, fgd, 0, cv2.GC_INIT_WITH_MASK)  # type: ignore[call-overload]  # rect None
    return bgd, fgd


def largest_component(fg: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a boolean mask (the paper's final mask)."""
    import cv2

    n, lab, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(fg, dtype=bool)
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return lab == k


def grabcut_from_saliency(image: np.ndarray, sal: np.ndarray, fg_quantile: float = 0.95,
                          bg_quantile: float = 0.30, iterations: int = 1,
                          blur: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(foreground mask bool HxW: largest connected component, seed mask) from an RGB uint8 image and its map.

    The cut uses colour models fit on the seeds only (:func:`seed_color_models`, ``GC_EVAL_FREEZE_MODEL``);
    each further iteration re-estimates them from the current labelling (GrabCut's ``GC_EVAL``)."""
    import cv2

    h, w = image.shape[:2]
    if blur is None:
        blur = max(1.0, min(h, w) / 56.0)
    seeds = seeds_from_saliency(sal, fg_quantile, bg_quantile, blur)
    if not (seeds == cv2.GC_FGD).any() or not (seeds == cv2.GC_BGD).any():
        raise ValueError("the saliency map is flat: no foreground/background seeds")
    bgd, fgd = seed_color_models(image, seeds)
    mask = seeds.copy()
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    cv2.setRNGSeed(0)
    cv2.grabCut(bgr, mask, None, bgd, fgd, 1, cv2.GC_EVAL_FREEZE_MODEL)  # type: ignore[call-overload]  # rect None
    if iterations > 1:
        cv2.grabCut(bgr, mask, None, bgd, fgd, int(iterations) - 1, cv2.GC_EVAL)  # type: ignore[call-overload]
    fg = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    return largest_component(fg), seeds


def seeds_image(image: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The image dimmed, with foreground seeds red and background seeds blue."""
    import cv2

    out = (image.astype(np.float32) * 0.5 + 64).astype(np.uint8)
    out[seeds == cv2.GC_FGD] = (230, 40, 40)
    out[seeds == cv2.GC_BGD] = (40, 80, 230)
    return out


@dataclass
class SegmentationOptions:
    max_images: Annotated[int, Range(ge=1)] = 6
    """How many images (the first ones of those saliency shows, so their maps are reused)."""
    fg_quantile: Annotated[float, Range(ge=0, le=1)] = 0.95
    """Saliency above this quantile seeds sure foreground."""
    bg_quantile: Annotated[float, Range(ge=0, le=1)] = 0.30
    """Saliency below this quantile seeds sure background."""
    iterations: Annotated[int, Range(ge=1)] = 1
    """Graph cuts: 1 = the paper (colour models from the seeds only); more adds GrabCut's re-estimation."""
    blur: Annotated[float, Range(ge=0)] | None = None
    """Gaussian sigma (pixels) applied to the saliency map first (None: input side / 56)."""


@technique(
    "segmentation", "Segmentation from saliency", options=SegmentationOptions, order=46, needs_autograd=True,
    references=[SIMONYAN_2014, ROTHER_2004],
    presets={"minimal": {"max_images": 1}, "full": {"max_images": 12}},
    uses=("saliency",),  # its saliency maps (_explain.cached_saliency)
)
def segmentation(ctx: Ctx, opts: SegmentationOptions) -> Section:
    """The most salient pixels seed the foreground (red) and the least salient the background (blue); colour models
    fit on these seeds label the other pixels by a graph cut (GrabCut), and the largest connected foreground region
    is the mask (Simonyan et al. 2014, section 3.1). The model never saw a mask: a mask that covers the object shows
    its saliency is on the object, a mask on the background shows it is not."""
    r = compute_segmentation(ctx, opts)
    sec = Section(id="segmentation", title="Segmentation from saliency")
    sec.add(*present_segmentation(ctx, opts, r))
    sec.params["images"] = r.tried
    if r.images:
        sec.params["mean_foreground_fraction"] = round(float(np.mean([float(m.mask.mean()) for m in r.images])), 3)
    sec.results = to_json(r)
    return sec


def compute_segmentation(ctx: Ctx, opts: SegmentationOptions) -> SegmentationResults:
    """GrabCut seeded by each shown image's saliency map (the run's maps): masks and seed fractions, no blocks."""
    if not 0 < opts.bg_quantile < opts.fg_quantile < 1:
        raise ValueError("need 0 < bg_quantile < fg_quantile < 1")
    idx = show_indices(ctx, opts.max_images)
    results = cached_saliency(ctx, idx)
    failed = []
    fg_fracs = []
    per_image: list[SegmentationImage] = []
    for r in results:
        img = ctx.images.display(r.index)
        name = ctx.images.name(r.index)
        try:
            fg, seeds = grabcut_from_saliency(img, r.map, opts.fg_quantile, opts.bg_quantile, opts.iterations,
                                              opts.blur)
        except Exception as e:  # one flat map must not sink the section
            failed.append(f"{name}: {e}")
            continue
        fg_fracs.append(float(fg.mean()))
        per_image.append(SegmentationImage(image=name, class_=ctx.class_name(int(r.target)),
                                           class_from_label=bool(r.from_label),
                                           foreground_fraction=round(float(fg.mean()), 4),
                                           fg_seed_fraction=round(float((seeds == 1).mean()), 4),
                                           bg_seed_fraction=round(float((seeds == 0).mean()), 4),
                                           saliency=r, mask=fg, seeds=seeds))
    return SegmentationResults(
        images=per_image, skipped=len(failed), iterations=int(opts.iterations),
        mean_foreground_fraction=round(float(np.mean(fg_fracs)), 4) if fg_fracs else None,
        failed=failed, tried=[ctx.images.name(r.index) for r in results])


def present_segmentation(ctx: Ctx, opts: SegmentationOptions, res: SegmentationResults) -> list[Block]:
    """Per image: the image, its seeds and its mask; notes on the images skipped."""
    items = []
    for m in res.images:
        r, fg, seeds, name = m.saliency, m.mask, m.seeds, m.image
        img = ctx.images.display(r.index)
        items.append(image_item(ctx, r.index, r.target, r.from_label, r.pred, r.prob))
        items.append(GridItem(ImageData(seeds_image(img, seeds)), label="seeds",
                              sublabel=f"top {100 * (1 - opts.fg_quantile):.0f}% / bottom "
                                       f"{100 * opts.bg_quantile:.0f}% saliency",
                              alt=f"GrabCut seeds of {name}"))
        items.append(GridItem(ImageData(mask_overlay(img, fg)), label="GrabCut mask",
                              sublabel=f"{100 * fg.mean():.0f}% of the image", alt=f"segmentation of {name}"))
    blocks: list[Block] = []
    size = ctx.pre.size
    if items:
        blocks.append(Grid(items, columns=6, cell_width=min(192, size * 2 if size < 96 else size),
                           caption=(f"Image, seeds from its saliency map (Gaussian-smoothed; red: above the "
                                    f"{opts.fg_quantile:g} quantile, blue: below the {opts.bg_quantile:g} quantile), "
                                    "and the mask (tinted; the rest dimmed): foreground/background colour models "
                                    "(5-component GMMs) fit on the seed pixels only, a graph cut labels the unseeded "
                                    "pixels"
                                    + (f" ({opts.iterations - 1} more GrabCut re-estimation round(s) from the cut)"
                                       if opts.iterations > 1 else "")
                                    + ", and the largest connected foreground component is kept (Simonyan et al. "
                                    "2014, section 3.1). Saliency explains the true label where known, else the "
                                    "predicted class.")))
    if res.failed:
        blocks.append(Note("GrabCut was skipped for: " + "; ".join(res.failed), kind="warning"))
    if not res.tried:
        blocks.append(Note("No images to show.", kind="warning"))
    return blocks
