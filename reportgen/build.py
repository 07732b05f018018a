"""Orchestration: model + images + config -> computed sections -> rendered report, atomically.

The report is built in a temporary folder beside ``--out`` and swapped into place only when
complete, so a crash, Ctrl-C or kill never leaves half a report or destroys the previous one.
A technique that raises does not sink the others: its section carries the error (``strict``
stops at the first failure instead).
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from . import __version__, registry
from .features import distributed, split, compute as features
from .cache import CODE_VERSION, Cache, default_cache_dir, digest, parse_size
from .checks import check_classifier, model_title, untrained_banner, untrained_evidence
from .config import Config, check_config, make_config, parse_set
from .context import ProgressFn, RunContext, SectionRecord, no_progress
from .errors import ModelError, ReportgenError
from .imageset import ImageSet, check_images_arg, discover_images
from .publish.atomic import check_out, is_single_file_target
from .failures.reference import check_reference_folder, reference_stamp
from .policy import PolicyViolation, isolated, unsupported_reason
from .options import ModelOptions, RunOptions
from .preprocess import Preprocessing
from .inspection.hooks import keeps_train_mode
from .inspection.layers import resolve_layer
from .labels import folder_class_names
from .display_paths import display_path, published_command, published_model_info
from .report import ImagesInfo, Note, Report, RunInfo, Section, SkippedImage
from .publish.rerender import publish_report, staged_output, store_tree
from .review import review_plan, run_predictions
from .planning.plan import before_section, plan_run, record_measured
from .device import apply_threads, device_description, resolve_device



def model_hash(model: nn.Module) -> str:
    """Content hash of a model's parameters and buffers (and class), for cache keys."""
    import hashlib

    h = hashlib.sha256(type(model).__qualname__.encode())
    for k, v in model.state_dict().items():
        h.update(k.encode())
        t = v.detach().cpu().contiguous()
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        try:
            h.update(t.numpy().tobytes())
        except TypeError:  # bfloat16 etc.
            h.update(t.float().numpy().tobytes())
    return h.hexdigest()


def make_context(
    model: nn.Module,
    images: str | Path | ImageSet,
    *,
    class_names: list[str] | None = None,
    pre: Preprocessing | None = None,
    config: Config | None = None,
    device: str | torch.device = "cpu",
    progress: ProgressFn = no_progress,
    cache: Cache | None = None,
    model_info: dict[str, Any] | None = None,
) -> RunContext:
    """Build a RunContext (the library entry point tests and ``build_report`` share)."""
    config = check_config(config) if config is not None else make_config("standard")  # before any work
    pre = pre or Preprocessing()
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    model = model.to(dev)
    model_info = dict(model_info or {})
    # the model's own count, before the policy freezes every parameter for the run (the card reports this one)
    model_info.setdefault("trainable_parameters", sum(p.numel() for p in model.parameters() if p.requires_grad))
    notes = model_info["notes"] = list(model_info.get("notes") or [])
    n_classes = check_classifier(model, pre, dev, notes=notes)
    if class_names is None and not isinstance(images, ImageSet):
        class_names = folder_class_names(images, n_classes)
        if class_names:
            notes.append(f"class names: the {n_classes} sorted sub-folder names of the image folder (torchvision's "
                         "ImageFolder convention), as the model has none; --labels names them otherwise")
    if class_names is None:
        class_names = [f"class_{i}" for i in range(n_classes)]
    elif len(class_names) != n_classes:
        raise ModelError(
            f"{len(class_names)} class names were given but the model outputs {n_classes} scores; "
            "pass a labels file with one name per output"
        )
    if not isinstance(images, ImageSet):
        images = discover_images(images, pre, class_names, max_images=config.general.max_images,
                                 seed=config.general.seed, progress=progress, cache=cache)
    return RunContext(
        model=model, device=dev, pre=pre, images=images, class_names=list(class_names), config=config,
        model_hash=model_hash(model), model_info=model_info, progress=progress, cache=cache,
    )


