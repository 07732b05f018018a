"""Each key number's change against a baseline, judged against its noise.

Accuracies and recalls: when both runs saw the same images (the same multiset of content hashes in their
stored predictions) the change is *paired*: McNemar's exact test on the images right in one run only
(:func:`~.stats.mcnemar_exact`), beyond noise when p < alpha; otherwise *unpaired*: Newcombe's interval of
the difference of two proportions, beyond noise when it excludes 0. Per-class recalls are many tests at
once, so their alpha is divided by the number of classes (Bonferroni). Faithfulness: a paired bootstrap of
the per-image differences when both runs scored the same images, else the two runs' bootstrap intervals
combined. Sanity verdicts: a method that passed and now fails is worse (a verdict has no noise). Numbers
without an interval (calibration, drift) show their change, unjudged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Any

import numpy as np

from .keys import Key, Predictions, key_numbers, predictions
from .stats import combined_interval, mcnemar_exact, newcombe, paired_bootstrap, paired_diff_interval


#: fewer images than this: a score's change is shown, not judged (a bootstrap over a handful of images is no
#: noise estimate)
MIN_IMAGES = 5


@dataclass(frozen=True)
class Change:
    """``new`` against ``old``: the difference, its interval or p-value, how it was judged and the verdict."""

    name: str
    old: Key
    new: Key
    delta: float | None
    ci: tuple[float, float] | None
    p: float | None
    how: str
    beyond_noise: bool | None  # None: no interval to judge by
    worse: bool | None  # None: no change (or no direction)

    def describe(self) -> str:
        """``0.81 -> 0.74 (-0.07, beyond noise: McNemar p = 0.003, paired on 300 images)``."""
        head = f"{fmt(self.old.value)} -> {fmt(self.new.value)}"
        if self.delta is None:
            return head
        judged = {True: "beyond noise", False: "within noise", None: "not judged"}[self.beyond_noise]
        return f"{head} ({self.delta:+.3g}, {judged}: {self.how})"


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
    return "—" if v is None else str(v)


def pairing(new: Predictions | None, old: Predictions | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Indices (old, new) that put the same images side by side, or None when the image sets differ."""
    if new is None or old is None or sorted(new.sha256) != sorted(old.sha256):
        return None
    return np.argsort(old.sha256, kind="stable"), np.argsort(new.sha256, kind="stable")


def _worse(delta: float, better: str) -> bool | None:
    if delta == 0:
        return None
    return delta < 0 if better == "higher" else delta > 0


def _proportion(old: Key, new: Key, po: Predictions | None, pn: Predictions | None,
                pair: tuple[np.ndarray, np.ndarray] | None, alpha: float) -> Change:
    assert old.k is not None and new.k is not None and old.n and new.n
    if pair is not None and po is not None and pn is not None:
        io, inew = pair
        lo, ln = po.label[io], pn.label[inew]
        mask = (lo >= 0) & (ln >= 0) & (lo == ln)
        if new.family == "per_class_recall":
            cls = new.name.split(".", 1)[1]
            idx = pn.class_names.index(cls) if cls in pn.class_names else -2
            mask &= ln == idx
        if new.family == "top5":
            co, cn = po.top5[io] == 1, pn.top5[inew] == 1
        else:
            co, cn = po.pred[io] == lo, pn.pred[inew] == ln
        n = int(mask.sum())
        if n:
            b, c = int((co & ~cn & mask).sum()), int((~co & cn & mask).sum())
            p = mcnemar_exact(b, c)
            d = (c - b) / n
            pt = f"= {p:.2g}" if p >= 1e-4 else "< 0.0001"
            return Change(new.name, old, new, d, paired_diff_interval(b, c, n), p,
                          f"McNemar p {pt}, paired on {n} image{'s' * (n != 1)}", p < alpha, _worse(d, "higher"))
    z = NormalDist().inv_cdf(1 - alpha / 2)
    ci = newcombe(old.k, old.n, new.k, new.n, z)
    d = new.k / new.n - old.k / old.n
    beyond = ci is not None and (ci[0] > 0 or ci[1] < 0)
    return Change(new.name, old, new, d, ci, None, "Newcombe interval, different image sets: unpaired", beyond,
                  _worse(d, "higher"))


def _score(old: Key, new: Key) -> Change:
    assert isinstance(old.value, float) and isinstance(new.value, float)
    d = new.value - old.value
    n = min(old.n or 0, new.n or 0)
    if (old.ci or old.per_image) and n < MIN_IMAGES:  # a bootstrap over 2 images says nothing
        return Change(new.name, old, new, d, None, None, f"too few images to judge (n = {n} < {MIN_IMAGES})", None,
                      _worse(d, new.better))
    if old.per_image and new.per_image and old.images and old.images == new.images:
        ci = paired_bootstrap([a - b for a, b in zip(new.per_image, old.per_image)])
        how = f"bootstrap, paired on {len(new.per_image)} images"
    else:
        ci = combined_interval(d, old.ci, new.ci)
        how = "the two runs' intervals combined, unpaired"
    if ci is None:
        return Change(new.name, old, new, d, None, None, "no interval", None, _worse(d, new.better))
    return Change(new.name, old, new, d, ci, None, how, ci[0] > 0 or ci[1] < 0, _worse(d, new.better))


def change(old: Key, new: Key, po: Predictions | None = None, pn: Predictions | None = None,
           pair: tuple[np.ndarray, np.ndarray] | None = None, alpha: float = 0.05) -> Change:
    """The change of one key number."""
    if new.better == "pass":
        was, now = old.value == "passes", new.value == "passes"
        worse = None if was == now else was and not now
        return Change(new.name, old, new, None, None, None, "verdict", worse is not None, worse)
    if new.k is not None and old.k is not None and new.n and old.n:
        return _proportion(old, new, po, pn, pair, alpha)
    if isinstance(old.value, float) and isinstance(new.value, float):
        return _score(old, new)
    return Change(new.name, old, new, None, None, None, "not comparable", None, None)


def compare_reports(new_report: dict[str, Any], old_report: dict[str, Any], *, new_model: str | None = None,
                    old_model: str | None = None, alpha: float = 0.05) -> tuple[dict[str, Change], str]:
    """Every key number the two reports share, with its change; and how the images were paired."""
    new_keys, old_keys = key_numbers(new_report, new_model), key_numbers(old_report, old_model)
    pn, po = predictions(new_report, new_model or _last(new_report)), predictions(old_report, old_model or
                                                                                   _last(old_report))
    pair = pairing(pn, po)
    shared = [k for k in new_keys if k in old_keys]
    classes = sum(1 for k in shared if new_keys[k].family == "per_class_recall")
    out = {}
    for name in shared:
        a = alpha / classes if new_keys[name].family == "per_class_recall" and classes else alpha
        out[name] = change(old_keys[name], new_keys[name], po, pn, pair, a)
        if a != alpha and out[name].p is not None:  # say the corrected level where it decides
            out[name] = replace(out[name], how=f"{out[name].how}; Bonferroni alpha {a:.2g} over {classes} classes")
    if pair is not None:
        how = f"paired on {len(pair[0])} images"
    elif pn is None or po is None:
        how = "unpaired (a report without stored per-image predictions)"
    else:
        how = f"different image sets: unpaired ({len(po.sha256)} vs {len(pn.sha256)} images)"
    return out, how


def _last(report: dict[str, Any]) -> str | None:
    models = list(report.get("models") or {}) if report.get("kind") == "compare" else []
    return models[-1] if models else None


__all__ = ["Change", "change", "compare_reports", "pairing", "fmt"]
