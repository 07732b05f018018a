"""Weakly supervised segmentation from saliency (Simonyan et al. 2014, section 6) with GrabCut.

The saliency map (see :mod:`reportgen.techniques.saliency`, reused from the same run) is
smoothed; pixels above its ``fg_quantile`` become sure foreground seeds, pixels below its
``bg_quantile`` sure background, and the rest "probably foreground" above the median and
"probably background" below. GrabCut (Rother et al. 2004; OpenCV's ``grabCut``) fits colour
models to the seeds and cuts the graph; the foreground mask is drawn over the image.
The model was never trained to segment: a good mask means its saliency sits on the object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..imaging import mask_overlay
from ..papers import ROTHER_2004, SIMONYAN_2014
from ..registry import technique
from ..report import Grid, GridItem, ImageData, Note, Section
from .saliency import cached_saliency, class_text, show_indices, smooth


def seeds_from_saliency(sal: np.ndarray, fg_quantile: float, bg_quantile: float, blur: float) -> np.ndarray:
    """GrabCut mask (cv2.GC_* values) seeded from a saliency map's quantiles."""
    import cv2

    m = np.asarray(sal, dtype=np.float32)
    if blur > 0:
        m = smooth(m, blur)
    hi, lo, mid = np.quantile(m, [fg_quantile, bg_quantile, 0.5])
    mask = np.where(m > mid, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    mask[m >= hi] = cv2.GC_FGD
    mask[m <= lo] = cv2.GC_BGD
    return mask


def grabcut_from_saliency(image: np.ndarray, sal: np.ndarray, fg_quantile: float = 0.95,
                          bg_quantile: float = 0.30, iterations: int = 5,
                          blur: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(foreground mask bool HxW, seed mask) from an RGB uint8 image and its saliency map."""
    import cv2

    h, w = image.shape[:2]
    if blur is None:
        blur = max(1.0, min(h, w) / 56.0)
    seeds = seeds_from_saliency(sal, fg_quantile, bg_quantile, blur)
    if not (seeds == cv2.GC_FGD).any() or not (seeds == cv2.GC_BGD).any():
        raise ValueError("the saliency map is flat: no foreground/background seeds")
    mask = seeds.copy()
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    cv2.setRNGSeed(0)
    cv2.grabCut(bgr, mask, None, bgd, fgd, max(1, int(iterations)), cv2.GC_INIT_WITH_MASK)
    fg = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    return fg, seeds


def seeds_image(image: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The image dimmed, with foreground seeds red and background seeds blue."""
    import cv2

    out = (image.astype(np.float32) * 0.5 + 64).astype(np.uint8)
    out[seeds == cv2.GC_FGD] = (230, 40, 40)
    out[seeds == cv2.GC_BGD] = (40, 80, 230)
    return out


@dataclass
class SegmentationOptions:
    max_images: int = 6
    """How many images (the first ones of those saliency shows, so their maps are reused)."""
    fg_quantile: float = 0.95
    """Saliency above this quantile seeds sure foreground."""
    bg_quantile: float = 0.30
    """Saliency below this quantile seeds sure background."""
    iterations: int = 5
    """GrabCut iterations."""
    blur: float | None = None
    """Gaussian sigma (pixels) applied to the saliency map first (None: input side / 56)."""


@technique(
    "segmentation",
    "Segmentation from saliency",
    options=SegmentationOptions,
    presets={"minimal": {"max_images": 1, "iterations": 2}, "full": {"max_images": 12}},
    references=[SIMONYAN_2014, ROTHER_2004],
    order=46,
    summary=(
        "The most salient pixels seed the foreground (red) and the least salient the background (blue); GrabCut "
        "grows these seeds into a mask along colour edges. The model never saw a mask: a mask that covers the "
        "object shows its saliency is on the object, a mask on the background shows it is not."
    ),
    needs_autograd=True,
)
def segmentation(ctx, opts: SegmentationOptions) -> Section:
    if not 0 < opts.bg_quantile < opts.fg_quantile < 1:
        raise ValueError("need 0 < bg_quantile < fg_quantile < 1")
    idx = show_indices(ctx, opts.max_images)
    results = cached_saliency(ctx, idx)
    items = []
    failed = []
    fg_fracs = []
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
        items.append(GridItem(ImageData(img), label=name, sublabel=class_text(ctx, r), alt=f"input {name}"))
        items.append(GridItem(ImageData(seeds_image(img, seeds)), label="seeds",
                              sublabel=f"top {100 * (1 - opts.fg_quantile):.0f}% / bottom "
                                       f"{100 * opts.bg_quantile:.0f}% saliency",
                              alt=f"GrabCut seeds of {name}"))
        items.append(GridItem(ImageData(mask_overlay(img, fg)), label="GrabCut mask",
                              sublabel=f"{100 * fg.mean():.0f}% of the image", alt=f"segmentation of {name}"))
    sec = Section(id="segmentation", title="Segmentation from saliency")
    size = ctx.pre.size
    if items:
        sec.add(Grid(items, columns=6, cell_width=min(192, size * 2 if size < 96 else size),
                     caption=(f"Image, seeds from its saliency map (Gaussian-smoothed; red: above the "
                              f"{opts.fg_quantile:g} quantile, blue: below the {opts.bg_quantile:g} quantile), and "
                              f"the GrabCut foreground after {opts.iterations} iterations (tinted; the rest dimmed). "
                              "Saliency explains the true label where known, else the predicted class.")))
    if failed:
        sec.add(Note("GrabCut was skipped for: " + "; ".join(failed), kind="warning"))
    if not results:
        sec.add(Note("No images to show.", kind="warning"))
    sec.params["images"] = [ctx.images.name(r.index) for r in results]
    if fg_fracs:
        sec.params["mean_foreground_fraction"] = round(float(np.mean(fg_fracs)), 3)
    return sec
