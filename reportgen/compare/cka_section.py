"""The CKA section of a comparison: layer x layer heatmaps (A vs B, A vs A) and each layer's best match.

The number of images is stated on the heatmaps; below :data:`MIN_RELIABLE_IMAGES` a warning says how far CKA
of unrelated representations scatters at that size (measured: 95% of |CKA| for 200 pairs of independent
Gaussian 16- and 100-wide representations, unbiased estimator: 0.12-0.14 at n = 24, 0.06 at n = 48, 0.03 at
n = 96, i.e. about 3/n), and with the biased estimator how far it is inflated.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from ..attribution import randomization as R
from ..features.degenerate import check_gram
from ..pictures import figure_to_png, new_figure
from ..papers import KORNBLITH_2019, NGUYEN_2021, SONG_2012
from ..report import Figure, Note, Section, Table, plural
from .cka import Estimator, cka_matrix, layer_grams, pick_layers
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..context import Ctx

#: below this many images, CKA of unrelated representations scatters beyond +-0.05 (unbiased) or is inflated
#: well above 0 (biased: about 0.25 for 16-wide and 0.68 for 100-wide independent features at n = 48)
MIN_RELIABLE_IMAGES = 50
#: 95% of |unbiased CKA| between independent random representations is about this / n (measured, see above:
#: 0.27 at n = 12, 0.13 at 24, 0.06 at 48, 0.03 at 96, 0.015 at 200)
NULL_SPREAD_N = 3.0


def cka_layer_names(ctx: Ctx, k: int) -> list[str]:
    """Convolution and linear layers in forward order, at most ``k`` spread over the depth."""
    names = R.param_layers(ctx.model, ctx.to_device(ctx.images.batch([0])))
    keep = [n for n in names if isinstance(ctx.layer(n), (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
    return pick_layers(keep or names, k)


def grams(ctx: Ctx, names: list[str], idx: list[int]) -> dict[str, np.ndarray]:
    batches = (x for _, x in ctx.images.batches(ctx.batch_size, idx))
    return layer_grams(ctx.pixel_model, {n: ctx.layer(n) for n in names}, batches, ctx.device)


SUMMARY = ("How similar the two networks' internal representations are, layer by layer: linear CKA between "
           "every layer of {a} and every layer of {b} over the same {n} images (1 = the same up to rotation and "
           "scale, about 0 = unrelated).")


def null_spread(n: int) -> float:
    """About 95% of |unbiased CKA| of unrelated representations of ``n`` images."""
    return NULL_SPREAD_N / max(n, 4)


def cka_section(ca, cb, names: tuple[str, str], n_images: int, n_layers: int,
                estimator: Estimator = "unbiased") -> Section:
    refs = [KORNBLITH_2019] + ([SONG_2012, NGUYEN_2021] if estimator == "unbiased" else [])
    n = min(n_images, len(ca.images))
    sec = Section(id="cka", title="Representation similarity (linear CKA)", references=refs,
                  summary=SUMMARY.format(a=names[0], b=names[1], n=n))
    if n < 4:
        return sec.add(Note(f"CKA needs at least 4 images; only {n} are usable.", kind="warning"))
    idx = sorted(ca.rng("compare/cka/images").choice(len(ca.images), size=n, replace=False).tolist())
    la, lb = cka_layer_names(ca, n_layers), cka_layer_names(cb, n_layers)
    ga, gb = grams(ca, la, idx), grams(cb, lb, idx)
    ab = cka_matrix([ga[x] for x in la], [gb[x] for x in lb], estimator)
    aa = cka_matrix([ga[x] for x in la], [ga[x] for x in la], estimator)
    bad = _degenerate_layers(sec, names, (la, ga), (lb, gb), n)
    ab[[i for i, x in enumerate(la) if (names[0], x) in bad], :] = np.nan
    ab[:, [j for j, x in enumerate(lb) if (names[1], x) in bad]] = np.nan
    aa[[i for i, x in enumerate(la) if (names[0], x) in bad], :] = np.nan
    aa[:, [i for i, x in enumerate(la) if (names[0], x) in bad]] = np.nan
    if np.isnan(ab).all():
        sec.results = {"images": n, "estimator": estimator, "reliable": n >= MIN_RELIABLE_IMAGES,
                       "layers_a": la, "layers_b": lb, "cka_ab": None, "cka_aa": None,
                       "mean_best_match": None, "matches": {}, "degenerate": _bad_results(bad)}
        return sec
    how = ("unbiased HSIC estimator (Song et al. 2012), as Nguyen, Raghu & Kornblith 2021: unrelated "
           "representations score about 0, and single values can be slightly negative" if estimator == "unbiased"
           else "biased HSIC estimator (Kornblith et al. 2019), which inflates CKA when there are few images")
    sec.add(Figure(_heatmaps(ab, aa, la, lb, names, n, estimator), alt=f"CKA heatmaps over {n} images", caption=(
        f"Linear CKA between layers over the same {n} images (a seeded sample), {how}. Left: {names[0]}'s layers "
        f"(rows) against {names[1]}'s (columns); right: {names[0]} against itself, the reference for how similar "
        "neighbouring layers of one network are. 1 = the same representation up to rotation and scale. Feature "
        "maps are average-pooled to at most 8x8 positions before flattening.")))
    if n < MIN_RELIABLE_IMAGES:
        spread = null_spread(n)
        text = (f"Only {n} images: below {MIN_RELIABLE_IMAGES} the estimate is unreliable. Even two unrelated "
                f"representations of {n} images give an unbiased CKA within about +-{spread:.2f} of 0 (95% of "
                "random pairs), so differences smaller than that are noise")
        text += (". Raise --cka-images (and the number of images) for a firmer heatmap." if estimator == "unbiased"
                 else "; the biased estimator adds an upward bias on top (about 0.4 for 16-wide and 0.8 for "
                      "100-wide unrelated features at 24 images), so high values everywhere are expected here.")
        sec.add(Note(text, kind="warning"))
    best = np.nanargmax(np.where(np.isnan(ab), -np.inf, ab), 1)
    rows = [[a, lb[j], round(float(ab[i, j]), 3)] for i, (a, j) in enumerate(zip(la, best)) if np.isfinite(ab[i, j])]
    sec.add(Table([f"layer of {names[0]}", f"most similar layer of {names[1]}", "CKA"], rows, numeric=[2],
                  caption="Layers matched by CKA (works across architectures: names do not need to agree)."))
    mean_best = float(np.nanmax(np.where(np.isnan(ab), -np.inf, ab), 1)[np.isfinite(ab).any(1)].mean())
    same = la == lb
    text = f"On average a layer of {names[0]} finds a layer of {names[1]} with CKA {mean_best:.2f} ({n} images)."
    if same:
        diag = np.where(np.isnan(np.diag(ab)), np.inf, np.diag(ab))
        lo = int(diag.argmin())
        diag = diag[np.isfinite(diag)]
        text += (f" Same-named layers: CKA {diag.mean():.2f} on average; the most changed is {la[lo]} "
                 f"({diag[lo]:.2f}).")
    sec.add(Note(text))
    sec.results = {"images": n, "estimator": estimator, "reliable": n >= MIN_RELIABLE_IMAGES,
                   "layers_a": la, "layers_b": lb, "cka_ab": _json(ab), "cka_aa": _json(aa),
                   "mean_best_match": round(mean_best, 4), "matches": {r[0]: r[1] for r in rows},
                   "degenerate": _bad_results(bad) if bad else None}
    return sec


def _json(m: np.ndarray) -> list:
    return [[None if not np.isfinite(v) else round(float(v), 4) for v in row] for row in m]


def _degenerate_layers(sec: Section, names, a, b, n: int) -> dict[tuple[str, str], str]:
    """{(model, layer): kind} for layers whose outputs are constant or non-finite over the images (their CKA is
    0/0, not a similarity); one note naming them (:mod:`reportgen.features.degenerate`)."""
    bad: dict[tuple[str, str], str] = {}
    for model, (layers, gr) in zip(names, (a, b)):
        for x in layers:
            kind = check_gram(gr[x])
            if kind is not None:
                bad[(model, x)] = kind
    if bad:
        words = {"constant": f"the same output for all {n} images (it does not depend on the input)",
                 "non_finite": "NaN or infinite values"}
        text = "; ".join(f"{m}'s {x} gives {words[k]}" for (m, x), k in bad.items())
        sec.add(Note(f"CKA is undefined for {plural(len(bad), 'layer')}, left blank: {text}. A randomly initialised or "
                     "broken checkpoint?", kind="warning"))
    return bad


def _bad_results(bad: dict[tuple[str, str], str]) -> dict:
    return {"layers": [{"model": m, "layer": x, "kind": k} for (m, x), k in bad.items()]}


def _heatmaps(ab, aa, la, lb, names, n: int, estimator: str):
    fig = new_figure((11, 4.8))
    fig.set_layout_engine("constrained")  # room for every label: none drawn over the other heatmap
    fig.suptitle(f"linear CKA, {estimator} HSIC, n = {n} images", fontsize=10)
    axes = fig.subplots(1, 2, sharey=True)  # both heatmaps' rows are model A's layers: named once, on the left
    for ax, m, cols, title in ((axes[0], ab, lb, f"{names[0]} vs {names[1]}"),
                               (axes[1], aa, la, f"{names[0]} vs {names[0]}")):
        im = ax.imshow(np.clip(m, 0, 1), vmin=0, vmax=1, cmap="magma", origin="lower", aspect="auto")
        ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(f"{title.split(' vs ')[1]} layers", fontsize=8)
    axes[0].set_yticks(range(len(la)), la, fontsize=7)
    axes[0].set_ylabel(f"{names[0]} layers", fontsize=8)
    axes[1].tick_params(labelleft=False)
    fig.colorbar(im, ax=axes, shrink=0.8, label="linear CKA")
    png = figure_to_png(fig)
    return png
