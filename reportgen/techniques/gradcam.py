"""Grad-CAM, Grad-CAM++ and Guided Grad-CAM (Selvaraju et al. 2017; Chattopadhay et al. 2018).

Grad-CAM: ``L = relu(sum_c w_c A_c)`` with ``w_c = mean_ij dS_k/dA_cij`` — the layer's channels
weighted by how much the class score ``S_k`` (logit) grows with them on average, keeping the positive
evidence. Grad-CAM++ weights each position by ``alpha = g^2 / (2g^2 + sum A g^3)`` and keeps only
positive gradients, so several instances of a class all light up. Guided Grad-CAM multiplies guided
backprop by the upsampled Grad-CAM: fine detail, but only inside the class-discriminative region.
The maps live at the layer's resolution (the default layer is the last spatial block) and are
upsampled bilinearly to the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import torch

from .. import attribution as A
from ..papers import CHATTOPADHAY_2018, SELVARAJU_2017, SPRINGENBERG_2015
from ..inspection.layers import resolve_layer
from ..registry import AttributionMethod, ClassMaps, Range, SanityCheck, technique
from ..report import Grid, Note, Section, Table
from ..results_schema import result_type, to_json
from ..attribution.visualization import attr_item
from ._explain import cam_layer_choice, cam_unsupported, cell_width, explain_batch, heat_item, input_item, peak_area
from ..features.split import split_rows
from ._faith_maps import MapMethod, as_numpy
from ._map_store import MapSpec, put_maps

if TYPE_CHECKING:
    from ..context import Ctx


# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)


@result_type
class GradCamImage:
    image: str
    """image name"""
    class_: str
    """class explained (true label where known, else the prediction)"""
    p: float
    """softmax probability of that class"""
    peak_area: float
    """share of the image at or above half the Grad-CAM map's maximum"""
    peak_area_pp: float
    """the same for Grad-CAM++"""


@result_type
class GradCamResults:
    layer: str
    """the layer Grad-CAM reads"""
    layer_why: str | None
    """why that layer was chosen over the requested or default one (empty: no change)"""
    layer_cells: list[int]
    """the layer's spatial grid [h, w]"""
    median_rank_corr_gradcam_vs_pp: float
    """median Spearman rank correlation of Grad-CAM and Grad-CAM++ maps"""
    zero_maps: list[str]
    """images whose Grad-CAM map is zero everywhere (no positive evidence at the layer)"""
    images: list[GradCamImage]


RESULTS = GradCamResults  # report.json "results" of this section (docs/results.md is generated from it)

@dataclass
class GradCamOptions:
    max_images: Annotated[int, Range(ge=1)] = 6
    """How many images (the same ones saliency shows)."""
    layer: str | None = None
    """Dotted layer name (None: the last spatial block the class score's gradient reaches, e.g. ``features`` or
    ``layer4``)."""
    guided: bool = True
    """Also show Guided Grad-CAM (guided backprop x Grad-CAM)."""


def cams(name: str, guided: bool = True) -> dict[str, MapMethod]:
    """Grad-CAM, Grad-CAM++ and (``guided``) Guided Grad-CAM at layer ``name``, upsampled to the image."""

    def cam(pm, x, t, _i):
        return as_numpy(A.gradcam(pm, resolve_layer(pm.model, name), x, t, size=tuple(x.shape[-2:])))

    def campp(pm, x, t, _i):
        return as_numpy(A.gradcam_plus_plus(pm, resolve_layer(pm.model, name), x, t, size=tuple(x.shape[-2:])))

    def gg(pm, x, t, _i):
        return as_numpy(A.to_map(A.guided_gradcam(pm, resolve_layer(pm.model, name), x, t)))

    out = {"Grad-CAM": MapMethod(MapSpec("Grad-CAM", (name,)), cam),
           "Grad-CAM++": MapMethod(MapSpec("Grad-CAM++", (name,)), campp)}
    if guided:
        out["Guided Grad-CAM"] = MapMethod(MapSpec("Guided Grad-CAM", (name,)), gg)
    return out