def _section_key(ctx: RunContext, info: registry.TechniqueInfo, opts: Any) -> str:
    g = dataclasses.asdict(ctx.config.general)
    g.pop("max_images", None)  # already part of the image-set hash
    g.pop("num_workers", None)
    g.pop("threads", None)  # speed only
    g.pop("budget", None)  # what the budget changes is in the options
    if g.get("reference_images"):  # the folder's content, not only its path (failures/reference.py)
        g["reference_images"] = reference_stamp(ctx, g["reference_images"])
    reads = info.reads(ctx.config) if info.reads is not None else None  # other sections' options it reads
    return ctx.cache_key("section", info.id, CODE_VERSION, registry.code_hash(info), dataclasses.asdict(opts), g,
                         ctx.class_names, str(ctx.device.type), *([reads] if reads is not None else []))


# results key of a section the model cannot support (why, in words); no technique writes it itself
UNSUPPORTED = "unsupported"
# results key of a section that fed the model inputs resized to an accepted size (ctx.fit_input); set here only
INPUT_RESIZED = "input_resized"


def _state_resizes(ctx: RunContext, record: SectionRecord, sec: Section) -> None:
    """Say on the section when it fed the model inputs resized to a size the model accepts (and which): the sizes
    noted on the section's own ``record`` while it ran."""
    if not record.resized or sec.error is not None:
        return
    pairs = [f"{h}x{w} -> {th}x{tw}" for (h, w), (th, tw) in sorted(record.resized.items())]
    accepts = ctx.probe().sizes.describe()
    sec.results[INPUT_RESIZED] = {"accepts": accepts, "resized": pairs}
    sec.blocks.append(Note(
        f"This model takes {accepts} (found by probing it). Inputs this section made at other sizes were resized "
        f"(bilinear) to an accepted size before each forward pass: {', '.join(pairs)} px. The pictures are shown "
        "at the size the section made them.", kind="info"))


def run_technique(ctx: RunContext, info: registry.TechniqueInfo, strict: bool = False) -> Section:
    """Run one technique under the policy (:mod:`reportgen.policy`): eval mode, frozen parameters, and a check
    that hooks, buffers, parameters and modules are as before. Errors and violations become the section's error;
    a technique the model cannot support (its registry metadata says why) becomes a section with a note."""
    opts = ctx.config.options(info.id)
    try:
        why = unsupported_reason(ctx, info)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # a failing applicability check fails its own section, never the build
        if strict:
            raise
        return Section(id=info.id, title=info.title, error=f"{type(e).__name__}: {e} (while checking whether "
                       "this section applies to the model)", traceback=traceback.format_exc())
    if why is not None:
        return Section(id=info.id, title=info.title, summary=info.summary, references=list(info.references),
                       blocks=[Note(why, kind="warning")], params=dataclasses.asdict(opts),
                       results={UNSUPPORTED: why})
    key = _section_key(ctx, info, opts) if info.cacheable else None
    if ctx.cache is not None and key is not None:
        hit = ctx.cache.get(key)
        if isinstance(hit, Section):
            hit.cached = True
            return hit
    grad_before = torch.is_grad_enabled()
    problems: list[str] = []
    t0 = time.perf_counter()
    try:
        with ctx.section(info.id) as record, isolated(ctx.pixel_model, f"technique {info.id!r}") as problems:
            with split.section(ctx, info.id):  # torchrun: every rank takes a share of its images
                sec = info.fn(ctx, opts)
            if not isinstance(sec, Section):
                raise TypeError(f"technique {info.id!r} returned {type(sec).__name__}, not a Section")
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:
        if strict:
            raise
        if isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower():
            msg = (f"ran out of memory: {e}. Lower --batch-size (now {ctx.batch_size}) or this technique's "
                   "image sizes, or run on the CPU with --device cpu.")
            if ctx.device.type == "cuda":
                torch.cuda.empty_cache()
        else:
            msg = f"{type(e).__name__}: {e}"
        if problems and not isinstance(e, PolicyViolation):
            msg += f" (and it left the model changed: {'; '.join(problems)})"
        sec = Section(id=info.id, title=info.title, error=msg, traceback=traceback.format_exc())
    finally:
        torch.set_grad_enabled(grad_before)
    sec.id = info.id
    sec.title = sec.title or info.title
    sec.summary = sec.summary or info.summary
    if not sec.references:
        sec.references = list(info.references)
    sec.wall_time_s = time.perf_counter() - t0
    _state_resizes(ctx, record, sec)
    sec.params = {**dataclasses.asdict(opts), **sec.params}
    if ctx.cache is not None and key is not None and sec.error is None:
        ctx.cache.put(key, sec)
    return sec


