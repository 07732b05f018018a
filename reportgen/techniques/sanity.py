"""Sanity checks for saliency maps (Adebayo et al. 2018): do the maps depend on the learned weights?

Cascading randomisation re-initialises the model's parameter layers from the top (logits) down, one
more at each stage; independent randomisation re-initialises one layer alone. After each, the maps of
the checked methods (the gradient, guided backprop, Grad-CAM and Integrated Gradients, and any other method whose
technique runs and declares a sanity check: :func:`reportgen.registry.attribution_methods`) are recomputed on the
same images and compared with the trained model's maps by Spearman rank correlation ``rho`` and SSIM (Wang et al.
2004), both on absolute-value maps. A method whose maps stay similar while the weights they should explain are
destroyed cannot be explaining the model: it is flagged. All randomised models are deep copies; the user's model is
never modified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np

from .. import attribution as A
from ..pictures import figure_to_png, new_figure
from ..papers import ADEBAYO_2018, SIXT_2020, WANG_SSIM_2004
from ..registry import METHOD_TECHNIQUES, Range, technique
from ..results_schema import result_type, to_json
from ..report import Figure, Grid, GridItem, Group, ImageData, Note, Section, Table
from ._explain import cam_layer_choice, cam_unsupported, cell_width, input_item, saliency_to_uint8
from ._faith_maps import method_reads
from ._sanity_checks import (FLAG_RHO, MethodCheck, Protocol, cascade_twin, independent_twin, maps_on, method_check,
                             protocol, sanity_methods)

if TYPE_CHECKING:
    from ..context import Ctx


# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)


@result_type
class SanityResults:
    layers: list[str]
    """the parameter layers, input to output"""
    stages: list[str]
    """the cascade's stages: layers randomised from the top down to the named one"""
    flag_rho: float
    """the rank correlation at or above which a map counts as unchanged"""
    verdict: dict[str, str]
    """per method: the model-randomisation verdict (passes, fails, insensitive to top layers, ...)"""
    cascade_rank_corr: dict[str, list[float]]
    """per method, per stage: mean Spearman rank correlation with the trained model's map"""
    cascade_ssim: dict[str, list[float]]
    """per method, per stage: mean SSIM with the trained model's map"""
    independent_rank_corr: dict[str, list[float]]
    """per method, per layer randomised alone: mean Spearman rank correlation"""
    random_logit: dict[str, Any]
    """the random-class check: classes used and, per method, rank_corr, its range over the images, ssim and verdict"""
    checks: dict[str, dict[str, Any]]
    """per method: the one record of both checks that faithfulness shows too (rho with the top half and with all layers
    random, rho for a random other class: mean and range over the images; the two verdicts)"""


RESULTS = SanityResults  # report.json "results" of this section (docs/results.md is generated from it)


@dataclass
class SanityOptions:
    max_images: Annotated[int, Range(ge=1)] = 3
    """How many images (the same ones saliency shows)."""
    shown_images: Annotated[int, Range(ge=1)] = 1
    """Of those, how many get their maps drawn at every stage (the numbers use all of them)."""
    stages: Annotated[int, Range(ge=1)] = 7
    """Cascade stages shown (spread over the parameter layers; the last randomises all of them)."""
    ig_steps: Annotated[int, Range(ge=1)] = 8
    """Gauss-Legendre steps for Integrated Gradients (fixed here, no completeness doubling: the maps are only
    compared with each other; black baseline)."""
    layer: str | None = None
    """Grad-CAM layer (None: the last spatial block the class score's gradient reaches)."""


def compare(orig: np.ndarray, new: np.ndarray) -> tuple[list[float], list[float]]:
    """Per image: (Spearman rho, SSIM) of ``new`` to ``orig``."""
    return ([A.rank_correlation(a, b) for a, b in zip(orig, new)], [A.ssim(a, b) for a, b in zip(orig, new)])


def run_randomisations(ctx: Ctx, p: Protocol, fns):
    """Maps of the trained model, of each cascade stage and of each independently randomised layer (through the
    run's map store: the faithfulness section reads the same maps)."""
    orig = {m: maps_on(ctx, p, f) for m, f in fns.items()}
    cascade, independent = [], []
    for k in ctx.progress(p.stages, "Sanity: cascading randomisation", total=len(p.stages)):
        twin = cascade_twin(ctx, p, k)
        cascade.append({m: maps_on(ctx, p, f, twin) for m, f in fns.items()})
    for k in ctx.progress(p.stages, "Sanity: independent randomisation", total=len(p.stages)):
        twin = independent_twin(ctx, p, k)
        independent.append({m: maps_on(ctx, p, f, twin) for m, f in fns.items()})
    return orig, cascade, independent