def _cam(method: str, layer: Callable[[Any, Any], str | None]) -> Callable[[Any, Any], MapMethod | None]:
    """``(ctx, options) -> method`` at the layer ``layer(ctx, options)`` names (None: the automatic one); None
    where no layer reaches the class score (no Grad-CAM rows or checks)."""

    def make(ctx: Ctx, o) -> MapMethod | None:
        name = cam_layer_choice(ctx, layer(ctx, o)).name
        return None if name is None else cams(name, getattr(o, "guided", False)).get(method)

    return make


def _why_not(ctx: Ctx) -> str | None:
    return cam_unsupported(ctx, ctx.config.options("gradcam").layer)


METHODS = (
    AttributionMethod("Grad-CAM", _cam("Grad-CAM", lambda ctx, o: o.layer), order=40,
                      # sanity runs it at its own layer option
                      sanity=SanityCheck(maps=_cam("Grad-CAM", lambda ctx, so: so.layer), always=True, order=3),
                      set_level=ClassMaps("gradcam", lambda pm, layer, x, t: A.gradcam(pm, layer, x, t),
                                          layered=True)),
    AttributionMethod("Grad-CAM++", _cam("Grad-CAM++", lambda ctx, o: o.layer), order=41),
    AttributionMethod("Guided Grad-CAM", _cam("Guided Grad-CAM", lambda ctx, o: o.layer), order=42),
)
def cam_maps(ctx: Ctx, name: str, layer, idx: list[int], x: torch.Tensor, t: np.ndarray, guided: bool):
    """(layer cells, Grad-CAM, Grad-CAM++, Guided Grad-CAM or None) of the images, upsampled to the input; under
    torchrun each rank computes a share of the images (:func:`reportgen.features.split.split_rows`)."""
    pm, size = ctx.pixel_model, tuple(x.shape[-2:])
    pos = {(name, int(i), int(c)): k for k, (i, c) in enumerate(zip(idx, t))}

    def rows(keys: list) -> list:
        sel = torch.as_tensor([pos[k] for k in keys], device=x.device)
        xs, ts = x[sel], t[sel.cpu().numpy()]
        raw = A.gradcam(pm, layer, xs, ts)
        cam = A.upsample(raw, size).cpu().numpy()
        pp = A.gradcam_plus_plus(pm, layer, xs, ts, size=size).cpu().numpy()
        gg = A.guided_gradcam(pm, layer, xs, ts, cam=raw).float().cpu().numpy() if guided else None
        return [(tuple(raw.shape[-2:]), cam[k], pp[k], None if gg is None else gg[k]) for k in range(len(keys))]

    got = split_rows(ctx, list(pos), rows)
    hw = got[0][0] if got else (0, 0)
    return (hw, np.stack([g[1] for g in got]), np.stack([g[2] for g in got]),
            np.stack([g[3] for g in got]) if guided else None)


