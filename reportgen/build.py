"""Orchestration: model + images + config -> computed sections -> rendered report, atomically.

The report is built in a temporary folder beside ``--out`` and swapped into place only when
complete, so a crash, Ctrl-C or kill never leaves half a report or destroys the previous one.
A technique that raises does not sink the others: its section carries the error (``strict``
stops at the first failure instead).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import signal
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from . import __version__, registry
from .cache import CACHE_DIRNAME, CODE_VERSION, Cache, digest
from .config import Config, make_config, parse_set
from .context import ProgressFn, RunContext, no_progress
from .errors import ModelError, OutputError, ReportgenError
from .hooks import count_hooks, module_signature
from .images import ImageSet, discover_images
from .preprocess import Preprocessing
from .report import Report, Section, SkippedImage
from .threads import apply_threads

MARKER = "report.json"


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, then Apple MPS, else the CPU (decided per run, not at import)."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ReportgenError("--device cuda was requested but CUDA is not available on this machine")
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ReportgenError("--device mps was requested but Apple MPS is not available")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise ReportgenError(f"unknown device {name!r}: {e}") from None


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


def check_classifier(model: nn.Module, pre: Preprocessing, device: torch.device) -> int:
    """Run one dummy batch; return the number of classes or raise ModelError with the reason."""
    x = torch.rand(2, 3, pre.size, pre.size, device=device)
    from .hooks import eval_mode
    from .preprocess import PixelModel

    pm = PixelModel(model, pre).to(device)
    try:
        with eval_mode(model), torch.inference_mode():
            out = pm(x)
    except Exception as e:
        raise ModelError(
            f"the model failed on a 2x3x{pre.size}x{pre.size} input batch: {type(e).__name__}: {e}. "
            "Check --input-size and that the model takes RGB images."
        ) from None
    if isinstance(out, (tuple, list)):
        out = out[0]
    if isinstance(out, dict):
        raise ModelError(
            f"the model returns a dict (keys {sorted(out)[:5]}), not class scores: reportgen needs an image "
            "classifier whose forward returns a (batch, num_classes) tensor of logits"
        )
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(
            f"the model is not a classifier: its output has shape {shape}, expected (batch, num_classes). "
            "Wrap a detector/segmenter/backbone in a module that returns class logits."
        )
    if out.shape[1] < 2:
        raise ModelError(f"the model outputs {out.shape[1]} score per image; a classifier needs at least 2 classes")
    return int(out.shape[1])


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
    config = config or make_config("standard")
    pre = pre or Preprocessing()
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    model = model.to(dev)
    n_classes = check_classifier(model, pre, dev)
    if class_names is None:
        class_names = [f"class_{i}" for i in range(n_classes)]
    elif len(class_names) != n_classes:
        raise ModelError(
            f"{len(class_names)} class names were given but the model outputs {n_classes} scores; "
            "pass a labels file with one name per output"
        )
    if not isinstance(images, ImageSet):
        images = discover_images(images, pre, class_names, max_images=config.general.max_images,
                                 seed=config.general.seed, progress=progress)
    return RunContext(
        model=model, device=dev, pre=pre, images=images, class_names=list(class_names), config=config,
        model_hash=model_hash(model), model_info=dict(model_info or {}), progress=progress, cache=cache,
    )


def _section_key(ctx: RunContext, info: registry.TechniqueInfo, opts: Any) -> str:
    g = dataclasses.asdict(ctx.config.general)
    g.pop("max_images", None)  # already part of the image-set hash
    g.pop("num_workers", None)
    g.pop("threads", None)  # speed only
    return ctx.cache_key("section", info.id, CODE_VERSION, dataclasses.asdict(opts), g,
                         ctx.class_names, str(ctx.device.type))


def run_technique(ctx: RunContext, info: registry.TechniqueInfo, strict: bool = False) -> Section:
    """Run one technique in isolation: errors become the section's error; hooks are checked."""
    opts = ctx.config.options(info.id)
    key = _section_key(ctx, info, opts) if info.cacheable else None
    if ctx.cache is not None and key is not None:
        hit = ctx.cache.get(key)
        if isinstance(hit, Section):
            hit.cached = True
            return hit
    hooks_before = count_hooks(ctx.model)
    sig_before = module_signature(ctx.model)
    grad_before = torch.is_grad_enabled()
    t0 = time.perf_counter()
    try:
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
        sec = Section(id=info.id, title=info.title, error=msg, traceback=traceback.format_exc())
    finally:
        torch.set_grad_enabled(grad_before)
    sec.id = info.id
    sec.title = sec.title or info.title
    sec.summary = sec.summary or info.summary
    if not sec.references:
        sec.references = list(info.references)
    sec.wall_time_s = time.perf_counter() - t0
    sec.params = {**dataclasses.asdict(opts), **sec.params}
    leaked = count_hooks(ctx.model) - hooks_before
    if leaked or module_signature(ctx.model) != sig_before:
        raise RuntimeError(f"technique {info.id!r} left {leaked} hook(s) or changed modules on the model (a bug)")
    if ctx.cache is not None and key is not None and sec.error is None:
        ctx.cache.put(key, sec)
    return sec


