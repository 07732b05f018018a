"""What the texture, Gram, style-transfer and fast-style sections share: their source images, their layers,
Gram targets, and the optimisation-based synthesis itself (Gatys, Ecker & Bethge 2015 and 2016).

* :func:`source_images` reads the style or texture folder (``--style-images`` / ``--texture-images``, else the
  images shipped in ``reportgen/assets``; read-only, never written);
* :func:`style_layers` picks Gram layers (the first block, then about 1/4, 1/2, 3/4 of the depth) and
  :func:`content_layer` the content layer (about 1/2), both by dotted name and overridable;
* :func:`gram_targets` computes ``G_l = F_l F_l^T / (H_l W_l)`` of an image with
  :func:`reportgen.inspection.activations.activations`;
* :func:`synthesize` runs the one optvis loop on ``-(content loss + w_s * style loss + w_tv * TV)``: texture
  synthesis from noise (no content term) and style transfer from the content image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import optvis
from ..errors import ReportgenError
from ..inspection.activations import activations, spread_layers
from ..optvis import objectives as O

if TYPE_CHECKING:
    from ..context import Ctx

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class Source:
    name: str
    image: torch.Tensor  # 3 x H x W in [0, 1]


def source_dir(ctx: Ctx, kind: str) -> tuple[Path, bool]:
    """(folder, shipped?) for ``kind`` "styles" or "textures"."""
    given = ctx.general.style_images if kind == "styles" else ctx.general.texture_images
    if given:
        return Path(given), False
    return ASSETS / kind, True


def source_images(ctx: Ctx, kind: str, n: int, size: int, square: bool = False) -> tuple[list[Source], str]:
    """``n`` images spread evenly over the sorted file names of the style or texture folder (first and last
    included, so class-prefixed names give different classes), short side resized to ``size``
    (``square``: centre-cropped to size x size), and a sentence saying where they came from."""
    folder, shipped = source_dir(ctx, kind)
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in SUFFIXES) if folder.is_dir() else []
    if not files:
        opt = "--style-images" if kind == "styles" else "--texture-images"
        raise ReportgenError(f"no images in {folder} (pass a folder of .jpg/.png files with {opt})")
    out = []
    n = max(1, min(n, len(files)))
    picks = sorted({round(k * (len(files) - 1) / max(1, n - 1)) for k in range(n)}) if n > 1 else [0]
    for p in [files[k] for k in picks]:
        im: Image.Image
        with Image.open(p) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = size / min(w, h)
            im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
            if square:
                w, h = im.size
                left, top = (w - size) // 2, (h - size) // 2
                im = im.crop((left, top, left + size, top + size))
            a = np.asarray(im, dtype=np.float32) / 255.0
        out.append(Source(p.stem, torch.from_numpy(a).permute(2, 0, 1).contiguous()))
    where = (f"the {kind} shipped with reportgen (licences: reportgen/assets/{kind}/SOURCES.txt)" if shipped
             else f"{len(out)} of the {len(files)} images in the {kind[:-1]} folder given")
    return out, where


def _validated(ctx: Ctx, names: Sequence[str]) -> list[str]:
    for n in names:
        ctx.layer(n)  # helpful LayerError for a wrong name
    return list(names)


def style_layers(ctx: Ctx, given: Sequence[str] | None) -> list[str]:
    """Gram layers: ``given``, else the first block and the blocks at about 1/4, 1/2 and 3/4 of the depth."""
    if given:
        return _validated(ctx, given)
    ctx.require_hooks()
    names = spread_layers(ctx.model, (0.0, 0.25, 0.5, 0.75), ctx.probe().called)
    if not names:
        names = [ctx.chosen_layer()]
    return names


def content_layer(ctx: Ctx, given: str | None) -> str:
    """Content layer: ``given``, else the block at about half the depth (Gatys et al. use conv4_2 of 5 stages)."""
    if given:
        return _validated(ctx, [given])[0]
    ctx.require_hooks()
    names = spread_layers(ctx.model, (0.5,), ctx.probe().called)
    return names[0] if names else ctx.chosen_layer()


def resize_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """A 3 x H x W or B x 3 x H x W image resized so that its short side is ``size`` (antialiased)."""
    b = x if x.dim() == 4 else x[None]
    h, w = b.shape[2:]
    s = size / min(h, w)
    y = F.interpolate(b, size=(max(1, round(h * s)), max(1, round(w * s))), mode="bilinear", align_corners=False,
                      antialias=True).clamp(0, 1)
    return y if x.dim() == 4 else y[0]


def gram_targets(ctx: Ctx, layers: Sequence[str], images: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{layer: G_l}`` (B x C x C) for a batch of images in [0, 1] (one pass, detached)."""
    acts = activations(ctx.pixel_model, layers, ctx.to_device(images), root=ctx.model, fit=ctx.fit_input)
    return {n: O.gram_matrix(a.float()) for n, a in acts.items()}


