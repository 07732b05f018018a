"""Faithfulness of the attribution maps: which method's map follows the evidence this model uses?

Every attribution method the run enables (recomputed on the images the attribution sections show, with their own
options) and two baselines (a seeded random map, a fixed centre Gaussian) are scored per image by
* deletion and insertion (Petsiuk, Das & Saenko 2018): the class probability as the map's top units are replaced
  by the fill / restored onto a blurred copy; AUC = trapezoid over the fraction (deletion: lower is better,
  insertion: higher); the ranking score is ``insertion AUC - deletion AUC``;
* MuFidelity (Bhatt, Weller & Moura 2020): Pearson correlation over random subsets ``S`` between the map's sum
  over ``S`` and the probability drop when ``S`` is set to the fill;
* ROAD (Rong et al. 2022): probability after removing a fraction of pixels most- (MoRF, lower is better) or
  least-relevant first (LeRF, higher) by noisy linear imputation, which leaves no mask-shaped edge.
The ranking's spread is a seeded bootstrap over images; a method whose paired interval against the random map
reaches 0 is named as no better than random. The sanity verdicts (layers re-initialised from the top, Adebayo et
al. 2018; a random other class, Sixt et al. 2020) are the sanity section's own (:mod:`._sanity_checks`: one
protocol, one set of images, one threshold), computed the same way here when that section is not enabled.
The maps are the run's (:mod:`._map_store`): those the attribution sections and sanity computed are scored as they
are, and a map is computed here only when no section computed it for these images and options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import torch

from ..attribution import faithfulness as FM
from ..drift.maps import pack_maps
from ..papers import ADEBAYO_2018, BHATT_2020, PETSIUK_2018, RONG_2022, SIXT_2020
from ..pictures import figure_to_png, new_figure
from ..registry import METHOD_TECHNIQUES, Range, technique
from ..report import Figure, ImageData, Note, Section, Table, plural
from ..results_schema import result_type, to_json
from ..device import device_batch_size, inference_model
from ..features.split import SplitForward
from ._explain import explain_batch
from ._map_store import run_store
from ._faith_maps import BASELINES, RANDOM, baseline_maps, method_functions, method_reads, technique_options
from ._faith_scores import Scores, Setup, score_maps
from ._sanity_checks import FLAG_RHO, MethodCheck, checked_methods, method_check, protocol, sanity_methods

if TYPE_CHECKING:
    from ..context import Ctx


@result_type
class FaithfulnessMethod:
    method: str
    """attribution method or baseline"""
    rank: int
    """rank by mean insertion - deletion AUC (1 = most faithful)"""
    deletion_auc: float
    """mean deletion AUC of the class probability (lower = more faithful)"""
    insertion_auc: float
    """mean insertion AUC (higher = more faithful)"""
    score: float
    """mean insertion - deletion AUC"""
    score_ci95: list[float]
    """seeded bootstrap 95% interval of that mean over images"""
    vs_random_ci95: list[float]
    """bootstrap 95% interval of the mean paired difference to the random map"""
    mufidelity: float
    """mean faithfulness correlation (0 for a constant map)"""
    road_morf: float | None
    """ROAD: mean probability with the most relevant pixels imputed (lower = better; null: off)"""
    road_lerf: float | None
    """ROAD: mean probability with the least relevant pixels imputed (higher = better)"""
    weights_rho: float | None
    """mean Spearman rho of the map to the one with every layer re-initialised (null: not run; the sanity section's
    check)"""
    random_class_rho: float | None
    """mean Spearman rho of the map to the map of a random other class (null: not run)"""
    sanity: str
    """the sanity section's verdicts: weights passes / insensitive to top layers / fails, class passes / fails (mean
    rho below 0.5 passes), with the rho range over its images"""


@result_type
class FaithfulnessResults:
    images: list[str]
    """names of the images scored (the ones the attribution sections show)"""
    ranked_by: str
    """the per-image score the ranking uses (insertion AUC - deletion AUC)"""
    deletion_fill: str
    """what deleted pixels are replaced by"""
    insertion_start: str
    """the image insertion starts from"""
    steps: int
    """deletion/insertion steps from 0 to all units"""
    patch_px: int
    """side of the square units removed/inserted together (1: single pixels)"""
    fractions: list[float]
    """fractions of the units changed at each step"""
    road_fractions: list[float]
    """fractions of pixels imputed by ROAD ([] when ROAD is off)"""
    road_images: int
    """how many of the images ROAD scored"""
    methods_from_config: bool
    """the methods are those enabled in this run (false: none was, all were scored)"""
    perturbation_forward: str
    """what ran the perturbed copies: the model's own forward, or a frozen TorchScript copy checked to give the same
    logits (device.inference_copy)"""
    occlusion_cost_scaled: dict[str, Any] | None
    """null, or how the occlusion map's window was grown for an expensive model (as the occlusion section's
    cost_scaled)"""
    most_faithful: str | None
    """the top-ranked method (null when none beats the random map)"""
    no_better_than_random: list[str]
    """methods whose paired bootstrap interval against the random map reaches 0 (under 3 images: whose mean score is
    not above it)"""
    sanity_images: list[str]
    """the images the sanity verdicts come from (the sanity section's)"""
    maps_reused: dict[str, int]
    """method -> how many of its scored maps came from another section (this run or the cache)"""
    methods: list[FaithfulnessMethod]
    per_image_score: dict[str, list[float]]
    """method -> insertion - deletion AUC per image"""
    curves: dict[str, dict[str, list[float]]]
    """method -> mean deletion and insertion curves over the images"""


RESULTS = FaithfulnessResults  # report.json "results" of this section (docs/results.md is generated from it)

FILLS = ("mean", "blur", "black")


@dataclass
class FaithfulnessOptions:
    max_images: Annotated[int, Range(ge=1)] = 4
    """How many images: the first of those the attribution sections show, so their maps are scored as they are
    (a section that shows fewer leaves the rest to be computed here)."""
    steps: Annotated[int, Range(ge=2)] = 32
    """Deletion/insertion steps from none to all of the image."""
    patch: Annotated[int, Range(ge=0)] = 0
    """Side of the square units removed together, px (0: input side / 56, at least 1)."""
    deletion_fill: Literal["mean", "blur", "black"] = "mean"
    """What deleted pixels become: mean (each image's own mean colour), blur (its blurred copy) or black."""
    blur_sigma: Annotated[float, Range(ge=0)] = 0.0
    """Gaussian sigma of the blurred copy insertion starts from, px (0: input side / 16)."""
    mufidelity_runs: Annotated[int, Range(ge=2)] = 64
    """Random subsets per image for MuFidelity."""
    mufidelity_subset: Annotated[float, Range(gt=0, lt=1)] = 0.1
    """Share of the units in each subset."""
    road: bool = True
    """Run ROAD (one sparse solve per imputed copy: the slowest part)."""
    road_images: Annotated[int, Range(ge=0)] = 2
    """ROAD on at most this many of the images."""
    road_fractions: list[Annotated[float, Range(gt=0, lt=1)]] = field(default_factory=lambda: [0.2, 0.5, 0.8])
    """Shares of the pixels ROAD imputes."""
    road_noise: Annotated[float, Range(ge=0)] = 0.01
    """Std of the noise added to imputed pixels (RGB in [0, 1])."""
    sanity: bool = True
    """Show each method's sanity verdicts (the sanity section's checks, with its options and images; computed the
    same way here when that section is not enabled)."""
    bootstrap: Annotated[int, Range(ge=0)] = 1000
    """Bootstrap resamples of the images for the intervals."""


def curve_plot(fr: np.ndarray, curves: dict[str, dict[str, list[float]]], top: list[str]) -> ImageData:
    fig = new_figure((10, 3.6))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, kind in zip(axes, ("deletion", "insertion")):
        for m, c in curves.items():
            base = m in BASELINES
            ax.plot(fr, c[kind], lw=2.2 if m in top else 1.2, ls="--" if base else "-",
                    color="grey" if base else None, label=m)
        ax.set_title(f"{kind}: mean class probability", fontsize=9)
        ax.set_xlabel(f"fraction of the image {'deleted' if kind == 'deletion' else 'inserted'}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("softmax probability of the class")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return figure_to_png(fig)


def sanity_checks(ctx: Ctx, fns) -> tuple[dict[str, MethodCheck], list[str]]:
    """Each scored method's :class:`MethodCheck` under the sanity section's protocol and options: the methods it
    checks as it runs them (e.g. its Grad-CAM layer), the others with their own options."""
    sopts = technique_options(ctx, "sanity")
    p = protocol(ctx, sopts)
    own = {m.name: f for m, f in sanity_methods(ctx, sopts)}
    checks = {m: method_check(ctx, p, m, own.get(m, f)) for m, f in fns.items()}
    return checks, [ctx.images.name(i) for i in p.batch.idx]


@technique(
    "faithfulness", "Faithfulness of the attribution maps", role="review", options=FaithfulnessOptions, order=50,
    needs_autograd=True, needs_layers=True,
    references=[PETSIUK_2018, BHATT_2020, RONG_2022, ADEBAYO_2018, SIXT_2020],
    presets={"minimal": {"max_images": 2, "steps": 8, "mufidelity_runs": 16, "road_images": 1,
                         "road_fractions": [0.5], "bootstrap": 200},
             "full": {"max_images": 8, "steps": 64, "mufidelity_runs": 128, "road_images": 4,
                      "road_fractions": [0.1, 0.3, 0.5, 0.7, 0.9]}},
    reads=method_reads("sanity"),  # which methods it scores, with whose options
    uses=(METHOD_TECHNIQUES, "sanity"),  # the methods' maps, sanity's verdicts
)
def faithfulness(ctx: Ctx, opts: FaithfulnessOptions) -> Section:
    """Each attribution method's map is tested against the model itself: deleting the pixels it ranks highest should
    make the class probability fall fast (low deletion AUC), restoring them onto a blurred copy should make it rise
    fast (high insertion AUC), and removing a random subset should hurt in proportion to the map's sum over it
    (MuFidelity). The table ranks the methods by insertion minus deletion AUC, beside a random map and a centre
    Gaussian: a method that does not beat the random map does not say what this model uses."""
    if opts.deletion_fill not in FILLS:
        raise ValueError(f"faithfulness.deletion_fill must be one of {', '.join(FILLS)}, got {opts.deletion_fill!r}")
    b = explain_batch(ctx, opts.max_images)
    x, t = b.x.float(), b.targets
    fns, from_config = method_functions(ctx)
    maps, reused = scored_maps(ctx, b, fns)  # method -> B x H x W: the maps scored for each method and image
    s = setup(ctx, x, opts)
    sc = score_maps(ctx, x, t, maps, s)
    checks, sanity_images = sanity_checks(ctx, fns) if opts.sanity else ({}, [])
    rank = ranking(ctx, sc, checks, opts.bootstrap)
    sec = present(ctx, opts, s, sc, rank, checks, sanity_images, len(b.idx))
    scaled = next((f.window for f in fns.values() if f.window is not None and f.window.scaled), None)
    scaled_note = scaled.note("the occlusion map scored here") if scaled is not None else None
    if scaled_note:
        sec.add(Note(scaled_note, kind="info"))
    if not from_config:
        sec.add(Note("No attribution section is enabled in this run, so every method was scored with its default "
                     "options.", kind="info"))
    names = [ctx.images.name(i) for i in b.idx]
    sec.params.update(images=names, patch_px=s.patch)
    sec.results = to_json(FaithfulnessResults(
        images=names, ranked_by="insertion_auc - deletion_auc",
        deletion_fill=opts.deletion_fill if opts.deletion_fill != "blur" else f"blur sigma {s.sigma:g} px",
        insertion_start=f"blur sigma {s.sigma:g} px", steps=opts.steps, patch_px=s.patch,
        fractions=[round(float(v), 4) for v in sc.fractions],
        road_fractions=list(opts.road_fractions) if s.road_n else [], road_images=s.road_n,
        methods_from_config=from_config,
        perturbation_forward=getattr(s.model, "source", "the model's own forward"),
        occlusion_cost_scaled=scaled.scaled if scaled else None, most_faithful=rank.best,
        no_better_than_random=rank.named, sanity_images=sanity_images, maps_reused=reused,
        methods=rank.records,
        per_image_score={m: [round(float(v), 4) for v in sc.per_image(m)] for m in rank.order},
        curves=sc.curves,
    ))
    # the scored maps, small, for a later run's explanation drift (reportgen/drift/; written beside report.json)
    sec.arrays = pack_maps({m: maps[m] for m in maps if m not in BASELINES},
                           [ctx.images.records[i].sha256 for i in b.idx], names, t, b.preds).to_arrays()
    return sec


def scored_maps(ctx: Ctx, b, fns) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """method -> B x H x W maps of the batch (the run's maps where a section computed them) with the baselines, and
    method -> how many of its maps came from another section."""
    store = run_store(ctx)
    maps, reused = {}, {}
    for m, f in ctx.progress(list(fns.items()), "Faithfulness: maps", total=len(fns)):
        before = store.computed[(f.spec.method, True)]
        maps[m] = f.maps(ctx, b.idx, b.x.float(), b.targets)
        reused[m] = len(b.idx) - (store.computed[(f.spec.method, True)] - before)
    maps.update(baseline_maps(ctx, b.x))
    return maps, reused


def setup(ctx: Ctx, x: torch.Tensor, opts: FaithfulnessOptions) -> Setup:
    """The perturbations every method is scored with, from the options (0 = automatic) and the input side."""
    size = ctx.pre.size
    patch = opts.patch if opts.patch > 0 else max(1, round(size / 56))
    sigma = opts.blur_sigma if opts.blur_sigma > 0 else max(1.0, size / 16)
    n_units = FM.unit_scores(torch.zeros(1, size, size), patch)[0].numel()
    return Setup(patch=patch, sigma=sigma, fill=FM.fill_image(x, opts.deletion_fill, sigma), start=FM.blur(x, sigma),
                 subset=max(1, round(opts.mufidelity_subset * n_units)), runs=opts.mufidelity_runs, steps=opts.steps,
                 road_n=min(len(x), opts.road_images) if opts.road else 0, road_fractions=list(opts.road_fractions),
                 road_noise=opts.road_noise, batch=device_batch_size(ctx),
                 model=SplitForward(ctx, inference_model(ctx)))  # forward-only passes: a frozen copy where it is
    # the same and faster; under torchrun each rank runs a share of every batch (features/split.py)


def checked_text(ctx: Ctx) -> str:
    """Which methods the sanity section checks as it runs them, in words."""
    names = [m.sanity_label for m in checked_methods(ctx)]
    listed = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)
    return (f"The {listed} {'are' if len(names) > 1 else 'is'} checked as the sanity section runs them (its Grad-CAM "
            "layer and Integrated Gradients steps)." if names else "")


@dataclass
class Ranking:
    """The methods in order of mean score, their report.json records and table rows, those no better than the
    random map (``weak``; ``named``: the real methods among them), the best sound one, those failing a check."""

    order: list[str]
    records: list[FaithfulnessMethod]
    rows: list[list]
    weak: list[str]
    named: list[str]
    best: str | None
    failed: list[str]


def ranking(ctx: Ctx, sc: Scores, checks: dict[str, MethodCheck], bootstrap: int) -> Ranking:
    """Rank by mean insertion - deletion AUC with seeded bootstrap intervals over the images (and paired ones
    against the random map); with under 3 images "no better than random" is judged by the mean difference."""
    per = {m: sc.per_image(m) for m in sc.deletion}
    n = len(per[RANDOM])
    rng = ctx.rng("faithfulness/bootstrap")
    idx = rng.integers(0, n, size=(bootstrap, n)) if n > 1 else np.zeros((1, 1), dtype=np.int64)
    order = sorted(per, key=lambda m: -float(per[m].mean()))
    records: list[FaithfulnessMethod] = []
    rows, weak = [], []
    for rank, m in enumerate(order, 1):
        means, diffs = per[m][idx].mean(1), (per[m] - per[RANDOM])[idx].mean(1)
        ci = (float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))
        vs = (float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5)))
        if m != RANDOM and (vs[0] <= 0 if n >= 3 else float((per[m] - per[RANDOM]).mean()) <= 0):
            weak.append(m)
        c = checks.get(m)
        rec = FaithfulnessMethod(
            method=m, rank=rank, deletion_auc=round(float(sc.deletion[m].mean()), 4),
            insertion_auc=round(float(sc.insertion[m].mean()), 4), score=round(float(per[m].mean()), 4),
            score_ci95=[round(v, 4) for v in ci], vs_random_ci95=[round(v, 4) for v in vs],
            mufidelity=round(float(sc.mufidelity[m].mean()), 4),
            road_morf=round(float(sc.road_morf[m].mean()), 4) if m in sc.road_morf else None,
            road_lerf=round(float(sc.road_lerf[m].mean()), 4) if m in sc.road_lerf else None,
            weights_rho=round(float(np.mean(c.final)), 4) if c else None,
            random_class_rho=round(float(np.mean(c.other)), 4) if c else None,
            sanity=c.text() if c else "")
        records.append(rec)
        rows.append([rank, m, rec.deletion_auc, rec.insertion_auc,
                     f"{rec.score:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]", rec.mufidelity,
                     "-" if rec.road_morf is None else f"{rec.road_morf:.3f} / {rec.road_lerf:.3f}",
                     rec.sanity or "-"])
    real = [m for m in order if m not in BASELINES]
    failed = [m for m, c in checks.items() if c.weights != "passes" or c.random_class != "passes"]
    return Ranking(order, records, rows, weak, [m for m in weak if m not in BASELINES],
                   next((m for m in real if m not in weak), None), failed)


