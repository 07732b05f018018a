"""Command line: ``reportgen build | demo | render | layers | techniques``."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from . import __version__
from .review.cli import check, review_exit, review_options
from .planning.cli import budget_options
from .publish import console


class ModelOption(click.Option):
    """--model: its help lists the registered model forms (loading.base), read only when help is shown."""

    def get_help_record(self, ctx: click.Context):
        from .loading import model_help

        self.help = model_help(self.__dict__.setdefault("lead", self.help or ""))
        return super().get_help_record(ctx)


from .options import DEVICE_HELP, THEME_HELP  # noqa: E402


_progress, _log = console.progress, console.log


def _floats3(ctx: click.Context, param, value):
    if value is None:
        return None
    if isinstance(value, (tuple, list)):  # a flag given several times (compare: model A, then B)
        return tuple(_floats3(ctx, param, v) for v in value)
    try:
        vals = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter("expected three numbers such as 0.485,0.456,0.406") from None
    if len(vals) != 3:
        raise click.BadParameter("expected three comma-separated numbers (R,G,B)")
    return vals


def _ids(ctx: click.Context, param, value):
    if not value:
        return None
    out = []
    for v in value:
        out += [s.strip() for s in v.split(",") if s.strip()]
    return out


def _ints(ctx: click.Context, param, value):
    if not value:
        return None
    try:
        return [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter("expected class indices such as 1,207,945") from None


def _open_hint(index: Path) -> str:
    uri = index.resolve().as_uri()
    if sys.platform == "darwin":
        cmd = f"open {index}"
    elif os.name == "nt":
        cmd = f"start {index}"
    else:
        cmd = f"xdg-open {index}"
    return f"Open it: {cmd}\n   or in a browser: {uri}"


@click.group(cls=console.OneLineErrors,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="reportgen")
def main() -> None:
    """reportgen: a static HTML model-card gallery of the classic "visualizing and understanding CNNs"
    techniques, for any PyTorch image classifier and image folder.

    \b
    Quick start:
      reportgen demo                                   # embedded model and images, offline
      reportgen build --model resnet18 --weights r18.pth --images photos/ --out report/
      reportgen build --model timm:resnet18 --weights r18.safetensors --images photos/ --out report/
      reportgen compare --model resnet18 --model resnet50 --images photos/ --out cmp/   # side by side
      reportgen site report/ cmp/ --out site/          # one landing page over finished reports
      reportgen layers --model resnet18 --weights r18.pth
      reportgen techniques
    """


EXIT_CODES = """\b
Exit codes:
  0    the report was written and every section succeeded
  1    the report was written, but some section failed (its page shows the error) or a rule failed
  2    bad input: model, images, labels, options, or an output that cannot be written
       or is locked by another build (nothing was replaced)
  3    internal error (a bug: rerun with --debug and report the traceback)
  130  interrupted (Ctrl-C / SIGTERM; any previous report is unchanged)