def compute_sections(ctx: RunContext, techniques: list[registry.TechniqueInfo], strict: bool = False,
                     log: Callable[[str], None] | None = None, before: Callable[..., str | None] | None = None
                     ) -> list[Section]:
    sections: list[Section] = []
    for k, info in enumerate(techniques, 1):
        if before is not None:  # --budget: re-plan the sections left (reportgen/planning/plan.py)
            gone = before(sections, techniques[k - 1:])
            if gone is not None:  # the plan leaves it out (listed on the overview)
                if log:
                    log(f"[{k}/{len(techniques)}] {info.title} ({info.id}): {gone}")
                continue
        if log:
            log(f"[{k}/{len(techniques)}] {info.title} ({info.id})")
        sec = run_technique(ctx, info, strict=strict)
        if log:
            state = ("cached" if sec.cached else "skipped (see its note)" if UNSUPPORTED in sec.results else
                     "FAILED: " + (sec.error or "").splitlines()[0][:200] if sec.error else f"{sec.wall_time_s:.1f} s")
            log(f"      {state}")
        sections.append(sec)
    return sections


def versions() -> dict[str, str]:
    """Installed versions, read from package metadata (importing torchvision and sklearn costs seconds)."""
    from importlib import metadata

    def ver(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "reportgen": __version__, "python": platform.python_version(), "torch": str(torch.__version__),
        "torchvision": ver("torchvision"), "numpy": np.__version__, "pillow": ver("pillow"),
        "matplotlib": ver("matplotlib"), "scikit-learn": ver("scikit-learn"), "jinja2": ver("jinja2"),
        "platform": platform.platform(),
    }


@dataclass
class BuildResult:
    out: Path
    index: Path
    report: Report | None
    manifest: dict[str, Any] = field(default_factory=dict)
    worker: bool = False  # a torch.distributed rank other than 0: it scanned its shard; rank 0 wrote the report

    @property
    def ok(self) -> bool:
        return self.report is not None and not self.report.failed


def run_config(o: RunOptions) -> Config:
    """The run's configuration from its options (preset, TOML file, general flags, ``--set``, only/skip)."""
    check_reference_folder(o.reference_images)  # bad input: exit 2 before any work
    return make_config(preset=o.preset, toml_path=o.config, general=o.general(),
                       technique_overrides=parse_set(o.set_options or []), only=o.only, skip=o.skip)


def open_cache(o: RunOptions) -> Cache:
    try:
        return Cache(Path(o.cache_dir) if o.cache_dir else default_cache_dir(), enabled=o.use_cache,
                     max_bytes=parse_size(o.cache_size))
    except ValueError as e:
        raise ReportgenError(f"--cache-size: {e}") from None


def load_for_run(model: str | nn.Module, mo: ModelOptions, trust: bool) -> tuple[Any, Preprocessing]:
    """The loaded model (a :class:`~reportgen.loading.LoadedModel`) and its preprocessing under ``mo``."""
    from . import loading

    if isinstance(model, nn.Module):
        loaded = loading.LoadedModel(model=model, spec=type(model).__name__, kind="module")
    else:
        loaded = loading.load_model(model, weights=mo.weights, trust=trust)
    return loaded, loading.resolve_preprocessing(loaded, **mo.preprocessing_overrides())


