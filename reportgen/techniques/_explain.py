"""Shared by the attribution techniques (saliency, occlusion, gradcam, smoothgrad, integrated_gradients, sanity,
segmentation): which images, which classes, the grid cells that show them (maps are drawn by
:mod:`reportgen.attribution.visualization`), the run's saliency maps (computed once, shown by saliency and
segmentation) and the Grad-CAM layer (gradcam, sanity). Techniques take these from here, never from each other.
Not a technique (the leading underscore keeps the registry out)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..cache import MemoKey
from .. import attribution as A
from ..report import GridItem, ImageData
from ..attribution.incremental import INCREMENTAL_BATCH
from ..inspection.layers import attention_types
from ..device import REFERENCE_MACS, cost_factor, forward_macs, gradient_batch_size, graph_batch_size
from ..sampling import spread_indices, target_classes
from ..attribution.visualization import attr_image, attr_item
from ._map_store import SALIENCY_SPEC, put_maps
from typing import TYPE_CHECKING
from ..features.split import split_rows

if TYPE_CHECKING:
    from ..context import Ctx


@dataclass
class Batch:
    """The images a section explains: indices, pixel batch on the device, class per image and the prediction."""

    idx: list[int]
    x: torch.Tensor
    targets: np.ndarray
    from_label: np.ndarray
    preds: np.ndarray
    probs: np.ndarray  # softmax probability of the target


def predict_batch(ctx: Ctx, idx: list[int], classes=None) -> Batch:
    """``idx`` on the device with one forward pass: prediction, and the class to explain per image (``classes``,
    else the true label when known, else the predicted class) with its softmax probability."""
    x = ctx.to_device(ctx.images.batch(idx))
    with torch.inference_mode():
        p = torch.softmax(ctx.pixel_model(x).float(), 1).cpu().numpy()
    preds = p.argmax(1)
    if classes is None:
        tgt, known = target_classes(ctx, idx, preds)
    else:
        tgt, known = np.asarray(classes, dtype=np.int64), np.zeros(len(idx), dtype=bool)
    return Batch(list(idx), x, tgt, known, preds, p[np.arange(len(idx)), tgt])


def show_indices(ctx: Ctx, n: int) -> list[int]:
    """The images that saliency, occlusion and segmentation show (the same ones, in order)."""
    return spread_indices(ctx, n, "explain/images")


def explain_batch(ctx: Ctx, n: int) -> Batch:
    """The same images saliency/occlusion show; the true label where known, else the predicted class."""
    return predict_batch(ctx, show_indices(ctx, n))


def image_item(ctx: Ctx, i: int, target: int, from_label: bool, pred: int, prob: float) -> GridItem:
    """Image ``i`` with the explained class, its probability and (if wrong) the prediction; green/red
    outline where the true label is known and the prediction is right/wrong. The picture carries the image's id:
    the renderer links it, and the maps that follow it in its grid, to the image's page."""
    wrong = int(pred) != int(target)
    sub = f"{ctx.class_name(int(target))} ({'true label' if from_label else 'predicted'}), p={prob:.2f}"
    if wrong:
        sub += f"; predicted {ctx.class_name(int(pred))}"
    pic = ImageData(ctx.images.display(i), image_id=ctx.images.image_id(i), whole=True)
    return GridItem(pic, label=ctx.images.name(i), sublabel=sub,
                    alt=f"input {ctx.images.name(i)}", tone=("" if not from_label else "bad" if wrong else "ok"))


def input_item(ctx: Ctx, b: Batch, k: int) -> GridItem:
    """:func:`image_item` of the ``k``-th image of a batch."""
    return image_item(ctx, b.idx[k], int(b.targets[k]), bool(b.from_label[k]), int(b.preds[k]), float(b.probs[k]))


def heat_item(ctx: Ctx, image: np.ndarray, m: np.ndarray, label: str, sublabel: str = "", over: bool = True,
              pct: float = 99.5) -> GridItem:
    """A non-negative map, over the image (``jet``) or on its own (grey, white = its ``pct`` percentile)."""
    return attr_item(m, image, "overlay" if over else "map", label, sublabel, outlier_perc=100.0 - pct)


def cell_width(ctx: Ctx) -> int:
    return min(224, ctx.pre.size * 2 if ctx.pre.size < 112 else ctx.pre.size)


def peak_area(m: np.ndarray) -> float:
    """Fraction of the map at or above half its maximum (0 for an all-zero map): how focused it is."""
    mx = float(m.max())
    return float((m >= 0.5 * mx).mean()) if mx > 0 else 0.0