@technique(
    "gradcam", "Grad-CAM, Grad-CAM++ and Guided Grad-CAM", options=GradCamOptions, order=46, needs_autograd=True,
    role="review",
    needs_layers=True, unsupported_if=_why_not,
    references=[SELVARAJU_2017, CHATTOPADHAY_2018, SPRINGENBERG_2015],
    presets={"minimal": {"max_images": 2}, "full": {"max_images": 12}}, methods=METHODS,
)
def gradcam(ctx: Ctx, opts: GradCamOptions) -> Section:
    """Where in the image the evidence for a class lies, at the resolution of a late layer: its channels weighted by
    the class score's average gradient (Grad-CAM) or by positive, position-weighted gradients (Grad-CAM++). Red
    means the layer's features there raise the score; Guided Grad-CAM keeps the fine guided-backprop detail only
    inside that region."""
    choice = cam_layer_choice(ctx, opts.layer)
    name = choice.name
    assert name is not None  # else _why_not made the section unsupported
    layer = ctx.layer(name)
    b = explain_batch(ctx, opts.max_images)
    t = b.targets
    hw, cam, campp, gg = cam_maps(ctx, name, layer, b.idx, b.x, t, opts.guided)
    specs = {m: f.spec for m, f in cams(name, opts.guided).items()}  # faithfulness and sanity score these maps
    put_maps(ctx, specs["Grad-CAM"], b.idx, t, cam)
    put_maps(ctx, specs["Grad-CAM++"], b.idx, t, campp)
    if gg is not None:
        put_maps(ctx, specs["Guided Grad-CAM"], b.idx, t, np.abs(gg).max(1))

    items, agree, flat = [], [], []
    rows: list[list[Any]] = []
    for k, i in enumerate(b.idx):
        img = ctx.images.display(i)
        items.append(input_item(ctx, b, k))
        r = A.rank_correlation(cam[k], campp[k])
        agree.append(r)
        if cam[k].max() <= 0:
            flat.append(ctx.images.name(i))
        items.append(heat_item(ctx, img, cam[k], "Grad-CAM", f"peak area {peak_area(cam[k]):.0%}"))
        items.append(heat_item(ctx, img, campp[k], "Grad-CAM++", f"rank corr. to Grad-CAM {r:.2f}"))
        if gg is not None:
            items.append(attr_item(gg[k], view="map", label="Guided Grad-CAM", sign="all", outlier_perc=0.5,
                                   alt=f"guided Grad-CAM of {ctx.images.name(i)}"))
        rows.append([ctx.images.name(i), ctx.class_name(int(t[k])), round(float(b.probs[k]), 3),
                     round(peak_area(cam[k]), 3), round(peak_area(campp[k]), 3), round(r, 3)])

    per = 4 if gg is not None else 3
    sec = Section(id="gradcam", title="Grad-CAM, Grad-CAM++ and Guided Grad-CAM")
    sec.add(Grid(items, columns=2 * per if per == 3 else per, cell_width=cell_width(ctx), caption=(
        f"Layer {name} ({hw[0]}x{hw[1]} cells, upsampled to the image). Each image, then Grad-CAM and Grad-CAM++ "
        "over it (colour scale per map: 0 = blue, its 99.5th percentile = red)"
        + (", then Guided Grad-CAM (grey = 0)." if gg is not None else ".")
        + " Peak area: share of the image at or above half the map's maximum.")))
    sec.add(Table(["image", "class", "p", "Grad-CAM peak area", "Grad-CAM++ peak area", "rank corr."], rows,
                  numeric=[2, 3, 4, 5]))
    med = float(np.median(agree)) if agree else 0.0
    live = [a for a, k in zip(agree, b.idx) if ctx.images.name(k) not in flat]
    med_live = float(np.median(live)) if live else None
    text = ("" if med_live is None else
            f"Grad-CAM and Grad-CAM++ {'mostly agree' if med_live >= 0.8 else 'differ noticeably'} here "
            f"(median Spearman rank correlation {med_live:.2f} over the maps that are not zero).")
    if choice.why:
        text = choice.why + " " + text
    lay = ctx.probe().layout(name)
    if lay is not None and lay.kind in ("tokens", "nhwc"):
        text += f" The layer's output is a {lay.describe()}."
    if hw[0] * hw[1] <= 16:
        text += f" The layer is only {hw[0]}x{hw[1]}: the maps can say which region, not which pixels."
    if text.strip():
        sec.add(Note(text.strip()))
    if flat:
        sec.add(Note(f"No positive evidence at {name} for: {', '.join(flat)} (the map is zero everywhere; "
                     "the class score falls with every channel's average gradient).", kind="warning"))
    sec.params.update(layer=name, images=[ctx.images.name(i) for i in b.idx])
    sec.results = to_json(GradCamResults(
        layer=name, layer_why=choice.why, layer_cells=list(hw), median_rank_corr_gradcam_vs_pp=round(med, 4),
        zero_maps=flat,
        images=[GradCamImage(image=r[0], class_=r[1], p=r[2], peak_area=r[3], peak_area_pp=r[4]) for r in rows]))
    return sec
