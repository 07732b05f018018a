"""The model card overview: architecture, input spec, predictions, accuracy and confusions.

Architecture: every leaf module with its type, output shape (from one forward pass on a
dummy batch) and parameter count. Predictions: ``softmax(f(x))`` top-5 for each image from the
shared feature pass. With labels (class sub-folders or file names): top-1 / top-5 accuracy
and the confusion matrix ``M[i, j] = #{images of class i predicted as j}``.

The failure sections' headline numbers (images that flip under the mildest corruption, the worst failure slice,
suspected label errors) open the report beside this card, in the overview's "Where it fails" card: the card runs
first and sections never read each other, so the renderer reads them from the finished report
(:mod:`reportgen.render.failures`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import numpy as np
import torch

from ..pictures import figure_to_png, new_figure
from ..inspection.hooks import hookable
from ..inspection.layers import describe_layers
from ..papers import ZEILER_FERGUS_2014
from ..results_schema import MISSING, Absent, result_type, to_json
from ..registry import Range, technique
from ..report import OVERVIEW, Grid, GridItem, Group, ImageData, KeyValues, Note, Section, Table, Tone

if TYPE_CHECKING:
    from ..context import Ctx

# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)


@result_type
class CardResults:
    labelled_images: Absent[int] = MISSING
    """(with labels) images with a true label"""
    top1_accuracy: Absent[float] = MISSING
    """(with labels) fraction of labelled images whose top-1 prediction is the label"""
    top5_accuracy: Absent[float] = MISSING
    """(with labels) fraction whose label is in the top 5"""
    confusion: Absent[list[list]] = MISSING
    """(with labels) sparse confusion matrix: [true class, predicted class, images] per non-zero cell"""
    model_class: str
    """class name of the model"""
    parameters: int
    """number of parameters"""
    trainable_parameters: int
    """parameters with requires_grad in the model as given (reportgen freezes them all only while it runs)"""
    input_size: int
    """side of the model input in pixels"""
    num_classes: int
    """number of classes"""
    images: int
    """images in the set"""
    mean_top1_probability: float | None
    """mean of each image's top softmax probability"""
    predicted_counts: dict[str, int]
    """{class name: images predicted as it} (classes predicted at least once)"""


RESULTS = CardResults  # report.json "results" of this section (docs/results.md is generated from it)


@dataclass
class CardOptions:
    gallery: Annotated[int, Range(ge=0)] = 48
    """Images shown with their prediction in the gallery."""
    max_confusion_classes: Annotated[int, Range(ge=0)] = 20
    """Draw the confusion matrix when at most this many classes occur; else list the top confusions."""
    all_layers: bool = False
    """List container modules too, not only leaf layers."""


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def _trainable_text(total: int, trainable: int) -> str:
    """How many parameters the model as given marks trainable (reportgen freezes them all while it runs)."""
    if trainable == total:
        return "all trainable"
    if trainable == 0:
        return "none trainable: frozen in the model as given"
    return f"{_fmt_int(trainable)} trainable"


@dataclass(frozen=True)
class CardResult:
    """What the card shows; :meth:`results` is its report.json entry."""

    model_class: str
    total: int  # parameters
    trainable: int  # parameters trainable in the model as given
    layers: list  # inspection.layers.LayerInfo, containers included
    notes: tuple[str, ...]  # the loader's notes on the model
    probs: np.ndarray  # N x K softmax
    preds: np.ndarray  # N
    top5: np.ndarray  # N x min(5, K) class indices, most probable first
    labels: np.ndarray  # N, -1 = unknown
    accuracy: tuple[float, float] | None  # (top-1, top-5) on the labelled images; None without labels
    picks: np.ndarray  # images shown in the gallery

    @property
    def known(self) -> np.ndarray:
        return self.labels >= 0

    def results(self, ctx: Ctx) -> CardResults:
        labelled: dict = {}
        if self.accuracy is not None:
            known = self.known
            present, m = confusion_matrix(self.labels[known], self.preds[known])
            labelled = dict(
                labelled_images=int(known.sum()), top1_accuracy=round(self.accuracy[0], 4),
                top5_accuracy=round(self.accuracy[1], 4),
                # sparse confusion counts [true, predicted, images] (class names), correct cells included
                confusion=[[ctx.class_name(int(present[i])), ctx.class_name(int(present[j])), int(m[i, j])]
                           for i, j in zip(*np.nonzero(m))],
            )
        counts = np.bincount(self.preds, minlength=ctx.num_classes)
        return CardResults(
            **labelled, model_class=self.model_class, parameters=int(self.total),
            trainable_parameters=int(self.trainable), input_size=int(ctx.pre.size),
            num_classes=int(ctx.num_classes), images=int(len(ctx.images)),
            mean_top1_probability=round(float(self.probs.max(1).mean()), 4) if len(self.probs) else None,
            predicted_counts={ctx.class_name(int(c)): int(counts[c]) for c in np.flatnonzero(counts)},
        )


