"""What changed between two models on the same images: flipped predictions, per-class accuracy with a
confusion difference matrix, and calibration (reliability diagrams and ECE, Guo et al. 2017).

Inputs are plain arrays: softmax probabilities of A and B (N x K, same images, same class order) and
the labels (N, -1 where unknown). Everything returns neutral report sections.
"""

from __future__ import annotations

import numpy as np

from ..calibration.diagram import reliability_png
from ..calibration.metrics import ECE_BINS, calibration
from ..pictures import figure_to_png, new_figure
from ..papers import GUO_2017
from ..report import Figure, Grid, GridItem, ImageData, KeyValues, Note, Section, Table, Tone


def confusion(labels: np.ndarray, preds: np.ndarray, k: int) -> np.ndarray:
    """k x k counts, rows = true class, columns = predicted class."""
    return np.bincount(labels * k + preds, minlength=k * k).reshape(k, k)


def flipped_section(images, names: tuple[str, str], class_names, pa, pb, labels, max_items: int = 48) -> Section:
    a, b = pa.argmax(1), pb.argmax(1)
    idx = np.flatnonzero(a != b)
    known = labels >= 0
    # largest change first: how much B moved away from A's choice
    order = idx[np.argsort(-(pa[idx, a[idx]] - pb[idx, a[idx]]), kind="stable")]
    items: list[GridItem] = []
    fixed = broke = 0
    for i in order:
        i = int(i)
        lab = int(labels[i])
        tone: Tone = ""
        if lab >= 0:
            fixed += int(b[i] == lab)
            broke += int(a[i] == lab)
            tone = "ok" if b[i] == lab else ("bad" if a[i] == lab else "")
        if len(items) >= max_items:
            continue
        sub = (f"{names[0]}: {class_names[a[i]]} ({pa[i, a[i]]:.2f}) -> {names[1]}: {class_names[b[i]]} "
               f"({pb[i, b[i]]:.2f})" + (f"; label {class_names[lab]}" if lab >= 0 else ""))
        items.append(GridItem(ImageData(images.thumbnail(i, 96)), label=images.name(i), sublabel=sub,
                              alt=f"{images.name(i)}: {sub}", tone=tone))
    sec = Section(id="flipped", title="Predictions that changed", references=[], summary=(
        f"The images on which {names[0]} and {names[1]} give different top-1 classes, with both models' accuracy "
        f"and how many mistakes {names[1]} fixed or made. Green tiles: {names[1]} is right where {names[0]} was "
        "wrong; red: the reverse."))
    n = len(labels)
    pairs = [("images", str(n)), ("predictions that differ", f"{len(idx)} ({len(idx) / max(1, n):.1%})")]
    if known.any():
        acc_a, acc_b = float((a == labels)[known].mean()), float((b == labels)[known].mean())
        pairs += [(f"accuracy {names[0]}", f"{acc_a:.1%}"), (f"accuracy {names[1]}", f"{acc_b:.1%}"),
                  (f"fixed by {names[1]} (was wrong, now right)", str(fixed)),
                  (f"broken by {names[1]} (was right, now wrong)", str(broke))]
    sec.add(KeyValues(pairs))
    if items:
        sec.add(Grid(items, columns=6, cell_width=96, caption=(
            f"Images whose top-1 class differs, largest drop in {names[0]}'s choice first"
            + (f" (the first {max_items} of {len(idx)})" if len(idx) > max_items else "")
            + ". Green: " + names[1] + " fixed it; red: " + names[1] + " broke it.")))
    else:
        sec.add(Note(f"No prediction changed: both models give the same top-1 class on all {n} images."))
    sec.results = {"images": n, "flipped": int(len(idx)), "fixed": fixed, "broken": broke,
                   "flipped_images": [images.name(int(i)) for i in order]}
    return sec