def compute_sections(ctx: RunContext, techniques: list[registry.TechniqueInfo], strict: bool = False,
                     log: Callable[[str], None] | None = None) -> list[Section]:
    sections = []
    for k, info in enumerate(techniques, 1):
        if log:
            log(f"[{k}/{len(techniques)}] {info.title} ({info.id})")
        sec = run_technique(ctx, info, strict=strict)
        if log:
            state = "cached" if sec.cached else ("FAILED: " + (sec.error or "").splitlines()[0][:200] if sec.error
                                                  else f"{sec.wall_time_s:.1f} s")
            log(f"      {state}")
        sections.append(sec)
    return sections


def versions() -> dict[str, str]:
    import jinja2
    import matplotlib
    import PIL
    import sklearn
    import torchvision

    return {
        "reportgen": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "torchvision": torchvision.__version__, "numpy": np.__version__, "pillow": PIL.__version__,
        "matplotlib": matplotlib.__version__, "scikit-learn": sklearn.__version__, "jinja2": jinja2.__version__,
        "platform": platform.platform(),
    }


def device_description(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    if dev.type == "cpu":
        return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    return dev.type


# ----------------------------------------------------------------------------------------------
# atomic output


class _TermAsInterrupt:
    """Turn SIGTERM into KeyboardInterrupt while building, so cleanup in ``finally`` runs."""

    def __enter__(self):
        self.old = None
        try:
            self.old = signal.signal(signal.SIGTERM, self._handler)
        except ValueError:  # not the main thread
            self.old = None
        return self

    @staticmethod
    def _handler(signum, frame):
        raise KeyboardInterrupt(f"terminated by signal {signum}")

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)
        return False


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise OutputError(
            f"--out {out} is a non-empty folder that is not a reportgen report; refusing to replace it. "
            "Choose a new or empty folder."
        )
    parent = out.resolve().parent
    if not parent.exists():
        parent.mkdir(parents=True, exist_ok=True)
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write into {parent}")


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace ``out`` by ``tmp`` with two renames (the old report survives until the new one is in place)."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@dataclass
class BuildResult:
    out: Path
    index: Path
    report: Report
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.report.failed