def cam_layer(ctx: Ctx, name: str | None) -> str:
    """``name`` validated, or the automatic choice of :func:`cam_layer_choice`; :class:`NoCamLayer` (with the
    reason) where no layer fits."""
    choice = cam_layer_choice(ctx, name)
    if choice.name is None:
        raise A.NoCamLayer(choice.why)
    return choice.name


CamLayer = A.CamChoice  # the layer Grad-CAM reads, and why it is not the model's default block

#: the layer Grad-CAM reads for a given layer option (:func:`cam_layer_choice`, once per run)
CAM_LAYER: MemoKey[CamLayer] = MemoKey("explain.cam_layer")


def cam_layer_choice(ctx: Ctx, name: str | None) -> CamLayer:
    """``name`` validated, else the last spatial block whose grid cells the class score's gradient reaches
    (:func:`reportgen.attribution.cam.choose_cam_layer`: a ViT's last block passes only its class token on, so
    the block before it; PiT's last stage returns a patch map nothing reads). Checked once per run on one image
    in one forward/backward pass; ``name`` None with the reason where no layer fits (the section is then
    unsupported)."""
    if name:
        ctx.layer(name)
    ctx.require_hooks()

    def check() -> CamLayer:
        x = ctx.to_device(ctx.images.batch([0]))
        return A.choose_cam_layer(ctx.pixel_model, ctx.probe(), x, {name: ctx.layer(name)} if name else None)

    return ctx.memo(CAM_LAYER.at(name or ""), check)


def cam_unsupported(ctx: Ctx, name: str | None) -> str | None:
    """Why Grad-CAM cannot apply with layer ``name`` (None: the automatic choice), or None when it can."""
    choice = cam_layer_choice(ctx, name)
    return choice.why if choice.name is None else None


# ----- saliency maps (Simonyan et al. 2014), shared by the saliency and segmentation sections ----------
#: image index -> its saliency map (default class), shared by the saliency and segmentation sections
MEMO_KEY: MemoKey[dict[int, SaliencyResult]] = MemoKey("saliency.maps")


@dataclass
class SaliencyResult:
    """Saliency of one image: the map (H x W float32), the class it explains and the prediction."""

    index: int
    map: np.ndarray
    target: int
    from_label: bool
    pred: int
    prob: float  # softmax probability of ``target``


def saliency_maps(ctx: Ctx, indices: list[int], classes: list[int] | None = None,
                  batch_size: int | None = None) -> list[SaliencyResult]:
    """Saliency maps of ``indices``, ``batch_size`` images per forward/backward pass.

    ``batch_size`` None: the run's batch size on a GPU; cache-sized batches on the CPU (see
    :func:`reportgen.device.gradient_batch_size`).

    ``classes`` gives the class to explain per image; by default the true label when known,
    else the predicted class (decided by a forward pass before the gradient's).
    """
    bs = max(1, int(batch_size or gradient_batch_size(ctx, cap=ctx.batch_size)))
    out: list[SaliencyResult] = []
    nb = (len(indices) + bs - 1) // bs
    for b in ctx.progress(range(nb), "Saliency maps", total=nb):
        sl = slice(b * bs, (b + 1) * bs)
        bt = predict_batch(ctx, list(indices[sl]), None if classes is None else classes[sl])
        sal = A.to_map(A.saliency(ctx.output_model, bt.x, bt.targets)).float().cpu().numpy()
        put_maps(ctx, SALIENCY_SPEC, bt.idx, bt.targets, sal)  # faithfulness and sanity score these
        for k, i in enumerate(bt.idx):
            out.append(SaliencyResult(int(i), sal[k].astype(np.float32), int(bt.targets[k]), bool(bt.from_label[k]),
                                      int(bt.preds[k]), float(bt.probs[k])))
    return out


def cached_saliency(ctx: Ctx, indices: list[int]) -> list[SaliencyResult]:
    """Saliency maps (default classes) for ``indices``, computed once per run and shared."""
    memo: dict[int, SaliencyResult] = ctx.memo(MEMO_KEY, dict)
    todo = [i for i in indices if i not in memo]
    if todo:
        got = split_rows(ctx, todo, lambda keys: saliency_maps(ctx, keys))  # torchrun: each rank a share
        for r in got:
            memo[r.index] = r
        put_maps(ctx, SALIENCY_SPEC, [r.index for r in got], [r.target for r in got], np.stack([r.map for r in got]))
    return [memo[i] for i in indices]


def saliency_to_uint8(m: np.ndarray, pct: float = 99.0) -> np.ndarray:
    """A saliency map as greyscale: 0 -> black, its ``pct`` percentile and above -> white."""
    return attr_image(m, view="map", outlier_perc=100.0 - pct)