"""


_one_line = console.one_line


def _run(work, debug: bool = False, strict: bool = False, what: str = "Report"):
    """Run ``work()`` (a build or a comparison) with the documented exit codes: one-line messages, a traceback
    only with --debug; then say where the report is, and exit 1 when a section failed."""
    import traceback

    from .errors import ReportgenError

    t0 = time.perf_counter()
    try:
        result = work()
    except ReportgenError as e:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {_one_line(e, None)}", err=True)  # reportgen's own messages are complete: never cut
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted: no report was written (any previous report is unchanged)", err=True)
        sys.exit(130)
    except Exception as e:  # a bug, or --strict stopping at a failing section
        if debug or strict:
            traceback.print_exc()
        click.echo(f"error: {type(e).__name__}: {_one_line(e)}"
                   + ("" if debug else " (rerun with --debug for the traceback)"), err=True)
        sys.exit(3)
    dt = time.perf_counter() - t0
    if result.worker or result.report is None:  # a torchrun rank > 0 (rank 0 writes the report), or --plan
        return
    rep = result.report
    click.echo(f"\n{what} written to {result.out.resolve()} in {dt:.1f} s "
               f"({len(rep.sections)} sections, {len(rep.skipped_images)} skipped images).")
    click.echo(_open_hint(result.index))
    if rep.failed:
        names = ", ".join(s.id for s in rep.failed)
        failed = console.plural(len(rep.failed), "section")
        click.echo(f"\n{failed} failed: {names}. Their pages show the error; "
                   "rerun with --strict to stop at the first failure with a traceback.", err=True)
    if review_exit(rep) or rep.failed:
        sys.exit(1)


def _run_build(model, images, out, **kw) -> None:
    """``build`` / ``demo``: CLI keywords -> :class:`~reportgen.options.RunOptions` -> ``build_report``."""

    def work():
        from .build import build_report

        o = _run_options(kw, 1)
        return build_report(model, images, out, o, progress=_progress, log=_log)

    _run(work, debug=bool(kw.get("debug")), strict=bool(kw.get("strict")))


#: flags a comparison takes once (both models) or twice (model A, then B)
PER_MODEL_FLAGS = ("weights", "input_size", "resize", "mean", "std", "channels", "layer")


def _run_options(kw: dict, n_models: int):
    """The click keywords of :func:`run_options` as one RunOptions; per-model flags given once apply to every
    model, given ``n_models`` times one value each (``-`` for none); other counts are bad input (exit 2)."""
    import dataclasses

    from .options import ModelOptions, RunOptions, per_model

    kw = dict(kw)
    shared: dict = {}
    own: list[dict] = [{} for _ in range(n_models)]
    for k in PER_MODEL_FLAGS:
        raw = kw.pop(k, None)
        raw = (raw,) if raw is not None and not isinstance(raw, (tuple, list)) else raw or ()
        if k == "mean" or k == "std":
            raw = raw if raw and isinstance(raw[0], tuple) else ((raw,) if raw else ())
        one, each = per_model("--" + k.replace("_", "-"), [None if v in ("-", "") else v for v in raw],
                              n_models)
        if one is not None:
            shared[k] = one
        for d, v in zip(own, each):
            d[k] = v
    kw["use_cache"] = not kw.pop("no_cache", False)
    o = RunOptions.of(**shared, **kw)
    if n_models == 2 and any(own):
        o = dataclasses.replace(o, model_a=ModelOptions(**own[0]), model_b=ModelOptions(**own[1]))
    return o


def run_options(f):
    """The one option set ``build`` and ``compare`` share (:class:`reportgen.options.RunOptions`). The
    per-model flags (weights, preprocessing, layer) may be given twice to ``compare``: model A, then B."""
    twice = " With compare: once for both models, or twice (A, then B)."
    opts = [
        click.option("--weights", multiple=True, type=click.Path(dir_okay=False), help="State dict to load into "
                     "the model (torch.load weights_only=True; checkpoint dicts and 'module.' prefixes are "
                     "handled); '-' for none." + twice),
        click.option("--trust-weights", "trust", is_flag=True, help="Allow --weights files that contain pickled "
                     "Python objects (weights_only=False). Only for files from a source you trust."),
        click.option("--labels", type=click.Path(exists=True, dir_okay=False),
                     help="Class names, one per line (or a JSON list). Default: torchvision metadata, else class_<i>."),
        click.option("--preset", type=click.Choice(["minimal", "standard", "full"]), default="standard",
                     show_default=True, help="How much work each technique does (minimal: seconds, for CI)."),
        click.option("--config", "config", type=click.Path(exists=True, dir_okay=False),
                     help="TOML file with [general], [techniques.<id>] and [model] options (compare: also "
                     "[model_a] / [model_b]; see reportgen.options)."),
        click.option("--only", multiple=True, callback=_ids, help="Comma-separated technique ids to run (only "
                     "these; compare: the techniques shown side by side)."),
        click.option("--skip", multiple=True, callback=_ids, help="Comma-separated technique ids to leave out."),
        click.option("--set", "set_options", multiple=True, metavar="ID.OPTION=VALUE",
                     help="Override one technique option, e.g. --set occlusion.window=32 (repeatable)."),
        click.option("--layer", multiple=True, help="Dotted name of the layer layer-level techniques inspect "
                     "(default: the last convolution). See `reportgen layers`." + twice),
        click.option("--classes", callback=_ints, help="Class indices for class-level techniques, e.g. 1,207."),
        click.option("--device", default="auto", show_default=True, help=DEVICE_HELP),
        click.option("--theme", default="light", show_default=True, help=THEME_HELP),
        click.option("--single-file", is_flag=True, help="Write one self-contained HTML file with everything inlined "
                     "(with --out NAME.html: exactly that one file, report.json embedded in it)."),
        click.option("--input-size", multiple=True, type=click.IntRange(8, 4096),
                     help="Centre-crop size fed to the model." + twice),
        click.option("--resize", multiple=True, type=click.IntRange(8, 8192),
                     help="Resize the short side to this before the crop." + twice),
        click.option("--mean", multiple=True, callback=_floats3,
                     help="Normalisation mean R,G,B (in [0,1] pixel units)." + twice),
        click.option("--std", multiple=True, callback=_floats3, help="Normalisation std R,G,B." + twice),
        click.option("--channels", multiple=True, type=click.IntRange(1, 3), help="Input channels: 1 (greyscale; "
                     "images are converted) or 3 (RGB). Default: the first convolution's in_channels." + twice),
        click.option("--max-images", type=click.IntRange(1), help="Use at most N images (a seeded sample)."),
        click.option("--batch-size", type=click.IntRange(1), help="Images per forward/backward batch."),
        click.option("--threads", type=click.IntRange(0), help="torch CPU threads (default 0: the CPUs "
                     "idle now, sampled over 150 ms; on a loaded machine extra threads slow torch down)."),
        click.option("--seed", type=int, help="Seed for every random choice (default 0)."),
        click.option("--strict", is_flag=True, help="Stop at the first failing technique (with a traceback)."),
        click.option("--title", help="Report title."),
        click.option("--style-images", type=click.Path(exists=True, file_okay=False),
                     help="Folder of style images (default: public-domain paintings shipped with reportgen)."),
        click.option("--texture-images", type=click.Path(exists=True, file_okay=False),
                     help="Folder of texture images (default: CC0 textures shipped with reportgen)."),
        click.option("--reference-images", type=click.Path(exists=True, file_okay=False), help="Folder of "
                     "reference images (e.g. the training set) that data_issues checks for copies (leakage)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return common_options(review_options(f))


def common_options(f):
    """Options ``build`` and ``demo`` share: cache, locking, debugging."""
    opts = [
        click.option("--no-cache", "no_cache", is_flag=True, help="Recompute everything (nothing read from or "
                     "written to the cache)."),
        click.option("--cache-dir", type=click.Path(file_okay=False), help="Cache folder (default: "
                     "$XDG_CACHE_HOME/reportgen, i.e. ~/.cache/reportgen). Never inside the published report."),
        click.option("--cache-size", default="2G", show_default=True, help="Cap on the cache's size; least "
                     "recently used entries are evicted (e.g. 500M, 10G; 0 = no cap)."),
        click.option("--wait", is_flag=True, help="If another build is writing the same --out, wait for it "
                     "instead of failing (exit 2)."),
        click.option("--debug", is_flag=True, help="Show the full traceback of an error."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@main.command(epilog=EXIT_CODES)
@click.option("--model", "model", required=True, cls=ModelOption)
@click.option("--images", required=True, type=click.Path(), help="Folder of images (recursive; one sub-folder "
              "per class gives labels), one image file, or a quoted glob such as 'photos/*.jpg'.")
@click.option("--out", required=True, type=click.Path(), help="Output folder (replaced atomically, locked while "
              "building), or NAME.html for one self-contained file.")
@run_options
@budget_options
def build(model, images, out, **kw) -> None:
    """Build a report for MODEL over the images in a folder."""
    _run_build(model, images, out, **kw)


@main.command(epilog=EXIT_CODES)
@click.option("--out", default="reportgen-demo", show_default=True, type=click.Path(),
              help="Output folder, or NAME.html for one self-contained file.")
@click.option("--theme", default="light", show_default=True, help=THEME_HELP)
@click.option("--preset", type=click.Choice(["minimal", "standard", "full"]), default="standard", show_default=True)
@click.option("--only", multiple=True, callback=_ids, help="Comma-separated technique ids to run (only these).")
@click.option("--single-file", is_flag=True, help="Write one self-contained HTML file.")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--arch", type=click.Choice(["cnn", "vit"]), default="cnn", show_default=True,
              help="Embedded model: cnn (FashionNet) or vit (a tiny Vision Transformer), both Fashion-MNIST.")
@common_options
@budget_options
def demo(out, theme, preset, only, single_file, device, arch, **kw) -> None:
    """Build the demo report: an embedded Fashion-MNIST model (the CNN, or with --arch vit a tiny ViT) on its
    shipped test images, offline, running every registered technique."""
    from .demo import DEMO_ARCHS, images_dir

    spec, title = DEMO_ARCHS[arch]
    _run_build(spec, str(images_dir()), out, theme=theme, preset=preset, only=only,
               single_file=single_file, device=device, title=title, **kw)


@main.command()
@click.argument("report", type=click.Path(exists=True))
@click.option("--theme", help="Theme to render with (default: the report's own): light, dark, or a theme folder.")
@click.option("--single-file", is_flag=True, help="Write one self-contained HTML file.")
@click.option("--out", "new_out", type=click.Path(), help="Write here instead of replacing REPORT "
              "(a folder, or NAME.html for one file).")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Cache folder the build used "
              "(default: the user cache directory).")
@click.option("--wait", is_flag=True, help="Wait for another build writing the same output.")
def render(report, theme, single_file, new_out, cache_dir, wait) -> None:
    """Re-render a built REPORT (folder or .html) from its stored report tree, e.g. with another theme:
    no model is loaded and no image is read (seconds). The tree lives in the cache; if it was evicted,
    rebuild with `reportgen build`."""
    from .cache import Cache, default_cache_dir
    from .errors import ReportgenError
    from .publish.rerender import rerender

    t0 = time.perf_counter()
    try:
        target, rep = rerender(report, theme=theme, single_file=single_file, new_out=new_out, wait=wait,
                               cache=Cache(Path(cache_dir) if cache_dir else default_cache_dir()), log=_log)
    except ReportgenError as e:
        click.echo(f"error: {_one_line(e, None)}", err=True)
        sys.exit(2)
    click.echo(f"Report re-rendered to {target.resolve()} ({rep.meta.theme} theme, "
               f"{len(rep.sections)} sections) in {time.perf_counter() - t0:.1f} s.")
    index = target if target.suffix.lower() in (".html", ".htm") else target / "index.html"
    click.echo(_open_hint(index))


@main.command()
@click.option("--model", "model", required=True, cls=ModelOption)
@click.option("--weights", type=click.Path(dir_okay=False), help="State dict to load (weights_only=True).")
@click.option("--trust-weights", "trust", is_flag=True, help="Allow pickled objects in --weights.")
@click.option("--input-size", type=click.IntRange(8, 4096), help="Input size for the shape pass.")
@click.option("--all", "show_all", is_flag=True, help="Include container modules, not only leaf layers.")
def layers(model, weights, trust, input_size, show_all) -> None:
    """List the model's layers: dotted names (for --layer), types, output shapes and parameters."""
    import torch

    from . import loading
    from .errors import ReportgenError
    from .inspection.layers import describe_layers

    try:
        loaded = loading.load_model(model, weights=weights, trust=trust)
        pre = loading.resolve_preprocessing(loaded, input_size=input_size)
        x = torch.zeros(1, pre.channels, pre.size, pre.size)
        try:
            infos = describe_layers(loaded.model, x)
        except Exception as e:  # shapes are a bonus; names still help
            click.echo(f"(output shapes unavailable: {type(e).__name__}: {e})", err=True)
            infos = describe_layers(loaded.model, None)
    except ReportgenError as e:
        click.echo(f"error: {_one_line(e, None)}", err=True)
        sys.exit(2)
    rows = [i for i in infos if show_all or i.is_leaf]
    w = max([len(r.name) for r in rows] + [5])
    tw = max([len(r.type) for r in rows] + [4])
    click.echo(f"{'layer'.ljust(w)}  {'type'.ljust(tw)}  {'output shape'.ljust(18)}  {'layout'.ljust(16)}  parameters")
    for r in rows:
        shape = "x".join(str(s) for s in r.output_shape) if r.output_shape else "-"
        click.echo(f"{r.name.ljust(w)}  {r.type.ljust(tw)}  {shape.ljust(18)}  {r.layout.ljust(16)}  {r.params:,}")
    total = sum(p.numel() for p in loaded.model.parameters())
    click.echo(f"\n{len(rows)} layers, {total:,} parameters; input {pre.channels}x{pre.size}x{pre.size}.")