def build_report(
    model: str | nn.Module,
    images: str | Path,
    out: str | Path,
    *,
    weights: str | Path | None = None,
    labels: str | Path | list[str] | None = None,
    preset: str = "standard",
    config: str | Path | None = None,
    only: list[str] | None = None,
    skip: list[str] | None = None,
    layer: str | None = None,
    classes: list[int] | None = None,
    device: str = "auto",
    theme: str = "light",
    single_file: bool = False,
    input_size: int | None = None,
    resize: int | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    max_images: int | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
    seed: int | None = None,
    set_options: list[str] | None = None,
    strict: bool = False,
    trust: bool = False,
    use_cache: bool = True,
    title: str | None = None,
    progress: ProgressFn = no_progress,
    log: Callable[[str], None] | None = None,
) -> BuildResult:
    """Build a report. ``model`` is a SPEC string (see :func:`reportgen.models.load_model`) or an nn.Module.

    Returns a BuildResult; ``result.ok`` is False when a technique failed (its section shows the error).
    Raises :class:`reportgen.errors.ReportgenError` for bad input (nothing is written then).
    """
    from . import models
    from .render import available_themes, render_report

    t_start = time.perf_counter()
    log = log or (lambda s: None)
    out = Path(out)
    if theme not in available_themes():
        raise ReportgenError(f"unknown theme {theme!r}; available: {', '.join(available_themes())}")
    cfg = make_config(
        preset=preset, toml_path=config,
        general={"layer": layer, "classes": classes, "max_images": max_images, "seed": seed, "batch_size": batch_size,
                 "threads": threads},
        technique_overrides=parse_set(set_options or []), only=only, skip=skip,
    )
    _check_out(out)
    log(f"CPU threads: {apply_threads(cfg.general.threads)}")

    # model
    if isinstance(model, nn.Module):
        loaded = models.LoadedModel(model=model, spec=type(model).__name__, kind="module")
    else:
        loaded = models.load_model(model, weights=weights, trust=trust)
    pre = models.resolve_preprocessing(loaded, input_size=input_size, resize=resize, mean=mean, std=std)
    class_names = None
    if isinstance(labels, (list, tuple)):
        class_names = list(labels)
    elif labels is not None:
        class_names = models.load_labels(labels)
    elif loaded.class_names:
        class_names = list(loaded.class_names)
    dev = resolve_device(device)
    log(f"Model: {loaded.spec} ({loaded.kind}) on {device_description(dev)}")
    log(f"Preprocessing: {pre.describe()} [{pre.source}]")

    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    with _TermAsInterrupt():
        try:
            tmp.mkdir(parents=True)
            cache = Cache(tmp / CACHE_DIRNAME, [out / CACHE_DIRNAME], enabled=use_cache)
            ctx = make_context(
                loaded.model, images, class_names=class_names, pre=pre, config=cfg, device=dev,
                progress=progress, cache=cache,
                model_info={"spec": loaded.spec, "kind": loaded.kind, "weights": loaded.weights,
                            "notes": list(loaded.notes)},
            )
            log(f"Images: {len(ctx.images)} usable under {images}"
                + (f", {len(ctx.images.skipped)} skipped" if ctx.images.skipped else "")
                + (f"; labels from {ctx.images.label_source}" if ctx.images.label_source else ""))
            techniques = cfg.enabled()
            sections = compute_sections(ctx, techniques, strict=strict, log=log)
            report = Report(
                title=title or f"{loaded.spec} — model card",
                sections=sections,
                skipped_images=list(ctx.images.skipped),
                meta={
                    "model": ctx.model_info,
                    "model_hash": ctx.model_hash,
                    "num_classes": ctx.num_classes,
                    "preprocessing": pre.to_dict(),
                    "preprocessing_text": pre.describe(),
                    "images": {"folder": _display_path(images), "count": len(ctx.images),
                               "skipped": len(ctx.images.skipped), "labels_from": ctx.images.label_source},
                    "config": cfg.to_dict(),
                    "device": device_description(dev),
                    "versions": versions(),
                    "theme": theme,
                    "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                    "command": " ".join(sys.argv) if sys.argv and sys.argv[0].endswith("reportgen") else None,
                },
            )
            report.meta["total_time_s"] = round(time.perf_counter() - t_start, 2)
            manifest = render_report(report, tmp, theme=theme, single_file=single_file)
            _write_json(report, manifest, tmp / MARKER, cache)
            cache.carry_over()
            _swap_in(tmp, out)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    index = out / manifest.get("index", "index.html")
    return BuildResult(out=out, index=index, report=report, manifest=manifest)


def _display_path(p: str | Path) -> str:
    """A path as a published report should show it: relative when under the working folder, else as given."""
    try:
        rel = Path(p).resolve().relative_to(Path.cwd().resolve())
        return rel.as_posix() or "."
    except (ValueError, OSError):
        return str(p)


def _write_json(report: Report, manifest: dict[str, Any], path: Path, cache: Cache) -> None:
    secs = []
    for s in report.sections:
        secs.append({
            "id": s.id, "title": s.title, "error": s.error, "wall_time_s": round(s.wall_time_s, 3),
            "cached": s.cached, "params": s.params, "results": s.results,
            "references": [dataclasses.asdict(r) for r in s.references],
            "page": manifest.get("sections", {}).get(s.id, {}).get("page"),
            "figures": manifest.get("sections", {}).get(s.id, {}).get("assets", []),
        })
    data = {
        "reportgen": report.meta.get("versions", {}).get("reportgen"),
        "title": report.title,
        **{k: v for k, v in report.meta.items()},
        "skipped_images": [dataclasses.asdict(s) for s in report.skipped_images],
        "sections": secs,
        "cache": {"hits": cache.hits, "misses": cache.misses, "enabled": cache.enabled},
    }
    path.write_text(json.dumps(data, indent=2, default=_json_default), encoding="utf-8")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return repr(o)


__all__ = ["build_report", "make_context", "BuildResult", "resolve_device", "run_technique", "compute_sections",
           "SkippedImage", "digest"]
