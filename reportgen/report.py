"""The neutral report tree: report -> sections -> blocks (figures, grids, tables, notes).

Techniques build these plain dataclasses from numpy arrays and strings; the renderer
(:mod:`reportgen.render`) turns them into HTML. Nothing here imports torch, so a tree can be
pickled into the cache and re-rendered with another theme without recomputation.

Images are ``numpy.uint8`` arrays, ``HxW`` (greyscale), ``HxWx3`` (RGB) or ``HxWx4`` (RGBA),
or already-encoded PNG/SVG bytes (matplotlib plots, see :func:`reportgen.pictures.figure_to_png`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal, Union

import numpy as np

#: a Note's kind (the renderer's title and colour): written once here
NoteKind = Literal["info", "warning", "error"]
#: a grid item's or table row's tone (a CSS class hint); "" for none
Tone = Literal["", "ok", "bad", "warn", "muted"]
#: where a section's blocks appear: its own page, or also on the report's front page
Placement = Literal["page", "overview"]
#: a report's run kind: None for a model report, "compare" for two models side by side
RunKind = Literal["compare"]


def plural(n: int | float, word: str, many: str | None = None) -> str:
    """``n`` with ``word`` in the number it takes: '1 step', '2 steps', '0 steps' (``many`` for irregular plurals:
    ``plural(n, "query", "queries")``); integers get thousands separators. Every count in a caption or a log line
    is written with it."""
    count = f"{n:,}" if isinstance(n, (int, np.integer)) else f"{n:g}"
    return f"{count} {word if n == 1 else (many or word + 's')}"


@dataclass
class Reference:
    """A paper a section cites."""

    authors: str
    title: str
    venue: str
    year: int
    url: str = ""

    def short(self) -> str:
        """``Zeiler & Fergus (2014)``, ``Simonyan et al. (2014)``."""
        names = [n.strip() for n in self.authors.replace(" and ", ", ").split(",") if n.strip()]
        surnames = [n.split()[-1] for n in names] or [self.authors]
        if len(surnames) == 1:
            who = surnames[0]
        elif len(surnames) == 2:
            who = f"{surnames[0]} & {surnames[1]}"
        else:
            who = f"{surnames[0]} et al."
        return f"{who} ({self.year})"


@dataclass
class ImageData:
    """One picture. ``array`` is uint8 HxW / HxWx3 / HxWx4; or ``data`` holds encoded bytes.

    ``pixelated`` asks the renderer to upscale with nearest-neighbour (small filters, activations)
    instead of smoothing. ``display_width`` is the CSS width in pixels the picture should get
    (``None``: natural size, capped by the layout).
    """

    array: np.ndarray | None = None
    data: bytes | None = None
    mime: str = "image/png"
    pixelated: bool = False
    display_width: int | None = None
    # the image of the set this picture shows or explains (ImageSet.image_id): the renderer links it to
    # that image's page (images/<id>.html) and lists it there; "" for pictures of no one image
    image_id: str = ""
    # the picture is that image itself (its thumbnail or display copy), not a map or crop of it: the image's page
    # names the section it appears in but does not show the picture again
    whole: bool = False

    def __post_init__(self) -> None:
        if self.array is None and self.data is None:
            raise ValueError("ImageData needs an array or encoded bytes")
        if self.array is not None:
            a = np.asarray(self.array)
            if a.dtype != np.uint8:
                raise TypeError(f"ImageData arrays must be uint8, got {a.dtype}; use pictures.to_uint8")
            if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
                raise ValueError(f"ImageData arrays must be HxW, HxWx3 or HxWx4, got shape {a.shape}")
            if a.ndim == 3 and a.shape[2] == 1:
                a = a[:, :, 0]
            self.array = np.ascontiguousarray(a)

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) in pixels when known."""
        if self.array is not None:
            return int(self.array.shape[1]), int(self.array.shape[0])
        return None


@dataclass
class Figure:
    """A single picture with a caption and alt text."""

    image: ImageData
    caption: str = ""
    alt: str = ""
    title: str = ""