@main.command()
@click.option("--verbose", "-v", is_flag=True, help="Show each technique's options and their preset values.")
@click.option("--markdown", is_flag=True, help="Print the Markdown reference (docs/techniques.md).")
def techniques(verbose, markdown) -> None:
    """List the registered techniques: ids, titles, papers, and what each preset changes in each."""
    import dataclasses
    import textwrap

    from . import registry
    from .config import allowed_values
    from .docs import preset_summary

    if markdown:
        from .docs import techniques_markdown

        click.echo(techniques_markdown(), nl=False)
        return
    for t in registry.all_techniques():
        papers = "; ".join(f"{r.short()}" for r in t.references)
        click.echo(f"{t.id:<22} {t.title}")
        for line in [preset_summary(t)] + ([f"papers: {papers}"] if papers else []):
            click.echo(textwrap.fill(line, 118, initial_indent=" " * 23, subsequent_indent=" " * 25))
        if verbose:
            for f in dataclasses.fields(t.options):
                vals = {p: getattr(t.default_options(p), f.name) for p in registry.PRESETS}
                click.echo(f"{'':<24}{t.id}.{f.name} = " + ", ".join(f"{p}: {v!r}" for p, v in vals.items())
                           + f"   allowed: {allowed_values(t.options, f.name)}")