def smooth(m: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a float map (OpenCV)."""
    import cv2

    return cv2.GaussianBlur(np.asarray(m, dtype=np.float32), (0, 0), sigmaX=float(sigma))


def make_baseline(x: torch.Tensor, kind: str) -> torch.Tensor:
    """The Integrated Gradients baseline x' of ``kind`` (black, grey or a Gaussian blur of x)."""
    if kind == "black":
        return torch.zeros_like(x)
    if kind == "grey":
        return torch.full_like(x, 0.5)
    if kind == "blur":
        import torchvision.transforms.functional as TF

        s = max(1.0, x.shape[-1] / 8)
        k = int(2 * round(3 * s) + 1)
        return TF.gaussian_blur(x, [k, k], [s, s])
    raise ValueError(f"unknown baseline {kind!r}; choose black, grey or blur")


def resolve_window(size: int, window: int | None, stride: int | None) -> tuple[int, int]:
    """Occlusion window and stride in pixels (defaults: 1/7 of the input side, half the window)."""
    w = int(window) if window else max(2, int(round(size / 7)))
    w = max(1, min(w, size))
    s = int(stride) if stride else max(1, w // 2)
    return w, s


def incremental_batch_size(ctx: Ctx) -> int:
    """Occluded copies per incremental pass: :data:`INCREMENTAL_BATCH` (the engine interprets the graph in Python,
    so wide passes pay), or fewer where that keeps the copies' activations within the gradient passes' budget
    (:func:`reportgen.device.graph_batch_size`, one full image's activations per copy: deep in a DenseNet-121 or a
    ConvNeXt a copy's changed region is most of the map, and 32 copies held ~4 GB)."""
    return graph_batch_size(ctx, cap=INCREMENTAL_BATCH)


@dataclass
class CostScaled:
    """A window and stride grown for an expensive model (:func:`cost_scaled_window`)."""

    window: int
    stride: int
    scaled: dict | None  # None: unchanged; else what changed and why (a section's ``results["cost_scaled"]``)

    def note(self, what: str) -> str | None:
        """One sentence for the section, or None when nothing was scaled."""
        r = self.scaled
        if r is None:
            return None
        return (f"This model costs {r['gmac_per_image']:g} GMAC per image, {r['factor']:.1f}x the "
                f"{r['reference_gmac']:g} GMAC the preset's counts are set for, so {what} used a "
                f"{r['window_px'][1]}-px window every {r['stride_px'][1]} px instead of {r['window_px'][0]} / "
                f"{r['stride_px'][0]} px: {r['positions'][1]} occluded copies per image instead of "
                f"{r['positions'][0]}, a coarser map. Set occlusion.scale_with_cost = false to keep the finer one.")


def cost_scaled_window(ctx: Ctx, window: int, stride: int, scale: bool = True) -> CostScaled:
    """Occlusion's window and stride grown by ``sqrt(cost_factor)`` (:func:`reportgen.device.cost_factor`), so the
    number of occluded copies (one forward pass each) falls by that factor on a model heavier than the reference,
    with the window's overlap kept; unchanged at or below it, or when ``scale`` is off. At most the input side."""
    size = ctx.pre.size
    f = cost_factor(ctx) if scale else 1.0
    if f <= 1.0:
        return CostScaled(window, stride, None)
    k = float(np.sqrt(f))
    w2, s2 = min(size, int(round(window * k))), min(size, max(1, int(round(stride * k))))
    before = len(A.window_positions(size, window, stride)) ** 2
    after = len(A.window_positions(size, w2, s2)) ** 2
    if after >= before:
        return CostScaled(window, stride, None)
    gmac = round((forward_macs(ctx) or 0) / 1e9, 2)
    return CostScaled(w2, s2, {"gmac_per_image": gmac, "reference_gmac": REFERENCE_MACS / 1e9,
                               "factor": round(f, 2), "window_px": [window, w2], "stride_px": [stride, s2],
                               "positions": [before, after]})


def attention_reason(ctx: Ctx) -> str | None:
    """Why no region can be reused when the model attends (None for a convolutional model): after the first
    attention block every token depends on every patch (global attention) or on a whole window, so incremental
    inference would recompute nearly everything at a higher memory cost than plain batched forward passes."""
    attn = attention_types(ctx.model)
    tokens = any(r.layout.kind == "tokens" for r in ctx.probe().records)
    if not attn and not tokens:
        return None
    what = ", ".join(attn[:3]) if attn else "token-sequence layers"
    return (f"the model attends ({what}): after the first attention block every position depends on a whole "
            "window or the whole image, so no region of a later layer can be reused; plain batched forward "
            "passes are as fast and use bounded memory")
