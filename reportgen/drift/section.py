"""The explanation drift section: ``compare`` (A against B) and ``build --baseline OLD`` (OLD against this run).

Both runs' maps come from their faithfulness sections (:mod:`.maps`: the maps it scores, for the explained class,
kept small); :func:`.compute.compare_maps` compares them; this module only turns the numbers into blocks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Sequence

import numpy as np
from PIL import Image

from ..errors import ReportgenError
from ..registry import Range
from ..report import Grid, GridItem, ImageData, Note, Section, Table, plural
from .concepts import compare_concepts
from .compute import MIN_CLASS_IMAGES, UNCHANGED, Drift, compare_maps, similarity
from .maps import SOURCE, MapSet, from_section_arrays, load_maps

if TYPE_CHECKING:
    from ..context import Ctx

RESULTS = {
    "names": "the two runs' names (first: the earlier run or model A)",
    "baseline": "build only: the baseline report compared with",
    "images_compared": "images explained by both runs (same file SHA-256)",
    "topk": "share of the pixels in the top-k overlap",
    "predictions_changed": "images of those whose prediction differs between the runs",
    "methods": "one entry per method compared (an empty list when unsupported)",
    "methods[].method": "attribution method both runs computed",
    "methods[].images": "images compared for it",
    "methods[].mean_rank_correlation": "mean Spearman rho of the two maps (1 = same pixel order)",
    "methods[].mean_topk_overlap": "mean intersection over union of the two maps' top-k pixels",
    "methods[].min_rank_correlation": "lowest rho over the images",
    "changed_images": "the most changed explanations (an empty list when none changed)",
    "changed_images[].image": "an image whose prediction did not change but whose map did most (lowest similarity "
                              "first; rho >= 0.99 is not listed)",
    "changed_images[].image_id": "its page: images/<image_id>.html",
    "changed_images[].method": "the method",
    "changed_images[].rank_correlation": "rho of the two maps",
    "changed_images[].topk_overlap": "IoU of their top-k pixels",
    "changed_images[].similarity": "(rho + IoU) / 2, the order of the list",
    "changed_images[].prediction_same": "both runs predict the same class (always true here)",
    "changed_images[].class": "the class explained",
    "image_ranking[].image": "every common image, lowest mean similarity over the methods first",
    "image_ranking[].mean_similarity": "its mean (rho + IoU) / 2 over the methods",
    "image_ranking[].mean_rank_correlation": "its mean rho over the methods",
    "image_ranking[].prediction_same": "both runs predict the same class",
    "class_tests": "the classes tested (an empty list when no class has 3 common images)",
    "class_tests[].class": "a class with >= 3 common images (by explained class)",
    "class_tests[].images": "its common images",
    "class_tests[].mean_rank_correlation": "mean rho (over methods and its images)",
    "class_tests[].others_mean_rank_correlation": "the same over the other images",
    "class_tests[].p_value": "one-sided permutation test of the class labels, Bonferroni over the classes tested",
    "class_tests[].drifted": "lower than the others and p below 0.05",
    "drifted_classes": "the classes named (an empty list when none moved beyond noise)",
    "drifted_classes[].class": "a class whose explanations moved as a group beyond noise",
    "drifted_classes[].mean_rank_correlation": "its mean rho",
    "drifted_classes[].images": "its common images",
    "drifted_classes[].p_value": "its corrected p-value",
    "concepts": "concepts per class compared: compared (bool), reason (when not), match_jaccard, share_change, "
                "classes[]: class, matched[] (a, b, crop_jaccard, share_a, share_b, importance_changed), appeared "
                "(second-run concept ids with no match), vanished (first-run ids with no match)",
    "unsupported": "why nothing could be compared (no maps in common)",
}
TITLE = "Explanation drift"
SUMMARY = ("Whether the two runs explain the same images the same way: per attribution method and image, the rank "
           "correlation of the two maps and the overlap of their top pixels; the images whose explanation changed "
           "most while the prediction did not, and classes whose explanations moved together.")


@dataclass
class DriftOptions:
    topk: Annotated[float, Range(gt=0, le=1)] = 0.1
    """Share of each map's highest pixels whose overlap is measured."""
    top: Annotated[int, Range(ge=1)] = 8
    """How many (image, method) pairs the most-changed list shows."""
    permutations: Annotated[int, Range(ge=100)] = 2000
    """Shuffles of the class labels in the class test."""
    alpha: Annotated[float, Range(gt=0, lt=1)] = 0.05
    """Level of the class test (after the Bonferroni correction)."""