def check_paths(out: Path, images: Any) -> None:
    """What can be checked before the model loads: the output can be created, the images exist."""
    path = images if isinstance(images, (str, Path)) else None
    check_out(out, path)
    if path is not None:
        check_images_arg(path)


def check_layer(model: nn.Module, name: str | None) -> None:
    """``--layer``, right after the model loads and before any image is read: a typo is bad input (exit 2, close
    names suggested), not N failed sections."""
    if name:
        resolve_layer(model, name)


def untrained_warning(ctx: RunContext, known: str, log: Callable[[str], None]) -> str:
    """The untrained-model warning of this run ('' when none): what the loader knows (already logged), else what the
    feature pass suggests (logged here, before the sections run)."""
    if known:
        return untrained_banner(known, None)
    warning = untrained_banner("", untrained_evidence(ctx.features().probs))
    if warning:
        log("WARNING: " + warning)
    return warning


def run_class_names(labels: str | Path | list[str] | None, loaded: Any) -> list[str] | None:
    """``--labels`` (a file or a list), else the model's own class names, else None."""
    from .labels import load_labels

    if isinstance(labels, (list, tuple)):
        return list(labels)
    if labels is not None:
        return load_labels(labels)
    return list(loaded.class_names) if loaded.class_names else None


@keeps_train_mode
def build_report(
    model: str | nn.Module,
    images: str | Path,
    out: str | Path,
    options: RunOptions | None = None,
    *,
    progress: ProgressFn = no_progress,
    log: Callable[[str], None] | None = None,
    **kw: Any,
) -> BuildResult:
    """Build a report. ``model`` is a SPEC string (see :func:`reportgen.loading.load_model`) or an nn.Module.

    ``options`` (:class:`reportgen.options.RunOptions`, shared with :func:`reportgen.compare.compare_reports`)
    and/or its fields as keywords (``preset="minimal"``, ``mean=(...)``, ``weights=...``) say how.
    Returns a BuildResult; ``result.ok`` is False when a technique failed (its section shows the error).
    Raises :class:`reportgen.errors.ReportgenError` for bad input (nothing is written then), including
    :class:`reportgen.publish.atomic.OutputBusyError` when another build holds ``out`` and ``wait`` is False.
    ``out`` ending in ``.html`` writes one self-contained file (``single_file``) with report.json inside it.
    The cache lives in ``cache_dir`` (default: the user cache directory), capped at ``cache_size``.
    """
    from .render import check_theme, theme_label

    o = RunOptions.of(options, **kw)
    t_start = time.perf_counter()
    log = log or (lambda s: None)
    out = Path(out)
    single_file = o.single_file or is_single_file_target(out)
    theme = o.theme
    check_theme(theme)
    cfg = run_config(o)
    (mo,) = o.models(1)
    if mo.layer:
        cfg.general.layer = mo.layer
    check_paths(out, images)
    cache = open_cache(o)
    review = review_plan(o)  # baseline and rules: bad input before the model is loaded
    apply_threads(cfg.general.threads, log=log)  # logs "threads: N (why)"

    # model
    loaded, pre = load_for_run(model, mo, o.trust)
    check_layer(loaded.model, cfg.general.layer)
    if loaded.static_batch:
        cfg.general.batch_size = 1  # the model takes one image at a time: hooks then see whole batches
    class_names = run_class_names(o.labels, loaded)
    dev = resolve_device(o.device)
    log(f"Model: {loaded.spec} ({loaded.kind}) on {device_description(dev)}")
    log(f"Preprocessing: {pre.describe()} [{pre.source}]")
    if loaded.untrained:  # known from the loader: said before any image is read
        log("WARNING: " + untrained_banner(loaded.untrained, None))

    group = distributed.init()  # torchrun: every rank scans a shard of the image set, rank 0 goes on
    if group is not None and group.rank > 0:
        try:  # then it computes its share of the per-image sections' images (features/split.py)
            wctx = make_context(loaded.model, images, class_names=class_names, pre=pre, config=cfg,
                                device=dev, model_info=published_model_info(loaded))
            features.shared_pass(wctx, group)
            split.begin(wctx, group, [i.id for i in cfg.enabled()])
            split.serve(wctx, lambda sid: run_technique(wctx, registry.get(sid)))
        finally:
            distributed.close(group)
        return BuildResult(out=out, index=out, report=None, worker=True)
    ctx: RunContext | None = None
    with staged_output(out, wait=o.wait, log=log) as tmp, contextlib.ExitStack() as ranks:
        ranks.callback(distributed.close, group)
        ranks.callback(lambda: split.end(ctx))  # release the other ranks (runs before the close)
        ctx = make_context(
            loaded.model, images, class_names=class_names, pre=pre, config=cfg, device=dev,
            progress=progress, cache=cache,
            model_info=published_model_info(loaded),
        )
        if group is not None:
            log(f"Distributed: {group.size} processes scan the image set")
            features.shared_pass(ctx, group)
            split.begin(ctx, group, [i.id for i in cfg.enabled()], log)
        log(f"Images: {len(ctx.images)} usable under {images}"
            + (f", {len(ctx.images.skipped)} skipped" if ctx.images.skipped else "")
            + (f"; labels from {ctx.images.label_source}" if ctx.images.label_source else ""))
        techniques = cfg.enabled()  # before the plan: a section it leaves out may come back (before_section)
        plan = plan_run(ctx, cfg.general.budget, o.plan_only, log)  # --budget / --plan (reportgen/planning/)
        if o.plan_only:
            return BuildResult(out=out, index=out, report=None)
        warning = untrained_warning(ctx, loaded.untrained, log)
        sections = compute_sections(ctx, techniques, strict=o.strict, log=log,
                                    before=lambda done, left: before_section(plan, cfg, done, left, log))
        split.end(ctx)  # the other ranks are done
        if o.baseline is not None:  # explanation drift against the earlier report's kept maps (reportgen/drift/)
            from .drift.section import baseline_drift_section
            sections.append(baseline_drift_section(ctx, o.baseline, sections))
        report = Report(
            title=o.title or f"{model_title(loaded.model, loaded.spec, loaded.kind)} — model card",
            sections=sections,
            skipped_images=list(ctx.images.skipped),
            meta=RunInfo(
                model=ctx.model_info,
                model_hash=ctx.model_hash,
                num_classes=ctx.num_classes,
                preprocessing=pre.to_dict(),
                preprocessing_text=pre.describe(),
                images=ImagesInfo(folder=display_path(images), count=len(ctx.images),
                                  skipped=len(ctx.images.skipped), labels_from=ctx.images.label_source),
                config=cfg.to_dict(),
                device=device_description(dev),
                versions=versions(),
                theme=theme_label(theme),
                generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                command=published_command(sys.argv),
            ),
        )
        record_measured(plan, sections, report)  # report.json's plan; the reductions on the overview
        report.meta.extra["predictions"] = run_predictions([ctx], log=log)  # a later review pairs images
        report.meta.model["untrained"] = warning or None  # the banner on top of every page
        report.meta.total_time_s = round(time.perf_counter() - t_start, 2)
        store_tree(report, cache)  # `reportgen render` re-renders it without the model
        manifest = publish_report(report, tmp, out, cache, theme=theme, single_file=single_file, review=review)
        cache.trim()
    if is_single_file_target(out):
        return BuildResult(out=out, index=out, report=report, manifest=manifest)
    index = out / manifest.get("index", "index.html")
    return BuildResult(out=out, index=index, report=report, manifest=manifest)


__all__ = ["build_report", "RunOptions", "ModelOptions", "run_config", "open_cache", "load_for_run",
           "run_class_names", "make_context", "publish_report", "BuildResult", "run_technique", "compute_sections",
           "SkippedImage", "digest"]
