"""Small matplotlib plots of optimisation histories (objective per step) for report sections."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..pictures import figure_to_png
from ..report import ImageData


def history_plot(series: Mapping[str, np.ndarray], title: str = "", ylabel: str = "objective",
                 xlabel: str = "step", boundaries: Sequence[int] = (), width: float = 4.2,
                 height: float = 2.6) -> ImageData:
    """One line per series (1-D arrays, one value per step); ``boundaries`` draws vertical lines
    (e.g. where a new octave starts)."""
    from matplotlib.figure import Figure  # no pyplot: independent of the interactive backend

    outside = len(series) > 4  # many curves: the legend goes beside the axes, not over the lines
    if outside:
        width += 1.9
    fig = Figure(figsize=(width, height))
    ax = fig.add_subplot(1, 1, 1)
    for label, y in series.items():
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        ax.plot(np.arange(len(y)), y, label=label, linewidth=1.4)
    for b in boundaries:
        ax.axvline(b, color="0.7", linewidth=0.8, linestyle="--")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if outside:
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    elif len(series) > 1:
        ax.legend(fontsize=7, framealpha=0.85)
    fig.tight_layout()
    img = figure_to_png(fig)
    img.display_width = int(width * 100)
    return img