def curve_plot(labels: list[str], cas: dict[str, list[float]], ind: dict[str, list[float]]) -> ImageData:
    """The cascading and independent curves of every checked method (``cas``'s order)."""
    methods = list(cas)
    fig = new_figure((10, 3.6))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, data, title in ((axes[0], cas, "cascading (top layers randomised down to ...)"),
                            (axes[1], ind, "independent (only this layer randomised)")):
        for m in methods:
            ax.plot(range(len(labels)), data[m], marker="o", label=m)
        ax.axhline(FLAG_RHO, color="grey", ls=":", lw=1)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    values = [v for d in (cas, ind) for m in methods for v in d[m] if np.isfinite(v)]
    axes[0].set_ylim(min([-0.2, *values]) - 0.05, max([1.0, *values]) + 0.05)  # every point inside the axes
    axes[0].set_ylabel("mean Spearman rho to the trained model's map")
    fig.set_layout_engine("constrained")
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8, loc="outside lower center", ncol=len(methods),
               frameon=False)  # under the plots, over no line
    png = figure_to_png(fig)
    return png


def verdicts(cas: dict[str, list[float]], checks: dict[str, MethodCheck], n_layers: int,
             p: Protocol) -> tuple[list[Note], dict[str, str]]:
    """One sentence per method from its cascade curve; the verdict is its :class:`MethodCheck`'s (the one the
    faithfulness table shows)."""
    notes, status = [], {}
    for m in cas:
        c = checks[m]
        final, mid = float(np.mean(c.final)), float(np.mean(c.mid))
        status[m] = c.weights
        spread = f" (per image {min(c.final):.2f} to {max(c.final):.2f})" if len(c.final) > 1 else ""
        if c.weights == "fails":
            notes.append(Note(f"{m}: this map does not depend on the learned weights — with every layer "
                              f"randomised its rank correlation to the trained model's map is still {final:.2f}"
                              f"{spread}." + (" Multiplying by (image - baseline) makes it follow the image itself."
                                              if m == "Integrated Gradients" else ""), kind="warning"))
        elif c.weights == "insensitive to top layers":
            notes.append(Note(f"{m}: the map barely changes while the top {p.stages[p.half]} of {n_layers} layers "
                              f"are random (rho {mid:.2f}); it only changes once the lowest layers go "
                              f"(rho {final:.2f} with all random{spread}). It reflects the input and the first layers "
                              "more than the learned class evidence.", kind="warning"))
        else:
            notes.append(Note(f"{m}: passes — the map changes as the weights are destroyed (rho {cas[m][0]:.2f} "
                              f"after the top layer, {final:.2f} with all layers random{spread})."))
    return notes, status


def random_logit(ctx: Ctx, p: Protocol, fns, orig, checks: dict[str, MethodCheck]) -> tuple[Table, Note, dict]:
    """Random-logit test (Sixt, Granz & Landgraf 2020): each method's map for a random other class (seeded) should
    differ from its map for the explained class; a high rank correlation means the map ignores the class."""
    res, rows = {}, []
    for m, f in fns.items():
        _, ss = compare(orig[m], maps_on(ctx, p, f, None, p.other))
        c = checks[m]
        r, s = float(np.mean(c.other)), float(np.mean(ss))
        res[m] = {"rank_corr": round(r, 4), "rank_corr_range": [round(min(c.other), 4), round(max(c.other), 4)],
                  "ssim": round(s, 4), "verdict": c.random_class}
        rows.append([m, f"{r:.3f}" + (f" [{min(c.other):.2f}, {max(c.other):.2f}]" if len(c.other) > 1 else ""),
                     round(s, 3), res[m]["verdict"]])
    bad = [m for m in res if res[m]["verdict"] == "fails"]
    verb = "draws" if len(bad) == 1 else "draw"
    note = Note((f"Random-logit test: {', '.join(bad)} {verb} nearly the same map for a random other class "
                 f"(mean rho >= {FLAG_RHO}): the map shows the image, not the class." if bad else
                 "Random-logit test: every method's map changes when a random other class is explained."),
                kind="warning" if bad else "info")
    table = Table(["method", "rho to the other class's map [range over images]", "SSIM", "verdict"], rows,
                  numeric=[2],
                  caption=("Random-logit test: mean Spearman rho and SSIM between each method's map for the explained "
                           "class and for a random other class (seeded, one per image): "
                           + ", ".join(ctx.class_name(int(k)) for k in p.other) + f". Below {FLAG_RHO} passes."))
    return table, note, {"classes": [ctx.class_name(int(k)) for k in p.other], "methods": res}


def stage_grid(ctx: Ctx, b, orig, maps, method, labels, caption, shown: int) -> Grid:
    """The first ``shown`` images' maps at every stage, with each map's rho and SSIM to the trained one."""
    items = []
    for k in range(shown):
        items.append(input_item(ctx, b, k))
        items.append(GridItem(ImageData(saliency_to_uint8(orig[method][k], 99.5)), label="trained",
                              alt=f"{method} map of the trained model"))
        for s, lab in enumerate(labels):
            rho, ss = compare(orig[method][k:k + 1], maps[s][method][k:k + 1])
            items.append(GridItem(ImageData(saliency_to_uint8(maps[s][method][k], 99.5)), label=lab,
                                  sublabel=f"rho {rho[0]:.2f}, SSIM {ss[0]:.2f}",
                                  alt=f"{method} map with {lab} randomised"))
    return Grid(items, columns=2 + len(labels), cell_width=min(112, cell_width(ctx)), caption=caption)


