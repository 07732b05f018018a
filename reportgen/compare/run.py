"""``reportgen compare``: two models on the same images, one report (Python API :func:`compare_reports`).

Both models get their own :class:`~reportgen.context.RunContext` over the same image folder, each under its
own preprocessing (:class:`~reportgen.options.RunOptions`: ``model`` for what both share, ``model_a`` /
``model_b`` for each one's own; the same options object :func:`~reportgen.build.build_report` takes). The
shared one-pass features give both models' probabilities, from which the prediction, per-class and calibration
sections are computed (:mod:`.diff`); linear CKA between the layers of A and B (and of A with itself as the
reference) comes from one extra pass on a seeded subsample (:mod:`.cka`); and a few registry techniques run
for both models and are shown in pairs (:mod:`.paired`). The output is written like a normal report (staged,
then swapped into place; a folder or one ``.html`` file; same renderer, themes and CSP).
"""

from __future__ import annotations

import copy
import re
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from torch import nn

from .. import registry
from ..build import (
    BuildResult, check_layer, check_paths, compute_sections, load_for_run, make_context, open_cache, publish_report,
    run_class_names, run_config, versions,
)
from ..checks import model_title, untrained_banner, untrained_evidence
from ..device import apply_threads, device_description, resolve_device
from ..context import no_progress
from ..display_paths import display_path, published_command, published_model_info
from ..errors import ConfigError, ReportgenError
from ..options import RunOptions
from ..publish.atomic import is_single_file_target
from ..publish.rerender import staged_output, store_tree
from ..review import review_plan, run_predictions
from ..report import ImagesInfo, Report, RunInfo
from .cka import Estimator
from .cka_section import cka_section
from .concepts import concepts_section
from .diff import calibration_section, flipped_section, per_class_section
from .paired import PAIRED, default_paired, paired_section
from ..drift.maps import SOURCE
from ..drift.section import compare_drift_section



def comparison_title(names: Sequence[str], titles: Sequence[str]) -> str:
    """``A vs B — comparison``: each model by its name, with its class name in brackets only when the name does not
    already hold it ("MobileNetV2 vs ResNet18-random", not "MobileNetV2: MobileNetV2 vs ...")."""
    def norm(t: str) -> str:
        return re.sub(r"[^a-z0-9]", "", t.lower())

    def one(name: str, title: str) -> str:
        head = title.split(" (")[0]
        return name if not head or norm(head) in norm(name) else f"{name} ({head})"
    return f"{one(names[0], titles[0])} vs {one(names[1], titles[1])} — comparison"


