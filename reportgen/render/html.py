"""Report tree -> static HTML (Jinja, autoescaped, StrictUndefined). No torch here.

Structure (after ydata-profiling's ``report/structure`` -> ``flavours/html``): every block class has one
template ``templates/elements/<name>.html``; :func:`render_block` dispatches on the class name, and
``row``/``group`` templates call it again for their children. Pages extend ``layouts/base.html``.

Everything user-provided (class names, file names, captions, errors) reaches HTML only through Jinja's
autoescaping; links are only made from ``http(s)`` URLs; output files are named from content hashes and
sanitised section ids.
"""

from __future__ import annotations

import functools
import json
import numbers
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import (ChoiceLoader, Environment, FileSystemLoader, PrefixLoader, StrictUndefined, TemplateNotFound,
                    pass_context)
from markupsafe import Markup

from .. import __version__
from .._resources import templates_dir
from ..report import (
    OVERVIEW, Explorer, Figure, Grid, Group, ImageData, KeyValues, Note, Report, Row, RunInfo, Section, Table,
    UnitSet, iter_images,
)
from . import explorer as explorer_mod
from .failures import failure_facts
from .assets import ASSETS_DIRNAME, MIN_PICTURE_PX, AssetStore, auto_cell_width, content_hash
from .text import (
    clean_strings, first_sentence, fmt_duration, fmt_value, is_number, paragraphs, safe_text, safe_url,
    short_hash, slugify, tone_class, tone_mark, wbr_path,
)
from .figure_theme import painter
from .single_file import dedupe_pictures
from .themes import Theme, load_theme

if TYPE_CHECKING:
    from jinja2.runtime import Context

UNSUPPORTED = "unsupported"  # the results key of a section that cannot apply (reportgen.build.UNSUPPORTED)
CSP = ("default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
       "base-uri 'none'; form-action 'none'")

SECTIONS_DIRNAME = "sections"
LONG_TABLE_ROWS = 15  # taller tables scroll inside their container

# Block class -> element template name (subclasses are matched through the MRO).
BLOCK_TEMPLATES = {
    Figure: "figure", Grid: "grid", Table: "table", Note: "note", KeyValues: "keyvalues", Row: "row", Group: "group",
    Explorer: "explorer", UnitSet: "unitset",
}
# one per report.NoteKind (a test checks)
NOTE_KINDS: dict[str, str] = {"info": "Note", "warning": "Warning", "error": "Error"}


# ------------------------------------------------------------------------------------------------
# views the templates read (computed here so templates stay simple and StrictUndefined-safe)


@dataclass
class SectionView:
    section: Section
    slug: str
    number: int
    page: str  # path relative to out_dir ("sections/<slug>.html", or "index.html" in single-file mode)
    anchor: str  # id of the section's element ("sec-<slug>")
    status: str  # "ok" | "failed" | "na" (the section cannot apply to this model or image set: results["unsupported"])
    summary_line: str
    time: str
    on_overview: bool = False  # the section's placement asks for its blocks on the front page too

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def na(self) -> bool:
        return self.status == "na"

    @property
    def na_reason(self) -> str:
        """Why the section cannot apply, in one line (what it would need)."""
        return first_sentence(str(self.section.results.get(UNSUPPORTED, "")), 300) if self.na else ""


@dataclass
class Fact:
    label: str
    value: str
    mono: bool = False
    title: str = ""
    section: str = ""  # the id of the section the value comes from (the overview links it)


@dataclass
class FactGroup:
    title: str
    facts: list[Fact] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # caveats listed under the facts

    def add(self, label: str, value: Any, mono: bool = False, title: str = "") -> None:
        if value is None or value == "" or value == []:
            return
        self.facts.append(Fact(label, fmt_value(value) if not isinstance(value, str) else value, mono, title))


@dataclass
class GridInfo:
    columns: int | None
    cell: int  # the pictures' display size in CSS px (page layout: label room, fitting columns, is in the CSS)
    pixelated: bool
    labels: str  # CSS class: "has-sublabels", "has-labels" or ""