def unsupported(why: str, names: Sequence[str], concepts: dict[str, Any] | None = None) -> Section:
    sec = Section(id="drift", title=TITLE, summary=SUMMARY)
    sec.add(Note(f"Explanation drift cannot be measured: {why}.", kind="warning"))
    sec.results = {"names": list(names), "unsupported": why, "methods": [], "changed_images": [],
                   "drifted_classes": []}
    if concepts is not None:
        sec.results["concepts"] = concepts
        sec.add(concepts_block(concepts, names))
    return sec


def _upsample(m: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    f = Image.fromarray(np.asarray(m, dtype=np.float32), mode="F")
    return np.asarray(f.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), dtype=np.float32)


def changed_grid(res: Drift, names: Sequence[str], picture: Callable[[str], tuple[np.ndarray, str] | None],
                 class_name: Callable[[int], str]) -> Grid | None:
    """Each most-changed pair as image | A's map | B's map (overlays; each cell links to the image's page)."""
    from ..attribution.visualization import attr_image

    items = []
    assert res.maps_a is not None and res.maps_b is not None
    for q, i, rho, ov in res.changed:
        got = picture(res.sha256[i])
        if got is None:
            continue
        img, iid = got
        method = res.methods[q].method
        items.append(GridItem(ImageData(img, image_id=iid, whole=True), label=res.names[i],
                              sublabel=f"map of {class_name(int(res.targets[i]))}; both predict "
                                       f"{class_name(int(res.preds_b[i]))}", alt=f"input {res.names[i]}"))
        for side, maps in zip(names, (res.maps_a, res.maps_b)):
            pic = attr_image(_upsample(maps[q, i], img.shape), img, "overlay", outlier_perc=0.0)
            items.append(GridItem(ImageData(pic, image_id=iid), label=f"{method}: {side}",
                                  sublabel=(f"rho {rho:.2f}, top-{res.k:.0%} IoU {ov:.2f}" if side == names[1] else ""),
                                  alt=f"{method} map of {res.names[i]} by {side}"))
    if not items:
        return None
    return Grid(items, columns=3, caption=(
        f"The {len(res.changed)} (image, method) pairs whose maps changed most (lowest mean of rank correlation and "
        f"top-{res.k:.0%} overlap) among images predicted the "
        f"same by {names[0]} and {names[1]}: the image, then each run's map over it (kept at 32x32, so coarse). "
        "Click an image for its page."))


def drift_results(res: Drift, names: Sequence[str], ids: Callable[[str], str],
                  class_name: Callable[[int], str]) -> dict[str, Any]:
    same = res.same_prediction
    score, sim = res.image_rho(), res.image_similarity()
    return {
        "names": list(names), "images_compared": len(res.sha256), "topk": res.k,
        "predictions_changed": int((~same).sum()),
        "methods": [{"method": m.method, "images": len(m.rho), "mean_rank_correlation": round(float(m.rho.mean()), 4),
                     "mean_topk_overlap": round(float(m.overlap.mean()), 4),
                     "min_rank_correlation": round(float(m.rho.min()), 4)} for m in res.methods],
        "changed_images": [{"image": res.names[i], "image_id": ids(res.sha256[i]), "method": res.methods[q].method,
                            "rank_correlation": round(rho, 4), "topk_overlap": round(ov, 4),
                            "similarity": round(similarity(rho, ov), 4),
                            "prediction_same": bool(same[i]), "class": class_name(int(res.targets[i]))}
                           for q, i, rho, ov in res.changed],
        "image_ranking": [{"image": res.names[i], "mean_similarity": round(float(sim[i]), 4),
                           "mean_rank_correlation": round(float(score[i]), 4), "prediction_same": bool(same[i])}
                          for i in np.argsort(sim, kind="stable")],
        "class_tests": [{"class": class_name(c.cls), "images": c.images, "mean_rank_correlation": round(c.mean_rho, 4),
                         "others_mean_rank_correlation": round(c.others_rho, 4), "p_value": round(c.p_value, 4),
                         "drifted": c.drifted} for c in res.classes],
        "drifted_classes": [{"class": class_name(c.cls), "mean_rank_correlation": round(c.mean_rho, 4),
                             "images": c.images, "p_value": round(c.p_value, 4)} for c in res.classes if c.drifted],
    }