def compute_card(ctx: Ctx, opts: CardOptions) -> CardResult:
    """The layers (output shapes from one pass on a dummy batch), parameter counts, predictions and accuracy."""
    model = ctx.model
    example = torch.zeros(1, 3, ctx.pre.size, ctx.pre.size, device=ctx.device)
    # output shapes need forward hooks; TorchScript archives refuse them (names and parameters still show)
    layers = describe_layers(model, ctx.pre.normalizer().to(ctx.device)(example) if hookable(model) else None)
    total = sum(p.numel() for p in model.parameters())
    trainable = int(ctx.model_info.get("trainable_parameters", total))  # as given, not frozen by reportgen's policy
    notes = tuple(str(note) for note in ctx.model_info.get("notes", []) or [])
    feats = ctx.features()
    probs, preds = feats.probs, feats.preds
    top5 = np.argsort(-probs, axis=1)[:, :5]
    labels = ctx.images.labels
    known = labels >= 0
    accuracy = None
    if known.any():
        kl = labels[known]
        accuracy = (float((preds[known] == kl).mean()),
                    float(np.mean([kl[i] in top5[known][i] for i in range(len(kl))])))
    n = min(opts.gallery, len(ctx.images))
    # an evenly spread, deterministic sample (folders are sorted by class: the first n would be one class)
    picks = np.unique(np.linspace(0, len(ctx.images) - 1, n).round().astype(int))
    return CardResult(type(model).__name__, total, trainable, layers, notes, probs, preds, top5, labels, accuracy,
                      picks)


def _gallery(ctx: Ctx, res: CardResult) -> Grid:
    probs, preds, labels = res.probs, res.preds, res.labels
    items = []
    for i in res.picks:
        i = int(i)
        p = int(preds[i])
        tone: Tone = ""
        if labels[i] >= 0:
            tone = "ok" if p == labels[i] else "bad"
        sub = f"{ctx.class_name(p)} {probs[i, p]:.2f}"
        if labels[i] >= 0 and p != labels[i]:
            sub += f" (true: {ctx.class_name(int(labels[i]))})"
        items.append(GridItem(ImageData(ctx.images.thumbnail(i, 128)), label=ctx.images.name(i), sublabel=sub,
                              alt=f"{ctx.images.name(i)} predicted {ctx.class_name(p)}", tone=tone))
    return Grid(items, columns=8, cell_width=112, title="Predictions",
                caption=f"{len(res.picks)} of {len(ctx.images)} images, evenly spread over the set, "
                        "with their top-1 prediction and probability"
                        + (" (green: correct, red: wrong)." if res.known.any() else "."))


def _top5_table(ctx: Ctx, res: CardResult) -> Group:
    probs, preds, labels, top5, known = res.probs, res.preds, res.labels, res.top5, res.known
    rows: list[list[str]] = []
    highlight: dict[int, Tone] = {}
    for i in range(len(ctx.images)):
        row = [ctx.images.name(i)]
        if known.any():
            row.append(ctx.class_name(int(labels[i])) if labels[i] >= 0 else "")
        row += [f"{ctx.class_name(int(k))} ({probs[i, k]:.3f})" for k in top5[i]]
        if labels[i] >= 0 and preds[i] != labels[i]:
            highlight[len(rows)] = "bad"
        rows.append(row)
    cols = ["image"] + (["label"] if known.any() else []) + [f"top-{k + 1}" for k in range(top5.shape[1])]
    return Group("Top-5 predictions per image",
                 [Table(cols, rows, caption="Softmax probabilities in brackets; misclassified rows are marked.",
                        highlight=highlight)])