@dataclass
class TableCell:
    text: str
    numeric: bool


@dataclass
class TableRow:
    tone: str
    cells: list[TableCell]


@dataclass
class TableInfo:
    columns: list[TableCell]
    rows: list[TableRow]
    long: bool


def grid_info(grid: Grid) -> GridInfo:
    """Display size of a grid's pictures. Only picture policy lives here (integer enlargement of small or
    pixelated pictures, see :mod:`.assets`); how cells fit the page is the stylesheet's ``.grid`` rules."""
    sizes = []
    pix = False
    for it in grid.items:
        img = it.image
        pix = pix or bool(img.pixelated)
        if img.array is not None:
            sizes.append((int(img.array.shape[1]), int(img.array.shape[0])))
    cell = int(grid.cell_width) if grid.cell_width else auto_cell_width(sizes)
    if not pix and sizes and len(sizes) == len(grid.items) and max(max(s) for s in sizes) < MIN_PICTURE_PX:
        w = max(max(s) for s in sizes)  # small inputs (CIFAR, MNIST): an integer enlargement to >= 128 px
        cell = max(cell, w * -(-MIN_PICTURE_PX // w))
    cols = int(grid.columns) if grid.columns and grid.columns > 0 else None
    labels = ("has-sublabels" if any(it.sublabel for it in grid.items)
              else "has-labels" if any(it.label for it in grid.items) else "")
    return GridInfo(columns=cols, cell=max(8, cell), pixelated=pix, labels=labels)


def table_info(t: Table) -> TableInfo:
    ncol = max([len(t.columns)] + [len(r) for r in t.rows]) if (t.columns or t.rows) else 0
    names = list(t.columns) + [""] * (ncol - len(t.columns))
    numeric = {int(i) for i in (t.numeric or []) if isinstance(i, numbers.Integral)}
    for j in range(ncol):  # also right-align columns that hold only numbers
        vals = [r[j] for r in t.rows if j < len(r) and r[j] is not None and r[j] != ""]
        if vals and all(is_number(v) for v in vals):
            numeric.add(j)
    rows = []
    highlight = t.highlight or {}
    for i, r in enumerate(t.rows):
        cells = [TableCell(fmt_value(r[j]) if j < len(r) else "", j in numeric) for j in range(ncol)]
        rows.append(TableRow(tone_class(highlight.get(i, "")).strip(), cells))
    return TableInfo(columns=[TableCell(str(n), j in numeric) for j, n in enumerate(names)], rows=rows,
                     long=len(rows) > LONG_TABLE_ROWS)


def params_rows(params: dict[str, Any]) -> list[tuple[str, str]]:
    return [(str(k), fmt_value(v)) for k, v in params.items()]


def run_info(report: Report) -> RunInfo:
    """The report's :class:`RunInfo` (an older pickled report may still hold a plain dict)."""
    meta = report.meta
    return meta if isinstance(meta, RunInfo) else RunInfo.from_dict(meta if isinstance(meta, dict) else {})


def overview_groups(report: Report) -> list[FactGroup]:
    m = run_info(report)
    model, images, config = m.model, m.images, m.config
    g_model = FactGroup("Model", notes=[str(n) for n in (model.get("notes") or [])])
    g_model.add("Model", model.get("spec"), mono=True)
    g_model.add("Kind", model.get("kind"))
    g_model.add("Weights", model.get("weights") or model.get("weights_source") or ("none given" if model else None),
                mono=bool(model.get("weights")))
    g_model.add("Classes", m.num_classes)
    if m.model_hash:
        g_model.add("Hash", short_hash(m.model_hash, 12), mono=True, title=str(m.model_hash))
    models = m.extra.get("models") if m.kind == "compare" else None
    if isinstance(models, dict) and models:  # a comparison: one card per model, with its accuracy
        g_models = [_model_group(str(n), v) for n, v in models.items() if isinstance(v, dict)]
        g_model = FactGroup("Models")  # the classes go to the data card
    else:
        g_models = []
    g_data = FactGroup("Data")
    if g_models:
        g_data.add("Classes", m.num_classes)
    if images is not None:
        g_data.add("Image folder", images.folder, mono=True)
        g_data.add("Images used", images.count)
        g_data.add("Images skipped", images.skipped)
        g_data.add("Labels from", images.labels_from or "none (unlabelled)")
    elif report.skipped_images:
        g_data.add("Images skipped", len(report.skipped_images))
    g_run = FactGroup("Run")
    g_run.add("Device", m.device)
    g_run.add("Preset", config.get("preset"))
    general = config.get("general") if isinstance(config.get("general"), dict) else {}
    if general:
        g_run.add("Layer", general.get("layer") or "last convolution", mono=bool(general.get("layer")))
        g_run.add("Seed", general.get("seed"))
        g_run.add("Batch size", general.get("batch_size"))
    if m.total_time_s is not None:
        g_run.add("Total time", fmt_duration(m.total_time_s))
    g_run.add("Generated", m.generated)
    g_fail = FactGroup("Where it fails")  # the failure sections' headline numbers (render/failures.py)
    g_fail.facts = [Fact(label, value, section=sid) for label, value, sid in failure_facts(report)]
    return [g for g in (*g_models, g_model, g_data, g_fail, g_run) if g.facts]


def _model_group(name: str, info: dict[str, Any]) -> FactGroup:
    """One model of a comparison: what it is, its accuracy on these images and its preprocessing."""
    g = FactGroup(f"Model {name}", notes=[str(n) for n in (info.get("notes") or [])])
    g.add("Model", info.get("spec"), mono=True)
    g.add("Kind", info.get("kind"))
    g.add("Weights", info.get("weights") or info.get("weights_source") or "none given", mono=bool(info.get("weights")))
    acc = info.get("accuracy")
    g.add("Accuracy", f"{100 * acc:.1f}% (top-1, labelled images)" if acc is not None and is_number(acc)
          else "no labels")
    g.add("Preprocessing", info.get("preprocessing_text"))
    if info.get("hash"):
        g.add("Hash", short_hash(str(info["hash"]), 12), mono=True, title=str(info["hash"]))
    return g


# ------------------------------------------------------------------------------------------------
# Jinja environment and dispatcher


def _template_for(block: Any) -> str | None:
    for cls in type(block).__mro__:
        name = BLOCK_TEMPLATES.get(cls)
        if name:
            return name
    return None


@pass_context
def render_block(ctx: Context, block: Any, depth: int = 0) -> Markup:
    """The dispatcher: render ``block`` with ``elements/<class name>.html``."""
    name = _template_for(block)
    env = ctx.environment
    tpl = env.get_template(f"elements/{name or 'unknown'}.html")
    try:
        return Markup(tpl.render({**ctx.get_all(), "block": block, "depth": depth}))
    except TemplateNotFound:
        raise
    except Exception as e:  # a malformed block (a technique bug) shows an error box instead of sinking the report
        return Markup(env.get_template("elements/render_error.html").render(
            kind=type(block).__name__, error=f"{type(e).__name__}: {e}"))


@pass_context
def img(ctx: Context, image: ImageData, width: int | None = None):
    """ImageRef (src, width, height, pixelated) for ``image`` on the page being rendered."""
    store: AssetStore = ctx["_store"]
    return store.ref(image, root=ctx["root"], inline=ctx["single_file"], width=width)


@pass_context
def href(ctx: Context, target: Any) -> str:
    """Relative link to the overview (``"overview"``) or a section (a SectionView) from the current page."""
    single = ctx["single_file"]
    if isinstance(target, SectionView):
        return f"#{target.anchor}" if single else f"{ctx['root']}{target.page}"
    if target == OVERVIEW:
        return "#overview" if single else f"{ctx['root']}index.html"
    raise ValueError(f"unknown link target {target!r}")


@functools.lru_cache(maxsize=8)
def make_env(template_dirs: tuple[str, ...] = ()) -> Environment:
    """The Jinja environment. ``template_dirs`` (a theme's ``templates/`` folders, most specific first) are
    searched before the package's templates, so a theme overrides any template by giving its path; an override
    can still extend the package's own as ``reportgen:<path>``
    (e.g. ``{% extends "reportgen:layouts/base.html" %}``)."""
    package = FileSystemLoader(str(templates_dir()))
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(d) for d in template_dirs]
                            + [package, PrefixLoader({"reportgen": package}, delimiter=":")]),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals.update(render_block=render_block, img=img, href=href, grid_info=grid_info, table_info=table_info,
                       params_rows=params_rows, tone_class=tone_class, tone_mark=tone_mark, safe_url=safe_url,
                       note_title=lambda kind: NOTE_KINDS.get(str(kind), "Note"),
                       note_kind=lambda kind: str(kind) if str(kind) in NOTE_KINDS else "info")
    env.filters.update(render_block=render_block, fmt=fmt_value, duration=fmt_duration, paragraphs=paragraphs,
                       first_sentence=first_sentence, slugify=slugify, av=explorer_mod.attr_value,
                       wbr_path=wbr_path)
    return env