def drift_section(a: MapSet, b: MapSet, names: Sequence[str], ctx: Ctx, opts: DriftOptions | None = None,
                  concepts: dict[str, Any] | None = None) -> Section:
    """The section for ``b`` against ``a``; ``ctx`` (the later run) gives the pictures, image ids and class names;
    ``concepts`` is :func:`.concepts.compare_concepts` of the two runs' concepts sections."""
    opts = opts or DriftOptions()
    res = compare_maps(a, b, opts.topk, opts.top, opts.permutations, opts.alpha, seed=ctx.seed_for("drift/classes"))
    if res.reason is not None:
        return unsupported(res.reason, names, concepts)
    where = {r.sha256: i for i, r in enumerate(ctx.images.records)}

    def picture(sha: str):
        return (ctx.images.display(where[sha]), ctx.images.image_id(where[sha])) if sha in where else None

    sec = Section(id="drift", title=f"{TITLE}: {names[0]} | {names[1]}", summary=SUMMARY, params=asdict(opts))
    sec.results = r = drift_results(res, names, lambda s: picture(s)[1] if s in where else "", ctx.class_name)
    n = r["images_compared"]
    sec.add(headline(r, names))
    sec.add(Table(["method", "images", "mean rank correlation", f"mean top-{opts.topk:.0%} overlap (IoU)",
                   "lowest rank correlation"],
                  [[m["method"], m["images"], m["mean_rank_correlation"], m["mean_topk_overlap"],
                    m["min_rank_correlation"]] for m in r["methods"]], numeric=[1, 2, 3, 4], caption=(
        f"Per method, over the {plural(n, 'image')} both runs explained (matched by file content): "
        "Spearman rank correlation "
        f"of the two maps (1 = the same pixel order) and intersection over union of their top {opts.topk:.0%} pixels "
        f"(1 = the same most relevant pixels; unrelated maps give about {opts.topk / (2 - opts.topk):.2f}). "
        f"{r['predictions_changed']} of the {n} predictions differ between the runs.")))
    if n < MIN_CLASS_IMAGES:
        sec.add(Note(f"Only {plural(n, 'image')} in common: too few to say whether the explanations drifted in general "
                     "(raise faithfulness.max_images in both runs).", kind="warning"))
    grid = changed_grid(res, names, picture, ctx.class_name)
    if grid is not None:
        sec.add(grid)
    elif not res.same_prediction.any():
        sec.add(Note("Every common image changed its prediction, so no explanation changed on its own."))
    elif not res.changed:
        sec.add(Note(f"No explanation changed: on every image predicted the same by both runs, every method's rank "
                     f"correlation is at least {UNCHANGED}."))
    sec.add(class_note(r, n))
    if concepts is not None:
        r["concepts"] = concepts
        sec.add(concepts_block(concepts, names))
    return sec


def concepts_block(c: dict[str, Any], names: Sequence[str]) -> Table | Note:
    """Per class: the concepts that stayed (and whose importance moved), appeared and vanished."""
    if not c.get("compared"):
        return Note(f"Concepts per class are not compared: {c.get('reason')}.")

    def ids(v: list) -> str:
        return ", ".join(str(x) for x in v) or "-"

    rows = [[k["class"], ids([f"{m['a']}->{m['b']}" for m in k["matched"]]),
             ids([f"{m['a']}->{m['b']} ({m['share_a']:.2f} -> {m['share_b']:.2f})" for m in k["matched"]
                  if m["importance_changed"]]), ids(k["appeared"]), ids(k["vanished"])] for k in c["classes"]]
    return Table(["class", f"same concept ({names[0]} -> {names[1]})", "importance share changed", "appeared",
                  "vanished"], rows, caption=(
        f"Concepts per class (the concepts section of each run), matched by their most activating crops: the same "
        f"concept when at least a third of the two crop sets coincide (Jaccard >= {c['match_jaccard']:.2f}). "
        f"Importance share changed: by {c['share_change']:.2f} or more. Appeared: a concept of {names[1]} with no "
        f"match; vanished: one of {names[0]} with no match."))


def headline(r: dict[str, Any], names: Sequence[str]) -> Note:
    """Which method's explanations moved most and least (mean rank correlation)."""
    ms = sorted(r["methods"], key=lambda m: m["mean_rank_correlation"])
    lo, hi = ms[0], ms[-1]
    text = (f"On the {plural(r['images_compared'], 'common image')}, the maps of {names[1]} differ from those of "
            f"{names[0]} "
            f"most for {lo['method']} (mean rank correlation {lo['mean_rank_correlation']:.2f}, top-{r['topk']:.0%} "
            f"overlap {lo['mean_topk_overlap']:.2f})")
    if len(ms) > 1:
        text += f" and least for {hi['method']} ({hi['mean_rank_correlation']:.2f})"
    if hi["mean_rank_correlation"] >= UNCHANGED:
        text = (f"The explanations did not change: every method's mean rank correlation is at least {UNCHANGED}"
                if lo["mean_rank_correlation"] >= UNCHANGED else text)
    return Note(text + ".", kind="info" if lo["mean_rank_correlation"] >= 0.5 else "warning")


