"""``reportgen compare``: two models on the same images, one report (Python API :func:`compare_reports`).

Both models get their own :class:`~reportgen.context.RunContext` over the same image folder; the
shared one-pass features give both models' probabilities, from which the prediction, per-class and
calibration sections are computed (:mod:`.diff`); linear CKA between the layers of A and B (and of A
with itself as the reference) comes from one extra pass on a seeded subsample (:mod:`.cka`); and a few
registry techniques run for both models and are shown in pairs. The output is written like a normal
report (temporary folder, then swapped into place; same renderer, themes and CSP).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

from torch import nn

from .. import registry
from ..build import (
    BuildResult, compute_sections, device_description, make_context, publish_report, resolve_device,
    versions,
)
from ..cache import Cache, default_cache_dir
from ..config import make_config
from ..context import no_progress
from ..errors import ReportgenError
from ..publish.atomic import OutputLock, TermAsInterrupt, check_out, clean_stale, sibling
from ..display_paths import display_path
from ..report import Group, ImagesInfo, Note, Report, Row, RunInfo, Section
from .cka_section import cka_section
from .concepts import concepts_section
from .diff import calibration_section, flipped_section, per_class_section

PAIRED = ("filters", "saliency", "class_visualization")


def _load(spec: str | nn.Module, weights, trust: bool):
    from .. import loading

    if isinstance(spec, nn.Module):
        return loading.LoadedModel(model=spec, spec=type(spec).__name__, kind="module")
    return loading.load_model(spec, weights=weights, trust=trust)


def paired_section(info: registry.TechniqueInfo, names: tuple[str, str], a: Section, b: Section) -> Section:
    """One technique's sections for A and B side by side."""

    def side(name: str, s: Section) -> Group:
        blocks = list(s.blocks) if not s.error else [Note(f"This section failed: {s.error}", kind="error")]
        return Group(f"{name}", blocks)

    sec = Section(id=f"pair_{info.id}", title=f"{info.title}: {names[0]} | {names[1]}", summary=info.summary,
                  references=list(info.references))
    sec.add(Row([side(names[0], a), side(names[1], b)]))
    sec.results = {names[0]: a.results, names[1]: b.results}
    sec.params = {"technique": info.id}
    if a.error or b.error:
        sec.error = "; ".join(f"{n}: {s.error}" for n, s in zip(names, (a, b)) if s.error)
    return sec


