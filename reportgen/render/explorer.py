"""The explorer inside the static report: explorer.html (a zoomable scatter of every image), a page per image
(``images/<id>.html``), a page per unit (``units/<layer>/<channel>.html``) and a client-side search index.

Everything is written from the report tree (an :class:`~reportgen.report.Explorer` block with the whole image set,
:class:`~reportgen.report.UnitSet` blocks, and the ``image_id`` of pictures), never from the model. The pages are
complete HTML without scripts; ``templates/scripts/reportgen.js`` only adds the scatter and the search box. The
data it reads is a same-folder script assigning ``window.RG_EXPLORER`` / ``window.RG_SEARCH`` (``fetch`` is
blocked on ``file://``), or inert JSON blocks in a single-file report, where the script itself is inline and
allowed by its SHA-256 in the page's CSP.

Which image a grid cell explains: its picture's ``image_id``; cells without one that follow a cell with one, in
the same grid, are that image's maps (the attribution sections' rows: the input, then its maps).
"""

from __future__ import annotations

import base64
import hashlib
import json
import numbers
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup, escape

from .._resources import templates_dir
from ..report import Explorer, Figure, Grid, Group, ImageData, Row, UnitSet
from . import image_page
from .assets import ASSETS_DIRNAME, AssetStore, content_hash
from .failures import EXTRA_MODES, explorer_columns
from .text import slugify

SHOWN_NEIGHBOURS = 5  # per list on an image page
MAX_MAPS = 48  # pictures listed on one image page
MAX_STATIC_LINKS = 5000  # image links in the explorer page's no-script list (the mosaic links the rest it shows)
#: above this many images a folder report writes compact image pages: the picture, label, prediction, maps and
#: numbers stay static; the top-k table and the neighbour lists are drawn by script from one shared data file
COMPACT_ABOVE = 2000
FAITH_KEYS = ("image_id", "image", "name", "file", "path")
BAR_PX = 80  # a probability of 1 draws a bar this wide on an image page
_UNQUOTED = re.compile(r"[A-Za-z0-9_.:/#?,+%-]+")  # attribute values written without quotes (HTML5 allows these)
_BETWEEN_TAGS = re.compile(r">\s*\n\s*<")


def script_text() -> str:
    return (templates_dir() / "scripts" / "reportgen.js").read_text(encoding="utf-8")


def explorer_css() -> str:
    return (templates_dir() / "scripts" / "explorer.css").read_text(encoding="utf-8")


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _js_json(obj: Any) -> str:
    """JSON safe inside <script> (no "</script>", no "<!--")."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def attr_value(value: Any) -> Markup:
    """An attribute value as HTML5 allows it shortest: bare when it has only safe characters (no space, quote,
    ``=``, ``<``, ``>``, backtick or ``&``), else quoted and escaped. Jinja filter ``av``."""
    text = str(value)
    return Markup(text) if _UNQUOTED.fullmatch(text) else Markup('"%s"') % escape(text)


def squeeze(html: str) -> str:
    """Drop the template's line breaks between tags (a newline next to text, and a plain space, are kept)."""
    return _BETWEEN_TAGS.sub("><", html).strip() + "\n"


def short_name(name: str, near: str) -> str:
    """``name`` without the folders it shares with ``near`` (``a/b/x.png`` near ``a/b/y.png`` is ``x.png``)."""
    parts, base = name.split("/"), near.split("/")[:-1]
    k = 0
    while k < min(len(parts) - 1, len(base)) and parts[k] == base[k]:
        k += 1
    return "/".join(parts[k:])


@dataclass
class Thumb:
    id: str
    name: str
    sheet: int
    c: int
    r: int
    href: str = ""  # from the page it is shown on
    title: str = ""  # its name as that page shows it (folders it shares with the page's image left out)

    @property
    def cls(self) -> str:
        """Its sprite sheet and cell as classes of the shared stylesheet (sheet 0, column 0, row 0 are defaults)."""
        return " ".join(f"{k}{v}" for k, v in (("s", self.sheet), ("c", self.c), ("r", self.r)) if v)