def class_note(r: dict[str, Any], n: int) -> Note:
    tests = r["class_tests"]
    if not tests:
        return Note(f"No class has {MIN_CLASS_IMAGES} or more of the {n} common images (and others beside it), so "
                    "no class is tested for drift as a group.")
    if r["drifted_classes"]:
        named = ", ".join(f"{c['class']} (mean rho {c['mean_rank_correlation']:.2f} over {c['images']} images, "
                          f"p = {c['p_value']:.3f})" for c in r["drifted_classes"])
        return Note(f"Explanations moved as a group, beyond noise, for: {named}. The other images' mean rho is "
                    "higher (permutation test of the class labels, Bonferroni over the classes tested).",
                    kind="warning")
    return Note(f"{len(tests)} class(es) tested; none moved as a group beyond noise (permutation test of the class "
                "labels, Bonferroni-corrected, 5% level).")


def faithfulness_maps(sec: Section | None) -> tuple[MapSet | None, str]:
    """The maps a run's faithfulness section kept, or (None, why not)."""
    if sec is None:
        return None, "the faithfulness section (which computes the maps) was not run"
    if sec.error or "unsupported" in sec.results:
        return None, f"the faithfulness section did not run to the end ({sec.error or sec.results['unsupported']})"
    ms = from_section_arrays(getattr(sec, "arrays", None))
    return (ms, "") if ms is not None else (None, "the faithfulness section kept no maps")


def section_results(sections: Sequence[Section], sid: str) -> dict[str, Any] | None:
    s = next((s for s in sections if s.id == sid), None)
    return s.results if s is not None and not s.error and "unsupported" not in s.results else None


def compare_drift_section(ctx: Ctx, names: Sequence[str], secs_a: Sequence[Section],
                          secs_b: Sequence[Section]) -> Section:
    """``compare``: A's maps against B's (from the faithfulness sections both models ran), and their concepts."""
    (ma, wa), (mb, wb) = (faithfulness_maps(next((s for s in ss if s.id == SOURCE), None)) for ss in (secs_a, secs_b))
    concepts = compare_concepts(section_results(secs_a, "concepts"), section_results(secs_b, "concepts"))
    if ma is None or mb is None:
        return unsupported(f"{wa or wb} (include faithfulness in the compared techniques)", names, concepts)
    return drift_section(ma, mb, names, ctx, concepts=concepts)


def baseline_drift_section(ctx: Ctx, baseline: str | Path, sections: list[Section]) -> Section:
    """``build --baseline OLD``: OLD's kept maps against this run's."""
    from ..display_paths import display_path

    names = ("baseline", "this run")
    concepts = compare_concepts(baseline_results(baseline, "concepts"), section_results(sections, "concepts"))
    mb, why = faithfulness_maps(next((s for s in sections if s.id == SOURCE), None))
    if mb is None:
        return unsupported(f"this run has no maps to compare: {why}", names, concepts)
    try:
        ma = load_maps(baseline)
    except (ReportgenError, ValueError) as e:
        return unsupported(f"the baseline's maps cannot be read: {e}", names, concepts)
    if ma is None:
        return unsupported(f"the baseline {display_path(baseline)} kept no attribution maps (its faithfulness "
                           "section did not run, or it was built by a reportgen that did not keep them)", names,
                           concepts)
    sec = drift_section(ma, mb, names, ctx, concepts=concepts)
    sec.results["baseline"] = display_path(baseline)
    return sec


def baseline_results(baseline: str | Path, sid: str) -> dict[str, Any] | None:
    """A section's results in the baseline's report.json (None: absent, failed or unreadable)."""
    from ..publish.rerender import read_report_json

    p = Path(baseline)
    try:
        data = read_report_json(p.parent if p.name == "report.json" else p)
    except ReportgenError:
        return None
    s = next((s for s in data.get("sections") or [] if s.get("id") == sid), None) or {}
    r = s.get("results")
    return r if isinstance(r, dict) and not s.get("error") and "unsupported" not in r else None


__all__ = ["RESULTS", "DriftOptions", "drift_section", "drift_results", "compare_drift_section",
           "baseline_drift_section", "unsupported", "faithfulness_maps"]