def present(ctx: Ctx, opts: FaithfulnessOptions, s: Setup, sc: Scores, rk: Ranking, checks, sanity_images: list[str],
            n: int) -> Section:
    """The curves, the table and the notes."""
    per = {m: sc.per_image(m) for m in rk.order}
    order, weak, best, failed, named = rk.order, rk.weak, rk.best, rk.failed, rk.named
    sigma, patch, subset, road_n = s.sigma, s.patch, s.subset, s.road_n
    fr = sc.fractions
    sec = Section(id="faithfulness", title="Faithfulness of the attribution maps")
    fill_txt = {"mean": "each image's own mean colour", "blur": f"its blurred copy (sigma {sigma:g} px)",
                "black": "black"}[opts.deletion_fill]
    unit_txt = "single pixels" if patch == 1 else f"{patch}x{patch}-pixel squares"
    sec.add(Figure(curve_plot(fr, sc.curves, order[:1]), caption=(
        f"Mean softmax probability of the explained class over {plural(n, 'image')} as {unit_txt} are deleted (left, "
        f"replaced by {fill_txt}) or inserted (right, onto the image blurred with sigma {sigma:g} px) in the order "
        f"of each map, {opts.steps} steps. Dashed grey: the baselines. Faithful: falls fast on the left, rises fast "
        "on the right."), alt="deletion and insertion curves per attribution method"))
    ci_txt = (f"seeded bootstrap 95% interval over the {n} images" if n >= 3 else
              f"{plural(n, 'image')}: too few for a meaningful interval; 'no better than random' then means a mean "
              "score at or below the random map's")
    sec.add(Table(["rank", "method", "deletion AUC", "insertion AUC", "insertion - deletion", "MuFidelity",
                   "ROAD MoRF / LeRF", "sanity (the sanity section's checks)"], rk.rows, numeric=[0, 2, 3, 5],
                  highlight={k: "bad" for k, m in enumerate(order) if m in weak},
                  caption=(f"Ranked by mean insertion minus deletion AUC ({ci_txt}). MuFidelity: Pearson correlation "
                           f"over {opts.mufidelity_runs} random subsets of {subset} {unit_txt} set to the fill "
                           "(0 = the map's sums do not predict the drop). ROAD: mean probability with "
                           + (", ".join(f"{f:.0%}" for f in opts.road_fractions) + " of the pixels imputed from "
                              f"their neighbours (noise std {opts.road_noise:g}), most / least relevant first, on "
                              f"{plural(road_n, 'image')}" if road_n else "off")
                           + (f". Sanity: the sanity section's checks on its {plural(len(sanity_images), 'image')} "
                              f"({', '.join(sanity_images)}): mean rho of the map to the map with every layer "
                              "re-initialised (and with the top half, where that decides), and to the map of a random "
                              f"other class, [range over the images]; below {FLAG_RHO} passes. "
                              + checked_text(ctx) if checks else ""))))
    if best is None:
        sec.add(Note("No attribution method beats the random map here: on these images none of the maps ranks the "
                     "pixels this model relies on better than chance.", kind="warning"))
    if best is not None:
        text = (f"Most faithful for this model on these images: {best} (insertion - deletion "
                f"{per[best].mean():.3f}, random map {per[RANDOM].mean():.3f}).")
        if best in failed:
            sound = [m for m in order if m not in failed and m not in BASELINES and m not in weak]
            text += (f" But {best} fails a sanity check below, so its score need not come from the model's class "
                     "evidence" + (f"; the best method that passes both checks is {sound[0]}." if sound
                                   else "; no method that passes both checks beats the random map."))
        text += " With so few images the order of close methods is not settled." if n < 4 else ""
        sec.add(Note(text))
    if named:
        sec.add(Note(f"No better than the random map (the paired interval reaches 0): {', '.join(named)}. These "
                     "maps do not locate the evidence this model uses, whatever they look like.", kind="warning"))
    if failed:
        verb = "changes" if len(failed) == 1 else "change"
        sec.add(Note(f"Sanity: {', '.join(failed)} barely {verb} when the top or all of the weights are destroyed "
                     "or the class is changed; a high faithfulness score for such a map comes from the image, not "
                     "the model's class evidence.", kind="warning"))
    return sec