@dataclass
class Appearance:
    section: Any  # SectionView
    label: str
    image: ImageData | None  # None: the image appears only as itself (neighbours, patches grids are pictures too)


@dataclass
class ExplorerPlan:
    """What the explorer adds to one render: the catalogue, the unit sets, and where everything lives."""

    ex: Explorer | None
    ex_view: Any
    unit_sets: list[tuple[Any, UnitSet, str]]  # (section view, unit set, layer slug)
    ids: dict[str, int]  # image id -> row
    appears: dict[str, list[Appearance]] = field(default_factory=dict)
    sprite_srcs: list[str] = field(default_factory=list)
    script_path: str = ""
    data_path: str = ""
    search_path: str = ""
    script_inline: str = ""
    data_json: str = ""
    search_json: str = ""
    sprite_css: str = ""
    pages_path: str = ""  # compact image pages: their one script (top-k and neighbours of every image, a loader)
    modes: list[tuple[str, str]] = field(default_factory=list)  # extra "colour by" choices (render/failures.py)
    pictures: dict[str, ImageData] = field(default_factory=dict)  # image id -> the picture of it a section shows

    @property
    def compact(self) -> bool:
        return bool(self.pages_path)

    @property
    def active(self) -> bool:
        return self.ex is not None or bool(self.unit_sets)


def _walk(blocks, fn) -> None:
    _walk_grouped(blocks, lambda b, _group: fn(b))


def _walk_grouped(blocks, fn, group: str = "") -> None:
    """``fn(block, group)`` for every leaf block, ``group`` the enclosing Group's title ("" at the top)."""
    for b in blocks:
        if isinstance(b, (Row, Group)):
            _walk_grouped(b.blocks, fn, b.title if isinstance(b, Group) else group)
        else:
            fn(b, group)


def cell_ids(grid: Grid) -> list[str]:
    """The image each cell shows or explains: its own ``image_id``, else that of the nearest tagged cell before it."""
    out, last = [], ""
    for it in grid.items:
        own = getattr(it.image, "image_id", "") or ""
        last = own or last
        out.append(last)
    return out


def _side(img: ImageData | None) -> int:
    return 0 if img is None or img.array is None else int(min(img.array.shape[:2]))


def plan(views, store: AssetStore, single_file: bool) -> ExplorerPlan:
    """Find the catalogue and unit sets, register their pictures, and collect where every image appears."""
    ex, ex_view, units = None, None, []
    for v in views:
        def visit(b, v=v):
            nonlocal ex, ex_view
            if isinstance(b, Explorer) and ex is None and b.ids:
                ex, ex_view = b, v
            elif isinstance(b, UnitSet) and b.units:
                units.append((v, b, slugify(b.layer, "layer")))
        _walk(v.section.blocks, visit)
    p = ExplorerPlan(ex=ex, ex_view=ex_view, unit_sets=units, ids={i: k for k, i in enumerate(ex.ids)} if ex else {})
    if not p.active:
        return p
    for v in views:
        def collect(b, group, v=v):
            if isinstance(b, Grid):
                for it, iid in zip(b.items, cell_ids(b)):
                    if iid in p.ids:
                        label = it.label or it.sublabel
                        label = f"{group}: {label}" if group and label else (group or label)
                        own = it.image.whole and it.image.image_id == iid  # the image itself: not shown again
                        if own and _side(it.image) > _side(p.pictures.get(iid)):  # the largest copy shown
                            p.pictures[iid] = it.image
                        p.appears.setdefault(iid, []).append(Appearance(v, label, None if own else it.image))
            elif isinstance(b, Figure) and b.image.image_id in p.ids:
                p.appears.setdefault(b.image.image_id, []).append(Appearance(v, b.title or b.caption[:60], b.image))
        _walk_grouped(v.section.blocks, collect)
    js = script_text()
    if single_file:
        p.script_inline = js
    else:
        p.script_path = store.write_file(f"{ASSETS_DIRNAME}/rg-{content_hash(js.encode())}.js", js.encode())
    if ex is not None:
        refs = [store.ref(s, root="", inline=single_file) for s in ex.sprites]
        p.sprite_srcs = [r.src for r in refs]
        p.sprite_css = sprite_css(ex, p.sprite_srcs, single_file)
        cols = explorer_columns([v.section for v in views], list(ex.names))
        p.modes = [(k, EXTRA_MODES[k]) for k in cols]
        data = explorer_data(ex, [""] * len(refs) if single_file else p.sprite_srcs, cols)  # single: read from the CSS
        if single_file:
            p.data_json = _js_json(data)
        else:
            body = ("window.RG_EXPLORER=" + _js_json(data) + ";").encode()
            p.data_path = store.write_file(f"{ASSETS_DIRNAME}/explorer-data-{content_hash(body)}.js", body)
            if len(ex.ids) > COMPACT_ABOVE:
                body = pages_script(ex, [p.data_path, p.script_path]).encode()
                p.pages_path = store.write_file(f"{ASSETS_DIRNAME}/pages-{content_hash(body)}.js", body)
    search = search_data(p, views)
    if single_file:
        p.search_json = _js_json(search)
    else:
        body = ("window.RG_SEARCH=" + _js_json(search) + ";").encode()
        p.search_path = store.write_file(f"{ASSETS_DIRNAME}/search-{content_hash(body)}.js", body)
    return p