@dataclass
class GridItem:
    image: ImageData
    label: str = ""
    sublabel: str = ""
    alt: str = ""
    # Optional CSS class hint for the renderer: "ok", "bad" (e.g. a wrong prediction).
    tone: Tone = ""


@dataclass
class Grid:
    """A grid of small labelled images (filters, activation channels, neighbours...)."""

    items: list[GridItem]
    columns: int | None = None
    title: str = ""
    caption: str = ""
    # Width in CSS px of each cell's image; None lets the renderer pick from image size.
    cell_width: int | None = None


@dataclass
class Table:
    """A table of plain values (str, int, float). ``numeric`` columns are right-aligned."""

    columns: list[str]
    rows: list[list[Any]]
    title: str = ""
    caption: str = ""
    numeric: list[int] = field(default_factory=list)
    # Rows in ``highlight`` get a tone class (e.g. misclassified images).
    highlight: dict[int, Tone] = field(default_factory=dict)


@dataclass
class Note:
    """A paragraph of prose. ``kind`` is one of info, warning, error."""

    text: str
    kind: NoteKind = "info"


@dataclass
class KeyValues:
    """A definition list: ``[(key, value), ...]``."""

    pairs: list[tuple[str, str]]
    title: str = ""


@dataclass
class Row:
    """Blocks shown side by side (wrapping on narrow screens)."""

    blocks: list["Block"]
    title: str = ""
    caption: str = ""


@dataclass
class Group:
    """A titled sub-section of blocks."""

    title: str
    blocks: list["Block"]
    description: str = ""


@dataclass
class Explorer:
    """Every image of the set, for the interactive explorer (explorer.html), a page per image (images/<id>.html)
    and the search index. Columns hold one row per image, in the image set's order.

    ``xy`` are the 2-D positions (NaN rows: not embedded); ``sprites`` are sheets of ``thumb``-pixel thumbnails,
    ``sheet`` x ``sheet`` per sheet, row-major in image order; ``feature_nn`` / ``pixel_nn`` hold row numbers of
    each image's nearest neighbours (-1: none). ``mosaic`` with ``mosaic_cells`` (row, grid row, grid column per
    placed image, ``mosaic_grid`` cells a side) is the static t-SNE mosaic the page shows without scripts.
    """

    ids: list[str]
    names: list[str]
    labels: np.ndarray  # N int, -1 where unknown
    topk: np.ndarray  # N x K int class indices, most probable first
    topk_p: np.ndarray  # N x K float softmax probabilities
    class_names: list[str]
    xy: np.ndarray | None = None
    sprites: list[ImageData] = field(default_factory=list)
    thumb: int = 32
    sheet: int = 32
    feature_nn: np.ndarray | None = None
    pixel_nn: np.ndarray | None = None
    method: str = ""
    mosaic: ImageData | None = None
    mosaic_cells: np.ndarray | None = None
    mosaic_grid: int = 0
    caption: str = ""


@dataclass
class Unit:
    """One channel of an inspected layer: its statistics over the set and its top images (best first)."""

    channel: int
    mean: float
    std: float
    peak: float
    top_ids: list[str]  # image ids of its top images
    top_values: list[float]
    top_classes: list[str]  # true label (else prediction) of each top image
    patches: list[ImageData] = field(default_factory=list)  # the unit's receptive field in each top image


@dataclass
class UnitSet:
    """A page per unit of ``layer`` (units/<layer>/<channel>.html), like OpenAI Microscope's neurons."""

    layer: str
    units: list[Unit]
    caption: str = ""


Block = Union[Figure, Grid, Table, Note, KeyValues, Row, Group, Explorer, UnitSet]


@dataclass
class Section:
    """One technique's output: a page of the report."""

    id: str
    title: str
    summary: str = ""  # two sentences: what it is and how to read the figures
    references: list[Reference] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    error: str | None = None  # set when the technique raised; blocks may be empty
    traceback: str | None = None
    wall_time_s: float = 0.0
    cached: bool = False
    params: dict[str, Any] = field(default_factory=dict)  # the options the technique ran with
    # key numbers for machines (report.json "results"): plain JSON types only, never pixel arrays
    results: dict[str, Any] = field(default_factory=dict)
    # where the renderer shows the blocks: PAGE (its own page) or OVERVIEW (also on the report's front page,
    # like the model card); the renderer reads this flag and never a section's id or title
    placement: Placement = "page"
    # numbers a later run reads back (e.g. the attribution maps explanation drift compares), as small numpy arrays
    # (numbers or strings): publish/ writes every section's arrays to arrays.npz beside report.json (embedded in a
    # single-file report) and lists them there; the renderer ignores them
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, *blocks: Block) -> "Section":
        self.blocks.extend(blocks)
        return self