def stack_targets(targets: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per-image target dicts (each 1 x C x C) -> one dict of B x C x C."""
    return {n: torch.cat([t[n] for t in targets], 0) for n in targets[0]}


def style_objective(style_layer_names: Sequence[str], style_targets: dict[str, torch.Tensor], style_weight,
                    content: tuple[str, torch.Tensor] | None = None, tv_weight: float = 0.0,
                    layer_weights: torch.Tensor | None = None, pixels: int = 1) -> O.Objective:
    """``-(L_content + w_s L_style + w_tv TV/pixels)`` (maximised by optvis): Gatys et al.'s total loss with
    each term normalised (relative feature / Gram errors, TV per pixel). ``style_weight`` is a number or a
    B-vector (one ratio per image)."""
    style = O.gram_loss(style_layer_names, style_targets, layer_weights)
    if isinstance(style_weight, torch.Tensor):
        w = style_weight
        def weighted(acts: dict, img: torch.Tensor, s: O.Objective = style) -> torch.Tensor:
            return w.to(img) * s(acts, img)
        style = O.Objective(weighted, style.layers, f"w·{style.name}")
    else:
        style = float(style_weight) * style
    total = style
    if content is not None:
        total = total + O.feature_loss(content[0], content[1])
    if tv_weight > 0:
        total = total + (tv_weight / pixels) * O.total_variation(2.0)
    return -total


def resolve_parameterization(name: str, side: int) -> str:
    """``"auto"`` -> ``"fft"`` for images of 96 px and more, else ``"pixel"``; other names unchanged."""
    return ("fft" if side >= 96 else "pixel") if name == "auto" else name


def synthesize(ctx: Ctx, objective: O.Objective, init: torch.Tensor | str, *, batch: int = 1, size: int = 128,
               optimizer: str = "lbfgs", steps: int = 100, lr: float | None = None, parameterization: str = "pixel",
               generator: torch.Generator | None = None, desc: str = "Synthesis") -> optvis.OptResult:
    """Run :func:`reportgen.optvis.render` on ``objective`` from ``init`` (an image batch, or "noise").

    L-BFGS (Gatys et al.) steps with lr 1 and a line search; Adam with lr 0.02 (pixels) or 0.05 (Fourier).
    ``parameterization="auto"``: the Fourier image from 96 px up (where pixel optimisation leaves high-frequency
    noise), pixels below (small images converge faster and better in pixel space)."""
    parameterization = resolve_parameterization(parameterization, init.shape[-1] if isinstance(init, torch.Tensor)
                                                else size)
    if lr is None:
        lr = 1.0 if optimizer == "lbfgs" else (0.05 if parameterization == "fft" else 0.02)
    if isinstance(init, torch.Tensor):
        param = optvis.param.make_image(parameterization, init.shape[0], init.shape[-1], ctx.to_device(init),
                                        device=ctx.device)
    else:
        g = generator if generator is not None else ctx.generator("stylekit/init")
        if parameterization == "fft":
            param = optvis.param.fourier_image(batch, size, generator=g, device=ctx.device)
        else:  # Gatys et al. start from white noise
            param = optvis.pixel_image(batch, size, "uniform", generator=g, device=ctx.device)
    return optvis.render(ctx.pixel_model, objective, param, optimizer=optimizer, steps=steps, lr=lr,
                         generator=generator, layer_root=ctx.model, progress=ctx.progress, desc=desc,
                         fit=ctx.fit_input)


def relative_gram_errors(ctx: Ctx, layers: Sequence[str], images: torch.Tensor,
                         targets: dict[str, torch.Tensor]) -> np.ndarray:
    """B x L: ``||G_l(x) - G_l(t)||^2 / ||G_l(t)||^2`` of each image against its target, per layer."""
    got = gram_targets(ctx, layers, images)
    return np.stack([O.relative_sq_error(got[n], targets[n].to(got[n])).cpu().numpy() for n in layers], 1)


__all__ = ["Source", "source_images", "source_dir", "style_layers", "content_layer", "resize_to", "gram_targets",
           "stack_targets", "style_objective", "synthesize", "resolve_parameterization", "relative_gram_errors"]