@main.group()
def cache() -> None:
    """Show or empty the cache of computed results (default $XDG_CACHE_HOME/reportgen or ~/.cache/reportgen)."""


_cache_dir_option = click.option("--cache-dir", type=click.Path(file_okay=False),
                                 help="Cache folder (default: the user cache directory).")


def _open_cache(cache_dir):
    from .cache import Cache, default_cache_dir

    return Cache(Path(cache_dir) if cache_dir else default_cache_dir())


@cache.command("info")
@_cache_dir_option
def cache_info(cache_dir) -> None:
    """Where the cache is, how many entries it holds and their size."""
    from .cache import human_size

    c = _open_cache(cache_dir)
    ents = c.entries()
    click.echo(f"Cache folder: {c.dir}")
    click.echo(f"Entries: {len(ents)}, {human_size(sum(e[1] for e in ents))}")


@cache.command("clear")
@_cache_dir_option
def cache_clear(cache_dir) -> None:
    """Delete every cached entry (only reportgen's own files are removed)."""
    from .cache import human_size

    c = _open_cache(cache_dir)
    n, b = c.clear()
    click.echo(f"Removed {n} entries ({human_size(b)}) from {c.dir}")


@main.command(epilog=EXIT_CODES)
@click.option("--model", "models_", multiple=True, required=True, cls=ModelOption,
              help="Give twice: model A, then model B. ")