def compare_reports(
    model_a: str | nn.Module,
    model_b: str | nn.Module,
    images: str | Path,
    out: str | Path,
    *,
    weights_a: str | Path | None = None,
    weights_b: str | Path | None = None,
    names: tuple[str, str] = ("A", "B"),
    labels: str | Path | list[str] | None = None,
    techniques: tuple[str, ...] | list[str] = PAIRED,
    preset: str = "standard",
    cka_images: int = 64,
    cka_layers: int = 12,
    input_size: int | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    max_images: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    classes: list[int] | None = None,
    device: str = "auto",
    theme: str = "light",
    trust: bool = False,
    use_cache: bool = True,
    cache_dir: str | Path | None = None,
    wait: bool = False,
    title: str | None = None,
    progress=no_progress,
    log: Callable[[str], None] | None = None,
) -> BuildResult:
    """Build a comparison report of ``model_a`` and ``model_b`` (SPEC strings or modules) on ``images``."""
    from .. import loading
    from ..labels import load_labels
    from ..render import check_theme

    t_start = time.perf_counter()
    log = log or (lambda s: None)
    out = Path(out)
    check_theme(theme)
    if names[0] == names[1]:
        raise ReportgenError("the two models need different names")
    for t in techniques:
        registry.get(t)  # unknown ids fail before anything is loaded
    cfg = make_config(preset=preset, general={"max_images": max_images, "seed": seed, "batch_size": batch_size,
                                              "classes": classes}, only=list(techniques) or None)
    check_out(out, images if isinstance(images, (str, Path)) else None)
    loaded = [_load(m, w, trust) for m, w in ((model_a, weights_a), (model_b, weights_b))]
    dev = resolve_device(device)
    cache = Cache(Path(cache_dir) if cache_dir else default_cache_dir(), enabled=use_cache)
    with OutputLock(out, wait=wait, log=log), TermAsInterrupt():
        clean_stale(out, log)
        check_out(out)
        tmp = sibling(out, "tmp")
        try:
            tmp.mkdir(parents=True)
            ctxs = []
            for name, ld in zip(names, loaded):
                pre = loading.resolve_preprocessing(ld, input_size=input_size, mean=mean, std=std)
                cn = (list(labels) if isinstance(labels, (list, tuple)) else load_labels(labels)
                      if labels is not None else (list(ld.class_names) if ld.class_names else None))
                log(f"Model {name}: {ld.spec} ({ld.kind}); {pre.describe()}")
                ctxs.append(make_context(ld.model, images, class_names=cn, pre=pre, config=cfg, device=dev,
                                         progress=progress, cache=cache,
                                         model_info={"spec": ld.spec, "kind": ld.kind, "weights": ld.weights}))
            ca, cb = ctxs
            if ca.num_classes != cb.num_classes:
                raise ReportgenError(f"the models have different numbers of classes ({ca.num_classes} vs "
                                     f"{cb.num_classes}); predictions cannot be compared")
            if [r.rel for r in ca.images.records] != [r.rel for r in cb.images.records]:
                raise ReportgenError("the two models see different image sets (check --max-images and the folder)")
            fa, fb = ca.features(), cb.features()
            pa, pb, y = fa.probs, fb.probs, ca.images.labels
            log("Comparing predictions, calibration and representations")
            sections = [flipped_section(ca.images, names, ca.class_names, pa, pb, y),
                        per_class_section(names, ca.class_names, pa, pb, y),
                        calibration_section(names, pa, pb, y),
                        cka_section(ca, cb, names, cka_images, cka_layers), concepts_section(ca, cb, names)]
            infos = cfg.enabled() if techniques else []
            secs = [compute_sections(c, infos, log=log) for c in ctxs]
            sections += [paired_section(i, names, a, b) for i, a, b in zip(infos, *secs)]
            report = Report(
                title=title or f"{names[0]}: {loaded[0].spec} vs {names[1]}: {loaded[1].spec}",
                sections=sections, skipped_images=list(ca.images.skipped),
                meta=_meta(ctxs, names, images, cfg, dev, theme))
            report.meta.total_time_s = round(time.perf_counter() - t_start, 2)
            manifest = publish_report(report, tmp, out, cache, theme=theme)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        cache.trim()
    return BuildResult(out=out, index=out / manifest.get("index", "index.html"), report=report, manifest=manifest)


def _meta(ctxs, names, images, cfg, dev, theme) -> RunInfo:
    from ..render import theme_label

    ca, cb = ctxs
    acc = {}
    if ca.images.has_labels:
        y = ca.images.labels
        k = y >= 0
        acc = {n: round(float((c.features().preds[k] == y[k]).mean()), 4) for n, c in zip(names, ctxs)}
    return RunInfo(
        kind="compare",
        model={"spec": f"{names[0]}: {ca.model_info['spec']} | {names[1]}: {cb.model_info['spec']}",
               "kind": "comparison", "weights": " | ".join(str(c.model_info.get("weights") or "-") for c in ctxs)},
        num_classes=ca.num_classes,
        images=ImagesInfo(folder=display_path(images), count=len(ca.images), skipped=len(ca.images.skipped),
                          labels_from=ca.images.label_source),
        config=cfg.to_dict(), device=device_description(dev), versions=versions(), theme=theme_label(theme),
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        extra={"models": {n: {**c.model_info, "hash": c.model_hash, "preprocessing": c.pre.to_dict()}
                          for n, c in zip(names, ctxs)},
               "accuracy": acc},
        unrecorded=("model_hash", "preprocessing", "preprocessing_text", "command"),  # per model, in "models"
    )


__all__ = ["compare_reports", "paired_section", "PAIRED"]