def present_card(sec: Section, ctx: Ctx, res: CardResult, opts: CardOptions) -> None:
    """Adds the blocks of a :class:`CardResult` to ``sec``."""
    layers, total = res.layers, res.total
    n_conv = sum(1 for li in layers if li.type in ("Conv2d", "Conv1d", "Conv3d"))
    pairs = [
        ("class", res.model_class),
        ("parameters", f"{_fmt_int(total)} ({_trainable_text(total, res.trainable)})"),
        ("layers", f"{len([li for li in layers if li.is_leaf])} leaf modules, {n_conv} convolutions"),
        ("input", f"3 x {ctx.pre.size} x {ctx.pre.size}, {ctx.num_classes} classes"),
    ]
    pairs += [("note", note) for note in res.notes]
    sec.add(KeyValues(pairs, title="Model"))
    if res.accuracy is not None:
        acc1, acc5 = res.accuracy
        sec.add(KeyValues([("labelled images", str(int(res.known.sum()))), ("top-1 accuracy", f"{acc1:.3f}"),
                           ("top-5 accuracy", f"{acc5:.3f}")], title="Accuracy on this image set"))
        _confusion(sec, ctx, res.labels[res.known], res.preds[res.known], opts)
    sec.add(_gallery(ctx, res), _top5_table(ctx, res))
    arch_rows = []
    for li in layers:
        if not opts.all_layers and not li.is_leaf:
            continue
        shape = " x ".join(str(s) for s in li.output_shape) if li.output_shape else "—"
        arch_rows.append([li.name, li.type, shape, _fmt_int(li.params)])
    sec.add(Group("Architecture", [Table(["layer", "type", "output shape", "parameters"], arch_rows, numeric=[3],
                                         caption=f"{len(arch_rows)} layers (dotted names as accepted by --layer); "
                                                 f"{_fmt_int(total)} parameters in total.")]))


@technique(
    "card", "Model card", role="overview", options=CardOptions, order=0,
    references=[ZEILER_FERGUS_2014],
    presets={"minimal": {"gallery": 8}, "full": {"gallery": 96}},
)
def card(ctx: Ctx, opts: CardOptions) -> Section:
    """What was analysed: the architecture layer by layer, the input the model expects, and what it predicts on this
    image set. With labelled images it also reports accuracy and which classes it confuses."""
    sec = Section(id="card", title="Model card", placement=OVERVIEW)  # its figures also open the report
    res = compute_card(ctx, opts)
    present_card(sec, ctx, res, opts)
    sec.params["num_parameters"] = res.total
    sec.results = to_json(res.results(ctx))
    return sec


def confusion_matrix(labels: np.ndarray, preds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(classes present, M) with ``M[i, j]`` = images of class ``present[i]`` predicted as ``present[j]``."""
    present = np.unique(np.concatenate([labels, preds]))
    idx = {int(c): k for k, c in enumerate(present)}
    m = np.zeros((len(present), len(present)), dtype=np.int64)
    for t, p in zip(labels, preds):
        m[idx[int(t)], idx[int(p)]] += 1
    return present, m


def _confusion(sec: Section, ctx: Ctx, labels: np.ndarray, preds: np.ndarray, opts: CardOptions) -> None:
    present, m = confusion_matrix(labels, preds)
    if len(present) <= opts.max_confusion_classes:
        names = [ctx.class_name(int(c)) for c in present]
        size = max(4.0, 0.45 * len(present) + 2)
        fig = new_figure((size, size))
        ax = fig.subplots()
        ax.imshow(m, cmap="Blues")
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        thresh = m.max() / 2 if m.max() else 1
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if m[i, j]:
                    ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if m[i, j] > thresh else "black")
        ax.set_title("Confusion matrix")
        from ..report import Figure

        sec.add(Figure(figure_to_png(fig), caption="Rows: true class; columns: predicted class; counts of images.",
                       alt="confusion matrix of true versus predicted classes"))
    else:
        pairs: dict[tuple[int, int], int] = {}
        for t, p in zip(labels, preds):
            if t != p:
                pairs[(int(t), int(p))] = pairs.get((int(t), int(p)), 0) + 1
        top = sorted(pairs.items(), key=lambda kv: -kv[1])[:20]
        if top:
            caption = f"{len(present)} classes occur, too many for a readable confusion matrix."
            repeated = sum(1 for n in pairs.values() if n > 1)
            if not repeated:  # a ranking of ties says nothing: say so rather than call them "most frequent"
                caption += (f" No confusion occurs more than once ({len(pairs)} distinct ones), so these are the "
                            f"first {len(top)} in the order of the image set, not a ranking.")
            sec.add(Table(["true class", "predicted as", "images"],
                          [[ctx.class_name(t), ctx.class_name(p), n] for (t, p), n in top], numeric=[2],
                          title="Most frequent confusions" if repeated else "Confusions",
                          caption=caption))
        else:
            sec.add(Note("No labelled image is misclassified."))