# ------------------------------------------------------------------------------------------------
# the renderer


def not_applicable(s: Section) -> bool:
    """The section says it cannot apply to this model or image set (``results["unsupported"]``, no error)."""
    return not s.error and isinstance(s.results, dict) and bool(s.results.get(UNSUPPORTED))


def _section_views(sections: list[Section], single_file: bool) -> list[SectionView]:
    """A view per section; those that cannot apply here go last (the contents' "Not applicable" group)."""
    views, used = [], set()
    ordered = [s for s in sections if not not_applicable(s)] + [s for s in sections if not_applicable(s)]
    for k, s in enumerate(ordered, 1):
        slug = base = slugify(s.id, f"section-{k}")
        n = 2
        while slug in used:
            slug = f"{base}-{n}"
            n += 1
        used.add(slug)
        page = "index.html" if single_file else f"{SECTIONS_DIRNAME}/{slug}.html"
        views.append(SectionView(
            section=s, slug=slug, number=k, page=page, anchor=f"sec-{slug}",
            status="failed" if s.error else "na" if not_applicable(s) else "ok", summary_line=first_sentence(s.summary),
            time=fmt_duration(s.wall_time_s), on_overview=(s.placement == OVERVIEW),
        ))
    return views


def _write_text(out_dir: Path, rel: str, text: str) -> None:
    target = (out_dir / rel).resolve()
    if out_dir.resolve() not in target.parents:
        raise ValueError(f"refusing to write outside {out_dir}: {rel!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(safe_text(text), encoding="utf-8")


def render_report(report: Report, out_dir: Path, theme: str = "light", single_file: bool = False, *,
                  encoded=None, link_from: Path | None = None) -> dict:
    """Write the report's HTML into ``out_dir``; return the manifest (index, pages, per-section page & assets).

    ``encoded`` (a cache with ``get``/``put``) keeps encoded pictures between renders; ``link_from`` is the
    report folder being replaced, whose identical asset files are hard-linked rather than written again.
    """
    th: Theme = load_theme(theme)  # first: an unknown theme writes nothing
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = make_env(th.template_dirs())
    store = AssetStore(out_dir, write=not single_file, encoded=encoded, link_from=link_from,
                       paint=painter(th.colors, th.color_scheme))

    views = _section_views(report.sections, single_file)

    # Register every picture first, so the manifest lists each section's assets in document order.
    manifest_sections: dict[str, dict[str, Any]] = {}
    for v in views:
        paths: list[str] = []
        images = list(iter_images(v.section.blocks))
        store.begin_section(images, v.section.id)
        for im in images:
            p = store.add(im).path
            if p not in paths:
                paths.append(p)
        store.end_section()
        manifest_sections[v.section.id] = {
            "page": f"index.html#{v.anchor}" if single_file else v.page,
            "assets": [] if single_file else paths,
        }

    rg = explorer_mod.plan(views, store, single_file)  # the explorer, image and unit pages, search (if any)
    css = th.css() + explorer_mod.css_for(rg)
    css_path = f"{ASSETS_DIRNAME}/style-{content_hash(css.encode('utf-8'))}.css"
    if not single_file:
        store.write_file(css_path, css.encode("utf-8"))
    csp = CSP
    if rg.active:
        csp += "; script-src " + (explorer_mod.csp_hash(rg.script_inline) if single_file else "'self'")

    meta = run_info(report)
    common = {
        "report": report,
        "title": report.title,
        "sections": views,
        "featured": [v for v in views if v.on_overview],
        "failed": [v for v in views if v.failed],
        "n_cached": sum(1 for v in views if v.section.cached),
        "n_images": meta.images.count if meta.images is not None else None,
        "total_time": fmt_duration(meta.total_time_s) if meta.total_time_s is not None else None,
        "groups": overview_groups(report),
        "eyebrow": "Model comparison" if meta.kind == "compare" else "Model card",
        "untrained": str(meta.model.get("untrained") or ""),  # the banner on top of every page
        "preprocessing": str(meta.preprocessing_text or ""),
        "versions": [(str(k), str(v)) for k, v in meta.versions.items()],
        "config_json": json.dumps(meta.config, indent=2, default=str, ensure_ascii=False) if meta.config else None,
        "command": meta.command or None,
        "skipped": list(report.skipped_images),
        "theme": th,
        "csp": Markup(csp),  # a constant (and a base64 hash) with no double quotes: written verbatim
        "version": str(meta.versions.get("reportgen") or __version__),
        "generated": str(meta.generated or time.strftime("%Y-%m-%d %H:%M:%S %Z")),
        "single_file": single_file,
        "css_path": css_path,
        "css_inline": Markup(css) if single_file else None,
        "_store": store,
        **explorer_mod.template_globals(rg, single_file),
        "rg_inline": Markup(rg.script_inline), "rg_data_json": Markup(rg.data_json),
        "rg_search_json": Markup(rg.search_json),
        "rg_parts": Markup(""),
    }
    if single_file and rg.active:
        common["rg_parts"] = Markup(explorer_mod.single_parts(rg, env, common, views))

    pages = ["index.html"]
    html = env.get_template("layouts/index.html").render(
        {**common, "root": "", "current": "overview", "page_kind": "index", "hbase": 2 if single_file else 1})
    _write_text(out_dir, "index.html", dedupe_pictures(html) if single_file else html)

    if not single_file:
        tpl = env.get_template("layouts/section.html")
        for i, v in enumerate(views):
            html = tpl.render({
                **common, "root": "../", "current": v.slug, "page_kind": "section", "hbase": 1, "sec": v,
                "prev": views[i - 1] if i > 0 else None, "next": views[i + 1] if i + 1 < len(views) else None,
            })
            _write_text(out_dir, v.page, html)
            pages.append(v.page)
    extra = []  # explorer.html, then a page per image and per unit
    if rg.active and not single_file:
        extra = explorer_mod.write_pages(rg, env, common, views, lambda rel, t: _write_text(out_dir, rel, t))
        if extra and extra[0] == "explorer.html":
            pages.append(extra.pop(0))

    manifest = {"index": "index.html", "pages": pages, "sections": manifest_sections}
    if extra:
        manifest["explorer_pages"] = extra  # a page per image and per unit (not in "pages": thousands of them)
    return manifest


__all__ = ["render_report", "make_env", "render_block", "slugify", "fmt_value", "safe_text", "clean_strings", "CSP"]