@click.option("--name", "names", multiple=True, help="Give twice: short names for A and B (default A, B).")
@click.option("--images", required=True, type=click.Path(), help="Folder of images both models see.")
@click.option("--out", required=True, type=click.Path(), help="Output folder (replaced atomically), or "
              "NAME.html for one self-contained file.")
@click.option("--technique", "techniques_", multiple=True, callback=_ids,
              help="Techniques shown side by side (default: filters, saliency, class_visualization, and "
              "faithfulness when installed); the same as --only.")
@click.option("--cka-images", type=click.IntRange(4), default=64, show_default=True,
              help="Images (a seeded sample) for the CKA heatmaps (below 50 the page warns: unreliable).")
@click.option("--cka-layers", type=click.IntRange(2), default=12, show_default=True,
              help="Layers of each model (spread over the depth) in the CKA heatmaps.")
@click.option("--cka-estimator", type=click.Choice(["unbiased", "biased"]), default="unbiased", show_default=True,
              help="HSIC estimator of CKA: unbiased (Song et al. 2012; near 0 for unrelated representations at "
              "any n) or biased (Kornblith et al. 2019; inflated at small n).")
@run_options
def compare(models_, names, images, out, techniques_, cka_images, cka_layers, cka_estimator, **kw) -> None:
    """Compare two models on the same images: flipped predictions, per-class accuracy, calibration,
    layer-by-layer CKA and techniques side by side. Takes every option of `build`; the per-model ones
    (--weights, --input-size, --resize, --mean, --std, --channels, --layer) once for both or twice (A, B)."""
    if len(models_) != 2 or len(names) not in (0, 2):
        raise click.UsageError("give --model exactly twice (and --name either never or twice)")

    def work():
        from .compare import compare_reports

        o = _run_options(kw, 2)
        chosen = list(techniques_ or ()) + list(o.only or ())
        return compare_reports(models_[0], models_[1], images, out, o, names=tuple(names) or ("A", "B"),
                               techniques=chosen or None, cka_images=cka_images, cka_layers=cka_layers,
                               cka_estimator=cka_estimator, progress=_progress, log=_log)

    _run(work, debug=bool(kw.get("debug")), strict=bool(kw.get("strict")), what="Comparison")


@main.command()
@click.argument("reports", nargs=-1, required=True, type=click.Path(exists=True))  # folders or single files
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Site folder (replaced atomically).")
@click.option("--theme", default="light", show_default=True, help=THEME_HELP)
@click.option("--title", default="Model reports", show_default=True)
@click.option("--link", is_flag=True, help="Symlink the report folders instead of copying them.")
def site(reports, out, theme, title, link) -> None:
    """One static landing page listing several built reports, folders or single files (copied into the site)."""
    from .errors import ReportgenError
    from .publish.site import build_site

    try:
        index = build_site([Path(r) for r in reports], Path(out), theme=theme, title=title, link=link)
    except ReportgenError as e:
        click.echo(f"error: {_one_line(e, None)}", err=True)
        sys.exit(2)
    click.echo(f"Site written to {Path(out).resolve()} ({len(reports)} reports).")
    click.echo(_open_hint(index))


from .publish.export import export_command  # noqa: E402 - `reportgen export`: its own module
main.add_command(export_command)
main.add_command(check)

if __name__ == "__main__":  # pragma: no cover
    main()