def sprite_css(ex: Explorer, srcs: list[str], single_file: bool) -> str:
    """The shared rules image pages use instead of inline styles: a class per sprite sheet (``s1``..; sheet 0 is
    the default), per column and row of a sheet (``c1``.., ``r1``..) and per probability bar width (``w1``..)."""
    # the stylesheet lives in assets/: a sheet's url is relative to it
    urls = [f'url("{src if single_file else src.split("/", 1)[1]}")' for src in srcs]
    n, side = len(ex.ids), int(ex.sheet)
    out = [f":where(.th,.thb,.rg-nn a){{--n:{side}" + (f";background-image:{urls[0]}}}" if urls else "}")]
    out += [f".s{k}{{background-image:{u}}}" for k, u in enumerate(urls) if k]
    out += [f".c{k}{{--c:{k}}}" for k in range(1, min(side, n))]
    out += [f".r{k}{{--r:{k}}}" for k in range(1, min(side, -(-n // side)))]
    out += [f".w{k}{{--w:{k}px}}" for k in range(1, BAR_PX + 1)]
    return "".join(out)


def explorer_data(ex: Explorer, sprites: list[str], extra: dict[str, np.ndarray] | None = None) -> dict:
    n = len(ex.ids)
    cols = {k: _b64(v) for k, v in (extra or {}).items()}  # "slice" int16, "suspect" uint8
    xy = np.asarray(ex.xy if ex.xy is not None else np.full((n, 2), np.nan), np.float32).reshape(n, 2)
    pred = np.asarray(ex.topk[:, 0], np.int16)
    return {"n": n, "classes": list(ex.class_names), "thumb": int(ex.thumb), "sheet": int(ex.sheet),
            "sprites": sprites, "xy": _b64(xy), "label": _b64(np.asarray(ex.labels, np.int16)),
            "pred": _b64(pred), "prob": _b64(np.clip(np.round(ex.topk_p[:, 0] * 255), 0, 255).astype(np.uint8)),
            "ids": ",".join(ex.ids), "names": "\n".join(s.replace("\n", " ") for s in ex.names),
            "method": ex.method, **cols}


def _rows(table, n: int) -> str:
    """The first SHOWN_NEIGHBOURS columns of a neighbour table, base64: uint16 below 65,535 images (65,535: none),
    else int32 (-1: none)."""
    none, dtype = (65535, np.uint16) if n < 65535 else (-1, np.int32)
    out = np.full((n, SHOWN_NEIGHBOURS), none, np.int64)
    t = np.asarray(table)[:, :SHOWN_NEIGHBOURS].astype(np.int64)
    out[:, :t.shape[1]] = np.where((t >= 0) & (t < n), t, none)
    return _b64(out.astype(dtype))


def pages_script(ex: Explorer, files: list[str]) -> str:
    """The one script of every compact image page: ``window.RG_PAGES`` (each image's top-k classes and
    probabilities, its feature- and pixel-space neighbours as rows of the explorer data) and the loader
    (``templates/scripts/pages.js``) that adds the explorer data and the page script after it."""
    n = len(ex.ids)
    data = {"k": int(ex.topk.shape[1]), "top": _b64(np.asarray(ex.topk, np.int16)),
            "topp": _b64(np.asarray(ex.topk_p, np.float32)), "bar": BAR_PX, "wide": n >= 65535,
            "fnn": _rows(ex.feature_nn, n) if ex.feature_nn is not None else "",
            "pnn": _rows(ex.pixel_nn, n) if ex.pixel_nn is not None else "",
            "method": ex.method, "files": [f.split("/", 1)[1] for f in files]}
    loader = (templates_dir() / "scripts" / "pages.js").read_text(encoding="utf-8")
    return "window.RG_PAGES=" + _js_json(data) + ";\n" + loader


def search_data(p: ExplorerPlan, views) -> dict:
    ex = p.ex
    classes = list(ex.class_names) if ex else []
    counts = [0] * len(classes)
    if ex is not None:
        key = np.where(np.asarray(ex.labels) >= 0, ex.labels, ex.topk[:, 0])
        for k, c in zip(*np.unique(key, return_counts=True)):
            if 0 <= k < len(counts):
                counts[int(k)] = int(c)
    units = [[f"{us.layer} channel {u.channel}", unit_page(slug, u.channel, single=False)]
             for _, us, slug in p.unit_sets for u in us.units]
    return {"classes": classes, "counts": counts, "ids": list(ex.ids) if ex else [],
            "names": list(ex.names) if ex else [], "units": units}


def unit_page(slug: str, channel: int, single: bool) -> str:
    return f"unit-{slug}-{channel}" if single else f"units/{slug}/{channel}.html"


# ------------------------------------------------------------------------------------------------ page views


def thumb(ex: Explorer, row: int) -> Thumb:
    per = ex.sheet * ex.sheet
    j = row % per
    return Thumb(ex.ids[row], ex.names[row], row // per, j % ex.sheet, j // ex.sheet)


def _numbers_for(obj, keys: tuple[str, ...], found: list, depth: int = 0) -> None:
    """Numeric fields of every dict inside ``obj`` (nested lists/dicts) that names the image by one of ``keys``."""
    from .text import fmt_value

    if depth > 4 or len(found) > 24:
        return
    if isinstance(obj, dict):
        if any(isinstance(obj.get(k), str) and obj.get(k) in keys for k in FAITH_KEYS):
            found += [(str(k), fmt_value(v)) for k, v in obj.items()
                      if isinstance(v, numbers.Number) and not isinstance(v, bool)]
            return
        for v in obj.values():
            _numbers_for(v, keys, found, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj[:10000]:
            _numbers_for(v, keys, found, depth + 1)


def _faith(report_sections, iid: str, name: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """Per-image numbers any section's results hold for this image (records naming its id or file), read
    tolerantly: the faithfulness section's, a neighbours query's...; as (name, value, unit) rows."""
    out = []
    for s in report_sections:
        found: list[tuple[str, str]] = []
        _numbers_for(s.results if isinstance(s.results, dict) else {}, (iid, name), found)
        if found:
            out.append((s.title, image_page.numbers(found)))
    return out


def _neighbours(ex: Explorer, table, row: int, single_file: bool) -> list[Thumb]:
    if table is None:
        return []
    out = [thumb(ex, int(j)) for j in table[row][:SHOWN_NEIGHBOURS] if 0 <= int(j) < len(ex.ids)]
    for t in out:
        t.href = f"#img-{t.id}" if single_file else f"{t.id}.html"
        t.title = short_name(t.name, ex.names[row])
    return out


def image_pages(p: ExplorerPlan, sections, single_file: bool = False) -> list[dict]:
    """One context per image of the catalogue (links between image pages are relative to their folder)."""
    ex = p.ex
    if ex is None:
        return []
    pages = []
    sec_list = [s.section for s in sections]
    compact = p.compact and not single_file  # a single file has no page of its own per image: always complete
    ranks = image_page.faithfulness_ranks(sec_list)
    for row, iid in enumerate(ex.ids):
        lab = int(ex.labels[row])
        top = [(ex.class_names[int(c)] if 0 <= int(c) < len(ex.class_names) else f"class_{int(c)}", float(q),
                min(BAR_PX, max(0, round(float(q) * BAR_PX)))) for c, q in zip(ex.topk[row], ex.topk_p[row])]
        app = p.appears.get(iid, [])
        secs, seen = [], set()
        for a in app:
            if a.section.slug not in seen:
                seen.add(a.section.slug)
                secs.append(a.section)

        pages.append({
            "iid": iid, "name": ex.names[row], "me": thumb(ex, row),
            "label": ex.class_names[lab] if 0 <= lab < len(ex.class_names) else None,
            "correct": None if lab < 0 else int(ex.topk[row, 0]) == lab, "top": top,
            "feature_nn": [] if compact else _neighbours(ex, ex.feature_nn, row, single_file),
            "pixel_nn": [] if compact else _neighbours(ex, ex.pixel_nn, row, single_file),
            "maps": [a for a in app if a.image is not None][:MAX_MAPS], "in_sections": secs,
            "picture": p.pictures.get(iid), "pic_w": image_page.picture_width(p.pictures.get(iid)),
            "arranged": image_page.arrange(app, ranks),
            "faith": _faith(sec_list, iid, ex.names[row]) if app else [],
            "method": ex.method, "compact": compact,
        })
    return pages


def unit_pages(p: ExplorerPlan) -> list[dict]:
    out = []
    for v, us, slug in p.unit_sets:
        for k, u in enumerate(us.units):
            counts: dict[str, int] = {}
            for c in u.top_classes:
                counts[c] = counts.get(c, 0) + 1
            patches: list[ImageData | None] = [*u.patches] or [None] * len(u.top_ids)
            out.append({
                "layer": us.layer, "slug": slug, "unit": u, "section": v,
                "prev": us.units[k - 1].channel if k > 0 else None,
                "next": us.units[k + 1].channel if k + 1 < len(us.units) else None,
                "tops": list(zip(u.top_ids, u.top_values, u.top_classes, patches)),
                "classes": sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])), "compact": False,
            })
    return out


def static_mosaic(ex: Explorer) -> list[tuple[str, str, float, float, float]]:
    """(id, name, left %, top %, size %) of each mosaic cell, for links over the mosaic picture."""
    if ex.mosaic is None or ex.mosaic_cells is None or not ex.mosaic_grid:
        return []
    g = float(ex.mosaic_grid)
    return [(ex.ids[int(i)], ex.names[int(i)], 100 * int(c) / g, 100 * int(r) / g, 100 / g)
            for i, r, c in np.asarray(ex.mosaic_cells) if 0 <= int(i) < len(ex.ids)]


def class_lists(ex: Explorer) -> tuple[list[tuple[str, list[Thumb]]], int]:
    """Images grouped by class (true label, else prediction), largest first, at most MAX_STATIC_LINKS in all."""
    key = np.where(np.asarray(ex.labels) >= 0, ex.labels, ex.topk[:, 0])
    groups: dict[int, list[int]] = {}
    for row, k in enumerate(key.tolist()):
        groups.setdefault(int(k), []).append(row)
    out, left = [], MAX_STATIC_LINKS
    for k, rows in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        name = ex.class_names[k] if 0 <= k < len(ex.class_names) else f"class_{k}"
        take = rows[:max(0, left)]
        left -= len(take)
        out.append((name, [thumb(ex, r) for r in take]))
    return out, max(0, len(ex.ids) - MAX_STATIC_LINKS)


def write_pages(p: ExplorerPlan, env, common: dict, views, write) -> list[str]:
    """Folder mode: write explorer.html, images/<id>.html and units/<layer>/<channel>.html; return their paths.
    The image and unit pages are written small (thousands of them): the same policy spelt without spaces,
    optional tags and quotes left out, no line breaks between tags."""
    pages = []
    mini = {**common, "csp": Markup(str(common["csp"]).replace("; ", ";"))}
    # a compact page has no inline style (its script sets styles through the DOM): its policy forbids them
    strict = {**mini, "csp": Markup(str(mini["csp"]).replace(" 'unsafe-inline'", ""))}
    if p.ex is not None:
        html = env.get_template("layouts/explorer.html").render({**common, "root": "", "current": "explorer",
                                                                  "page_kind": "explorer", "hbase": 1})
        write("explorer.html", html)
        pages.append("explorer.html")
        tpl = env.get_template("layouts/image.html")
        for ctx in image_pages(p, views):
            rel = f"images/{ctx['iid']}.html"
            write(rel, squeeze(tpl.render({**(strict if ctx["compact"] else mini), **ctx, "root": "../",
                                           "page_kind": "image"})))
            pages.append(rel)
    tpl = env.get_template("layouts/unit.html")
    for ctx in unit_pages(p):
        rel = unit_page(ctx["slug"], ctx["unit"].channel, single=False)
        write(rel, squeeze(tpl.render({**mini, **ctx, "root": "../../", "page_kind": "unit"})))
        pages.append(rel)
    return pages


def template_globals(p: ExplorerPlan, single_file: bool) -> dict:
    """What every page template reads about the explorer (links, scripts, data paths)."""
    def image_href(root: str, iid: str) -> str:
        if not iid or iid not in p.ids:
            return ""
        return f"#img-{iid}" if single_file else f"{root}images/{iid}.html"

    def unit_href(root: str, slug: str, channel: int) -> str:
        return f"#{unit_page(slug, channel, True)}" if single_file else f"{root}{unit_page(slug, channel, False)}"

    def explorer_href(root: str) -> str:
        return "#explorer" if single_file else f"{root}explorer.html"

    groups, left = class_lists(p.ex) if p.ex is not None else ([], 0)
    return {"rg": p if p.active else None, "image_href": image_href, "unit_href": unit_href,
            "explorer_href": explorer_href, "cell_ids": cell_ids, "class_groups": groups, "static_left": left,
            "mosaic_cells": static_mosaic(p.ex) if p.ex is not None else [],
            # without labels the explorer offers no colouring by true label, nor right or wrong
            "explorer_labelled": p.ex is not None and bool((np.asarray(p.ex.labels) >= 0).any())}


def single_parts(p: ExplorerPlan, env, common: dict, views) -> str:
    """Single-file mode: the explorer, every image page and every unit page as parts of index.html."""
    parts = []
    if p.ex is not None:
        parts.append(env.get_template("partials/explorer_body.html").render({**common, "root": "", "hbase": 2}))
        tpl = env.get_template("partials/image_body.html")
        parts.append('<section class="section" id="images" aria-label="A page per image">')
        parts += [squeeze(tpl.render({**common, **ctx, "root": "", "h": 2})) for ctx in image_pages(p, views, True)]
        parts.append("</section>")
    tpl = env.get_template("partials/unit_body.html")
    units = unit_pages(p)
    if units:
        parts.append('<section class="section" id="units" aria-label="A page per unit">')
        parts += [squeeze(tpl.render({**common, **ctx, "root": "", "h": 2})) for ctx in units]
        parts.append("</section>")
    return "\n".join(parts)


def css_for(p: ExplorerPlan) -> str:
    if not p.active:
        return ""
    note = (f"html:not(.js) #rg-more::before{{content:\"With scripts off, this report of over {COMPACT_ABOVE:,} "
            "images leaves out each page's top predictions and nearest neighbours, which its script draws from one "
            "shared file to keep the pages small. The explorer page's mosaic and class lists link every image.\"}"
            if p.compact else "")
    return explorer_css() + p.sprite_css + note


__all__ = ["Path", "attr_value", "cell_ids", "csp_hash", "css_for", "plan", "template_globals", "write_pages"]
