"""Reliability diagrams (Guo et al. 2017, figure 1): per confidence bin, the accuracy as a bar, the gap to the
bin's mean confidence shaded, and the diagonal a perfectly calibrated model would follow. matplotlib only."""

from __future__ import annotations

import numpy as np

from ..pictures import figure_to_png, new_figure
from ..report import ImageData
from .metrics import Calibration


def draw_reliability(ax, cal: Calibration, title: str, after: Calibration | None = None,
                     after_label: str = "after temperature scaling") -> None:
    """Bars: accuracy per non-empty bin; red: the gap to the bin's mean confidence (bars below the diagonal are
    over-confidence). ``after``: another binning of the same images drawn as a line (e.g. after scaling)."""
    ok = cal.counts > 0
    left, width = cal.edges[:-1], np.diff(cal.edges)
    ax.bar(left[ok], cal.accuracy[ok], width=width[ok], align="edge", edgecolor="k", lw=0.6, color="#4c72b0",
           alpha=0.85, label="accuracy")
    gap = cal.confidence[ok] - cal.accuracy[ok]
    ax.bar(left[ok], gap, bottom=cal.accuracy[ok], width=width[ok], align="edge", color="#dd4444", alpha=0.35,
           edgecolor="#aa2222", lw=0.6, hatch="//", label="gap to confidence")
    if after is not None:
        k = after.counts > 0
        ax.plot(after.confidence[k], after.accuracy[k], "o", color="#ee8800", ms=5, mec="k", mew=0.5, clip_on=False,
                label=after_label + " (one dot per bin)")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("confidence (top-1 probability)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)


def reliability_png(panels: list[tuple[Calibration, str, Calibration | None]], ylabel: str = "accuracy in the bin",
                    after_label: str = "after temperature scaling") -> ImageData:
    """One row of reliability diagrams, one per ``(calibration, title, after or None)``, as a PNG."""
    fig = new_figure((4 * len(panels), 3.8))
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    for ax, (cal, title, after) in zip(axes, panels):
        draw_reliability(ax, cal, title, after, after_label)
    axes[0].set_ylabel(ylabel)
    seen: dict = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, h)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=len(seen), fontsize=7, frameon=False)
    return figure_to_png(fig)


__all__ = ["draw_reliability", "reliability_png"]