def per_class_section(names, class_names, pa, pb, labels) -> Section:
    sec = Section(id="per_class", title="Per-class accuracy and confusion difference", summary=(
        f"Accuracy of each class under {names[0]} and {names[1]}, and the difference of their confusion matrices: "
        "which classes gained or lost, and which confusions appeared or disappeared."))
    known = labels >= 0
    if not known.any():
        return sec.add(Note("The images have no labels (no class sub-folders), so accuracy cannot be compared.",
                            kind="warning"))
    k = pa.shape[1]
    y, a, b = labels[known], pa.argmax(1)[known], pb.argmax(1)[known]
    deltas: dict[str, float]
    rows, deltas = [], {}
    for c in np.unique(y):
        m = y == c
        da, db = float((a[m] == c).mean()), float((b[m] == c).mean())
        deltas[class_names[c]] = round(db - da, 4)
        rows.append([class_names[c], int(m.sum()), f"{da:.1%}", f"{db:.1%}", f"{100 * (db - da):+.1f}"])
    hl: dict[int, Tone] = {i: ("ok" if float(r[4]) > 0 else "bad") for i, r in enumerate(rows) if float(r[4]) != 0}
    sec.add(Table(["class", "images", f"accuracy {names[0]}", f"accuracy {names[1]}", "change (points)"], rows,
                  numeric=[1, 2, 3, 4], highlight=hl))
    diff = confusion(y, b, k) - confusion(y, a, k)
    sec.add(Figure(_diff_plot(diff, class_names, names), alt="confusion difference matrix", caption=(
        f"Confusion matrix of {names[1]} minus that of {names[0]} (rows: true class, columns: predicted; the numbers "
        f"are count differences). Blue: a gain for {names[1]} (more correct on the diagonal, fewer mistakes off "
        "it); red: a loss.")))
    worst = min(deltas, key=deltas.__getitem__)
    best = max(deltas, key=deltas.__getitem__)
    sec.add(Note(f"Largest gain: {best} ({100 * deltas[best]:+.1f} points); largest loss: {worst} "
                 f"({100 * deltas[worst]:+.1f} points)." if deltas[best] > 0 or deltas[worst] < 0
                 else "Per-class accuracy is identical for every class."))
    sec.results = {"accuracy_change": deltas, "confusion_difference": diff.tolist()}
    return sec


def _diff_plot(diff: np.ndarray, class_names, names) -> ImageData:
    k = len(diff)
    fig = new_figure((min(10, 2 + 0.5 * k), min(9, 1.6 + 0.45 * k)))
    ax = fig.subplots()
    signed = diff.astype(float).copy()
    np.fill_diagonal(signed, -np.diag(diff))  # gains blue everywhere
    m = max(1.0, float(np.abs(diff).max()))
    ax.imshow(-signed, cmap="RdBu", vmin=-m, vmax=m)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if diff[i, j]:
                    ax.text(j, i, f"{diff[i, j]:+d}", ha="center", va="center", fontsize=7)
    labels = [str(c)[:14] for c in class_names[:k]]
    ax.set_xticks(range(k), labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(k), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{names[1]} - {names[0]}", fontsize=9)
    fig.tight_layout()
    png = figure_to_png(fig)
    return png


def calibration_section(names, pa, pb, labels) -> Section:
    sec = Section(id="calibration", title="Calibration", references=[GUO_2017], summary=(
        f"Whether {names[0]}'s and {names[1]}'s confidences match how often they are right: reliability diagrams "
        "and the expected calibration error (ECE) of each; bars below the diagonal are over-confidence."))
    known = labels >= 0
    if not known.any():
        return sec.add(Note("The images have no labels, so calibration cannot be measured.", kind="warning"))
    cals = [calibration(p[known], labels[known]) for p in (pa, pb)]
    png = reliability_png([(cal, f"{name}: ECE {cal.ece:.3f}", None) for cal, name in zip(cals, names)])
    n = int(known.sum())
    sec.add(Figure(png, alt="reliability diagrams", caption=(
        f"Reliability diagrams over {n} labelled images, {ECE_BINS} equal-width confidence bins: bars below the "
        "diagonal mean over-confidence. ECE = sum over bins of (share of images) x |accuracy - confidence|.")))
    better = names[0] if cals[0].ece < cals[1].ece else names[1]
    gap = abs(cals[0].ece - cals[1].ece)
    text = (f"{better} is better calibrated (ECE {min(c.ece for c in cals):.3f} vs {max(c.ece for c in cals):.3f})."
            if gap >= 0.01 else
            f"Both models are about equally calibrated (ECE {cals[0].ece:.3f} vs {cals[1].ece:.3f}).")
    if n < 200:
        text += f" With {n} images the ECE is a rough estimate (a few images per bin)."
    sec.add(Note(text))
    sec.results = {"ece": {names[0]: round(cals[0].ece, 5), names[1]: round(cals[1].ece, 5)}, "bins": ECE_BINS,
                   "images": n}
    return sec


__all__ = ["calibration", "confusion", "flipped_section", "per_class_section", "calibration_section"]