def compare_reports(
    model_a: str | nn.Module,
    model_b: str | nn.Module,
    /,
    images: str | Path,
    out: str | Path,
    options: RunOptions | None = None,
    *,
    names: tuple[str, str] = ("A", "B"),
    techniques: tuple[str, ...] | list[str] | None = None,
    cka_images: int = 64,
    cka_layers: int = 12,
    cka_estimator: Estimator = "unbiased",
    progress=no_progress,
    log: Callable[[str], None] | None = None,
    **kw: Any,
) -> BuildResult:
    """Build a comparison report of ``model_a`` and ``model_b`` (SPEC strings or modules, positional: the
    keywords ``model_a`` / ``model_b`` are the per-model options) on ``images``.

    ``options`` and/or its fields as keywords, as for :func:`~reportgen.build.build_report`; per-model values
    in ``model_a`` / ``model_b`` (:class:`~reportgen.options.ModelOptions`). ``techniques`` (default: ``only``,
    else :func:`.paired.default_paired`) run for both models and are shown side by side.
    """
    from ..render import check_theme, theme_label

    o = RunOptions.of(options, **kw)
    t_start = time.perf_counter()
    log = log or (lambda s: None)
    out = Path(out)
    check_theme(o.theme)
    if names[0] == names[1]:
        raise ReportgenError("the two models need different names")
    if cka_estimator not in ("unbiased", "biased"):
        raise ReportgenError(f"unknown CKA estimator {cka_estimator!r}; choose unbiased or biased")
    chosen = list(techniques) if techniques is not None else list(o.only or default_paired())
    chosen = [t for t in chosen if t not in (o.skip or [])]
    for t in chosen:
        try:
            registry.get(t)  # unknown ids fail before anything is loaded
        except KeyError as e:
            raise ConfigError(str(e.args[0])) from None
    cfg = run_config(RunOptions.of(o, only=chosen or None, skip=None))
    per_model = o.models(2)
    check_paths(out, images)
    cache = open_cache(o)
    review = review_plan(o, compare=True)  # baseline and rules: bad input before the models are loaded
    apply_threads(cfg.general.threads, log=log)  # logs "threads: N (why)"
    loaded = [load_for_run(m, mo, o.trust) for m, mo in zip((model_a, model_b), per_model)]
    for (ld, _), mo in zip(loaded, per_model):
        check_layer(ld.model, mo.layer or cfg.general.layer)
    dev = resolve_device(o.device)
    with staged_output(out, wait=o.wait, log=log) as tmp:
        ctxs = []
        for name, (ld, pre), mo in zip(names, loaded, per_model):
            c = copy.deepcopy(cfg)
            if mo.layer:
                c.general.layer = mo.layer
            if ld.static_batch:
                c.general.batch_size = 1
            log(f"Model {name}: {published_model_info(ld)['spec']} ({ld.kind}); {pre.describe()} [{pre.source}]")
            ctxs.append(make_context(ld.model, images, class_names=run_class_names(o.labels, ld), pre=pre, config=c,
                                     device=dev, progress=progress, cache=cache, model_info=published_model_info(ld)))
        ca, cb = ctxs
        if ca.num_classes != cb.num_classes:
            raise ReportgenError(f"the models have different numbers of classes ({ca.num_classes} vs "
                                 f"{cb.num_classes}); predictions cannot be compared")
        if [r.rel for r in ca.images.records] != [r.rel for r in cb.images.records]:
            raise ReportgenError("the two models see different image sets (check --max-images and the folder)")
        fa, fb = ca.features(), cb.features()
        warnings = [f"Model {n}: {w}" for n, (ld, _), f in zip(names, loaded, (fa, fb))
                    if (w := untrained_banner(ld.untrained, None if ld.untrained else untrained_evidence(f.probs)))]
        for w in warnings:
            log("WARNING: " + w)
        pa, pb, y = fa.probs, fb.probs, ca.images.labels
        acc = accuracies(ctxs, names)
        if acc:
            log(f"Accuracy on the {int((y >= 0).sum())} labelled images: "
                + " | ".join(f"{n} {100 * v:.1f}%" for n, v in acc.items()))
        log("Comparing predictions, calibration and representations")
        sections = [flipped_section(ca.images, names, ca.class_names, pa, pb, y),
                    per_class_section(names, ca.class_names, pa, pb, y),
                    calibration_section(names, pa, pb, y),
                    cka_section(ca, cb, names, cka_images, cka_layers, cka_estimator),
                    concepts_section(ca, cb, names)]
        infos = cfg.enabled() if chosen else []
        secs = [compute_sections(c, infos, strict=o.strict, log=_prefixed(log, f"model {n} "))
                for c, n in zip(ctxs, names)]
        sections += [paired_section(i, names, a, b) for i, a, b in zip(infos, *secs)]
        if any(i.id == SOURCE for i in infos):  # explanation drift, A -> B, from their maps (reportgen/drift/)
            sections.append(compare_drift_section(ca, names, *secs))
        titles = [model_title(ld.model, ld.spec, ld.kind) for ld, _ in loaded]
        report = Report(
            title=o.title or comparison_title(names, titles),
            sections=sections, skipped_images=list(ca.images.skipped),
            meta=_meta(ctxs, names, images, cfg, dev, theme_label(o.theme), cka_estimator))
        report.meta.extra["predictions"] = run_predictions(ctxs, names, log=log)
        report.meta.model["untrained"] = " ".join(warnings) or None  # the banner on top of every page
        report.meta.total_time_s = round(time.perf_counter() - t_start, 2)
        store_tree(report, cache)
        manifest = publish_report(report, tmp, out, cache, theme=o.theme,
                                  single_file=o.single_file or is_single_file_target(out), review=review)
        cache.trim()
    index = out if is_single_file_target(out) else out / manifest.get("index", "index.html")
    return BuildResult(out=out, index=index, report=report, manifest=manifest)


def _prefixed(log: Callable[[str], None], prefix: str) -> Callable[[str], None]:
    """``log`` with each line saying which model it is about ('model A [1/4] Saliency'; continuation lines, which
    start with spaces, keep their indent)."""
    return lambda s: log(s if s.startswith(" ") else prefix + s)


def accuracies(ctxs, names) -> dict[str, float]:
    """Top-1 accuracy of each model on the labelled images ({} when there are none)."""
    ca = ctxs[0]
    if not ca.images.has_labels:
        return {}
    y = ca.images.labels
    k = y >= 0
    return {n: round(float((c.features().preds[k] == y[k]).mean()), 4) for n, c in zip(names, ctxs)}


def _meta(ctxs, names, images, cfg, dev, theme: str, estimator: str) -> RunInfo:
    import sys

    ca, cb = ctxs
    acc = accuracies(ctxs, names)
    infos = [c.model_info for c in ctxs]
    return RunInfo(
        kind="compare",
        model={"spec": f"{names[0]}: {infos[0]['spec']} | {names[1]}: {infos[1]['spec']}",
               "kind": "comparison",
               "weights": " | ".join(str(i.get("weights") or i.get("weights_source") or "-") for i in infos)},
        num_classes=ca.num_classes,
        images=ImagesInfo(folder=display_path(images), count=len(ca.images), skipped=len(ca.images.skipped),
                          labels_from=ca.images.label_source),
        config={**cfg.to_dict(), "cka_estimator": estimator}, device=device_description(dev), versions=versions(),
        theme=theme, generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"), command=published_command(sys.argv),
        extra={"models": {n: {**c.model_info, "hash": c.model_hash, "preprocessing": c.pre.to_dict(),
                              "preprocessing_text": f"{c.pre.describe()} [{c.pre.source}]",
                              "accuracy": acc.get(n)}
                          for n, c in zip(names, ctxs)},
               "accuracy": acc},
        unrecorded=("model_hash", "preprocessing", "preprocessing_text"),  # per model, in "models"
    )


__all__ = ["compare_reports", "paired_section", "accuracies", "PAIRED"]
