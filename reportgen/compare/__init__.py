"""Two models side by side: ``reportgen compare`` and :func:`compare_reports`."""

from .cka import linear_cka
from .paired import PAIRED
from .run import compare_reports

__all__ = ["compare_reports", "linear_cka", "PAIRED"]