@dataclass
class SkippedImage:
    path: str
    reason: str


PAGE: Placement = "page"
OVERVIEW: Placement = "overview"
PLACEMENTS: tuple[Placement, ...] = (PAGE, OVERVIEW)


@dataclass
class ImagesInfo:
    """The image set a run used."""

    folder: str = ""
    count: int = 0
    skipped: int = 0
    labels_from: str | None = None


@dataclass
class RunInfo:
    """What a report was computed from and how: the overview's facts and report.json's top-level keys.

    Every field is written to report.json (``None`` as ``null``) except those named in ``unrecorded``
    (a comparison has no single model hash, preprocessing or command line) and ``kind`` when ``None``.
    ``extra`` holds kind-specific keys (a comparison's ``models`` and ``accuracy``), written at the top level.
    """

    kind: RunKind | None = None  # None: a model report; "compare": two models side by side
    model: dict[str, Any] = field(default_factory=dict)  # spec, kind, weights, notes (published_model_info)
    model_hash: str | None = None
    num_classes: int | None = None
    preprocessing: dict[str, Any] | None = None
    preprocessing_text: str | None = None
    images: ImagesInfo | None = None
    config: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    theme: str | None = None
    generated: str | None = None
    command: str | None = None  # None: not run from the command line
    total_time_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    unrecorded: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """report.json's run keys: the recorded fields, then ``extra``."""
        skip = {"extra", "unrecorded", *self.unrecorded} | ({"kind"} if self.kind is None else set())
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name not in skip:
                v = getattr(self, f.name)
                out[f.name] = dict(vars(v)) if isinstance(v, ImagesInfo) else v
        for k, v in self.extra.items():
            out.setdefault(k, v)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunInfo":
        """The inverse of :meth:`to_dict` (report.json or an older pickled ``meta`` dict); unknown keys go to
        ``extra``, absent ones to ``unrecorded``, malformed values are dropped."""
        names = {f.name for f in fields(cls)} - {"extra", "unrecorded"}
        kw: dict[str, Any] = {k: v for k, v in data.items() if k in names}
        for k in ("model", "config", "versions", "preprocessing"):
            if k in kw and not isinstance(kw[k], dict):
                kw[k] = None if k == "preprocessing" else {}
        images = kw.pop("images", None)
        if isinstance(images, dict):
            known = {f.name for f in fields(ImagesInfo)}
            kw["images"] = ImagesInfo(**{k: v for k, v in images.items() if k in known})
        unrecorded = tuple(sorted(names - set(data) - {"kind"}))
        return cls(**kw, extra={k: v for k, v in data.items() if k not in names}, unrecorded=unrecorded)


@dataclass
class Report:
    """The whole report: its sections and the :class:`RunInfo` it was computed from."""

    title: str
    sections: list[Section]
    meta: RunInfo = field(default_factory=RunInfo)
    skipped_images: list[SkippedImage] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.meta, dict):  # a caller (or an older pickle) with the untyped form
            self.meta = RunInfo.from_dict(self.meta)

    @property
    def failed(self) -> list[Section]:
        return [s for s in self.sections if s.error]


def iter_images(blocks: list[Block]):
    """Yield every ImageData in a block list, depth first (renderer and report.json use it)."""
    for b in blocks:
        if isinstance(b, Figure):
            yield b.image
        elif isinstance(b, Grid):
            for it in b.items:
                yield it.image
        elif isinstance(b, (Row, Group)):
            yield from iter_images(b.blocks)
        elif isinstance(b, Explorer):
            yield from b.sprites
            if b.mosaic is not None:
                yield b.mosaic
        elif isinstance(b, UnitSet):
            for u in b.units:
                yield from u.patches
