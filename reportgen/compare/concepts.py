"""Concepts of two models matched by the crops they fire on (CRAFT-style NMF, Fel et al. 2023).

The same crops (a seeded sample of images, a 3x3 lattice of half-size squares each) go through both models; each
model's last spatial layer (non-negative, after its activation), averaged over positions, is factorised by NMF into
k concepts, ``A ~ U W``. Concept i of A and concept j of B are similar when they fire on the same crops: the Pearson
correlation of their coefficient columns ``U_A[:, i]`` and ``U_B[:, j]`` over the shared crops. Concepts are paired
one-to-one by the Hungarian algorithm on that correlation (works across architectures: channels need not agree).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .. import attribution as A
from ..concepts.craft import crop_boxes, crops_of, factorise, layer_output, top_crops
from ..papers import FEL_2023
from ..errors import ReportgenError
from ..report import Grid, GridItem, ImageData, Note, Section, Table
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..context import Ctx


def coefficient_correlation(ua: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """ka x kb Pearson correlation between the columns of ``ua`` (n x ka) and ``ub`` (n x kb); 0 for a constant
    column."""
    za = ua - ua.mean(0)
    zb = ub - ub.mean(0)
    na = np.linalg.norm(za, axis=0)
    nb = np.linalg.norm(zb, axis=0)
    return (za.T @ zb) / np.maximum(na[:, None] * nb[None, :], 1e-12)


def match_concepts(ua: np.ndarray, ub: np.ndarray) -> tuple[list[tuple[int, int, float]], np.ndarray]:
    """One-to-one pairs (i, j, correlation) maximising the total correlation, best first; and the full matrix."""
    from scipy.optimize import linear_sum_assignment

    s = coefficient_correlation(ua, ub)
    rows, cols = linear_sum_assignment(-s)
    pairs = sorted(((int(i), int(j), float(s[i, j])) for i, j in zip(rows, cols)), key=lambda t: (-t[2], t[0]))
    return pairs, s


def crop_activations(ctx: Ctx, idx: list[int], boxes) -> tuple[np.ndarray, float, str]:
    """(crops x C pooled activations of the model's last spatial block, their minimum, the layer name)."""
    name = A.last_spatial_block(ctx.model, ctx.to_device(ctx.images.batch(idx[:1])))
    out, lo = [], 0.0
    step = max(1, 64 // len(boxes))
    for s in range(0, len(idx), step):
        a = layer_output(ctx.pixel_model, ctx.model, name,
                         crops_of(ctx.to_device(ctx.images.batch(idx[s:s + step])), boxes))
        lo = min(lo, float(a.min()))
        out.append(a.mean((2, 3)).cpu().numpy())
    return np.concatenate(out), lo, name


SUMMARY = ("Which concepts {a} and {b} share: {k} NMF concepts (Fel et al. 2023) of each model's last spatial layer "
           "over the same image crops, paired one-to-one by how their coefficients correlate across the crops "
           "(1 = the two concepts fire on exactly the same crops).")


def concepts_section(ca, cb, names: tuple[str, str], n_images: int = 32, k: int = 6) -> Section:
    sec = Section(id="concepts_match", title="Concepts of A and B matched by their crops", references=[FEL_2023],
                  summary=SUMMARY.format(a=names[0], b=names[1], k=k))
    n = min(n_images, len(ca.images))
    idx = sorted(ca.rng("compare/concepts/images").choice(len(ca.images), size=n, replace=False).tolist())
    boxes = [crop_boxes(c.pre.size, 0.5, 3) for c in (ca, cb)]
    try:
        acts = [crop_activations(c, idx, b) for c, b in zip((ca, cb), boxes)]
    except (ValueError, ReportgenError) as e:  # e.g. no layer with a spatial output to factorise
        why = f"Concepts cannot be compared: {e}"
        sec.add(Note(why, kind="warning"))
        sec.results = {"images": n, "matches": [], "unsupported": why}
        return sec
    bad = [f"{nm} ({layer}, down to {lo:.3g})" for nm, (_, lo, layer) in zip(names, acts) if lo < -1e-5]
    if bad:
        sec.add(Note("NMF needs non-negative activations; the last spatial layer of " + ", ".join(bad)
                     + " has negative values, so concepts are not compared.", kind="warning"))
        sec.results = {"images": n, "matches": []}
        return sec
    fa = [factorise(a, k, ca.seed_for(f"compare/concepts/{m}")) for m, (a, _, _) in zip(names, acts)]
    pairs, _ = match_concepts(fa[0].coeffs, fa[1].coeffs)
    tops = [top_crops(f.coeffs, 4) for f in fa]
    thumb = min(96, max(48, ca.pre.size * 2))
    items = []
    for i, j, r in pairs:
        for side, (c, t, bx) in enumerate(zip((ca, cb), (tops[0][i], tops[1][j]), boxes)):
            for q, row in enumerate(t):
                im, (y, x, s) = idx[int(row) // len(bx)], bx[int(row) % len(bx)]
                a = np.asarray(Image.fromarray(c.images.display(im)[y:y + s, x:x + s]).resize((thumb, thumb)))
                items.append(GridItem(ImageData(a), label=(f"{names[side]} concept {(i, j)[side]}" if q == 0 else ""),
                                      sublabel=(f"r = {r:.2f}" if q == 0 else ""), alt=f"crop of {c.images.name(im)}"))
    sec.add(Table([f"{names[0]} concept", f"{names[1]} concept", "correlation over crops"],
                  [[i, j, round(r, 3)] for i, j, r in pairs], numeric=[0, 1, 2],
                  caption=(f"{k} NMF concepts per model over {n * len(boxes[0])} crops of {n} images (a seeded sample; "
                           f"layers {acts[0][2]} and {acts[1][2]}), paired one-to-one by the correlation of their "
                           "coefficients across the same crops.")))
    sec.add(Grid(items, columns=8, cell_width=thumb, caption=(
        f"Each row: the 4 crops that most activate a concept of {names[0]}, then those of its match in {names[1]}.")))
    weak = [p for p in pairs if p[2] < 0.5]
    sec.add(Note(f"{len(pairs) - len(weak)} of {len(pairs)} pairs correlate at 0.5 or more"
                 + (f"; {len(weak)} match only weakly (a concept of one model without a clear counterpart)."
                    if weak else ".")))
    sec.results = {"images": n, "matches": [{"a": i, "b": j, "correlation": round(r, 4)} for i, j, r in pairs]}
    return sec