@technique(
    "sanity", "Sanity checks for saliency maps", role="review", options=SanityOptions, order=49, needs_autograd=True,
    needs_layers=True,
    references=[ADEBAYO_2018, SIXT_2020, WANG_SSIM_2004],
    presets={"minimal": {"max_images": 1, "stages": 3, "ig_steps": 8},
             "full": {"max_images": 6, "stages": 12, "ig_steps": 32}},
    reads=method_reads(checked=True),  # which methods it checks: those declared always, those of techniques that run
    uses=(METHOD_TECHNIQUES,),  # the checked methods' maps where its options match theirs (_map_store)
)
def sanity(ctx: Ctx, opts: SanityOptions) -> Section:
    """The model's weights are re-initialised layer by layer, from the top down (cascading) or one layer at a time
    (independent), and each saliency method is run again. A method that explains the model must change when the
    model is destroyed: a high rank correlation to the trained model's map means the map shows the image, not what
    the network learned."""
    p = protocol(ctx, opts)
    b, stages, names = p.batch, p.stages, p.top_down[::-1]
    fns = {m.sanity_label: f for m, f in sanity_methods(ctx, opts)}  # its name of each method -> its map function
    cam_name = cam_layer_choice(ctx, opts.layer).name  # None: no layer reaches the class score, no Grad-CAM
    methods = list(fns)
    orig, cascade, independent = run_randomisations(ctx, p, fns)
    checks = {m: method_check(ctx, p, m, f) for m, f in fns.items()}  # the verdicts faithfulness shows too
    top_down = p.top_down
    cas_lab = [top_down[k - 1] for k in stages]
    cas = {m: [float(np.mean(compare(orig[m], c[m])[0])) for c in cascade] for m in methods}
    cas_ssim = {m: [float(np.mean(compare(orig[m], c[m])[1])) for c in cascade] for m in methods}
    ind = {m: [float(np.mean(compare(orig[m], c[m])[0])) for c in independent] for m in methods}

    sec = Section(id="sanity", title="Sanity checks for saliency maps")
    sec.add(Figure(curve_plot(cas_lab, cas, ind), caption=(
        f"Mean Spearman rank correlation (over {len(b.idx)} images) between each method's map on the trained "
        f"model and on a randomised copy. Left: layers randomised from the top down to the named layer "
        f"({len(names)} parameter layers in all; the last point randomises every one). Right: only the named "
        f"layer randomised. Dotted line: rho = {FLAG_RHO}."), alt="rank correlation against randomised layers"))
    notes, status = verdicts(cas, checks, len(names), p)
    sec.add(*notes)
    rl_table, rl_note, rl = random_logit(ctx, p, fns, orig, checks)
    sec.add(rl_note, rl_table)
    rows = [[m] + [f"{r:.2f} / {s:.2f}" for r, s in zip(cas[m], cas_ssim[m])] for m in methods]
    sec.add(Table(["method"] + [f"to {n}" for n in cas_lab], rows,
                  caption="Cascading randomisation: mean rho / mean SSIM to the trained model's map."))
    shown = min(opts.shown_images, len(b.idx))
    drawn = (f"; drawn for the first {shown} of the {len(b.idx)} images the numbers above use"
             if shown < len(b.idx) else "")
    for m in methods:
        sec.add(Group(m, [
            stage_grid(ctx, b, orig, cascade, m, [f"to {n}" for n in cas_lab],
                       f"Cascading: the input, the trained model's map, then the map with the layers from the top "
                       f"down to the named one randomised. Maps are |{m}| (white = 99.5th percentile)"
                       + drawn + ".", shown),
            stage_grid(ctx, b, orig, independent, m, [f"only {n}" for n in cas_lab],
                       "Independent: one layer randomised at a time" + drawn + ".", shown),
        ], description=f"Verdict: {status[m]}."))
    no_cam = cam_unsupported(ctx, opts.layer) if cam_name is None else None
    sec.add(Note((f"Grad-CAM at {cam_name}; " if cam_name else f"No Grad-CAM: {no_cam} ")
                 + f"Integrated Gradients with a black baseline and {opts.ig_steps} fixed "
                 "steps; all maps compared as absolute values. Re-initialisation: U(+-1/sqrt(fan-in)) for weights "
                 "and biases, gamma = 1 and beta = 0 (fresh statistics) for normalisation layers, seeded per layer; "
                 "every randomised model is a copy, the model being reported is unchanged."))
    sec.params.update(layer=cam_name, images=[ctx.images.name(i) for i in b.idx])
    sec.results = to_json(SanityResults(
        layers=names, stages=cas_lab, flag_rho=FLAG_RHO, verdict=status,
        cascade_rank_corr={m: [round(v, 4) for v in cas[m]] for m in methods},
        cascade_ssim={m: [round(v, 4) for v in cas_ssim[m]] for m in methods},
        independent_rank_corr={m: [round(v, 4) for v in ind[m]] for m in methods},
        random_logit=rl,
        checks={m: checks[m].to_dict() for m in methods},
    ))
    return sec
