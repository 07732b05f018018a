"""Key numbers of a report, read from its ``report.json`` (no torch, no model): what a review compares.

Each :class:`Key` is one number (or verdict) with its count ``n`` and, where the data allow, a 95% noise
interval: a Wilson interval for accuracies and recalls, the faithfulness table's bootstrap interval over
images for a method's insertion-minus-deletion score against the random map. Names (the ``metric`` of a rule,
docs/review.md lists them):

- ``top1``, ``top5`` — accuracy on the labelled images; ``per_class_recall.<class>`` — recall of one class;
- ``faithfulness.<method>`` — insertion − deletion AUC of the method minus that of the random map;
- ``sanity.<method>`` — the sanity checks' verdict (``passes`` or what failed);
- ``ece``, ``ece_equal_mass``, ``nll``, ``brier``, ``ece_after_temperature``, ``per_class_ece.<class>`` —
  calibration (when the report has a ``calibration`` section; lower is better);
- ``drift.<method>`` — explanation drift's mean rank correlation with the other run's maps (``drift`` section).

A comparison report holds two models: ``model`` names which one (default: the second, the candidate).
Every build also stores its per-image predictions (:func:`predictions_record`) so that a later review can pair
images by content hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .stats import wilson

CALIBRATION_KEYS = ("ece", "ece_equal_mass", "nll", "brier", "ece_after_temperature")
RANDOM_ROW = "random map (baseline)"
#: metric families: a rule on the family applies to each member (``faithfulness`` = every method)
FAMILIES = ("top1", "top5", "per_class_recall", "faithfulness", "sanity", *CALIBRATION_KEYS, "per_class_ece",
            "drift")


@dataclass(frozen=True)
class Key:
    """One key number: ``value`` (a float, or a verdict string for ``sanity``), its count and interval."""

    name: str
    family: str
    label: str
    value: float | str | None
    n: int | None = None
    ci: tuple[float, float] | None = None
    better: str = "higher"  # "higher", "lower" or "pass" (a verdict: "passes" is good)
    k: int | None = None  # successes of a proportion
    page: str | None = None  # the report page that shows it
    per_image: tuple[float, ...] | None = None  # per-image values (faithfulness) for a paired bootstrap
    images: tuple[str, ...] | None = None  # the images those values belong to


@dataclass(frozen=True)
class Predictions:
    """Per-image predictions stored in report.json: content hashes, labels (-1 unknown), top-1, top-5 hit."""

    sha256: list[str]
    label: np.ndarray
    pred: np.ndarray
    top5: np.ndarray
    class_names: list[str]


def predictions_record(shas: list[str], labels: np.ndarray, probs: np.ndarray,
                       class_names: list[str]) -> dict[str, Any]:
    """The compact per-image table stored as ``report.json["predictions"]``: the first 16 hex digits of each
    image's SHA-256, its label (-1: none), top-1 prediction and whether the label is in the top 5."""
    probs = np.asarray(probs)
    labels = np.asarray(labels, dtype=int)
    pred = probs.argmax(1) if len(probs) else np.zeros(0, int)
    k = min(5, probs.shape[1]) if probs.ndim == 2 else 1
    top = np.argpartition(-probs, k - 1, axis=1)[:, :k] if len(probs) else np.zeros((0, k), int)
    hit = [(int(y in row) if y >= 0 else 0) for y, row in zip(labels, top)]
    return {"sha256": [s[:16] for s in shas], "label": labels.tolist(), "pred": pred.astype(int).tolist(),
            "top5": hit, "class_names": list(class_names)}


def models_of(report: dict[str, Any]) -> list[str]:
    """A comparison's model names (A, B), [] for a build."""
    return list(report.get("models") or {}) if report.get("kind") == "compare" else []


def predictions(report: dict[str, Any], model: str | None = None) -> Predictions | None:
    """The stored per-image predictions of the report (a comparison: of ``model``), or None."""
    rec = report.get("predictions")
    if not isinstance(rec, dict) or "sha256" not in rec:
        return None
    own = rec.get("models", {}).get(model) if model and isinstance(rec.get("models"), dict) else rec
    if not isinstance(own, dict) or "pred" not in own:
        return None
    return Predictions(list(rec["sha256"]), np.asarray(rec["label"], int), np.asarray(own["pred"], int),
                       np.asarray(own.get("top5", [0] * len(rec["sha256"])), int), list(rec.get("class_names", [])))


def _pick(v: Any, model: str | None) -> Any:
    """A comparison keys per-model values by model name; a build does not."""
    if model and isinstance(v, dict) and model in v:
        return v[model]
    return v


def _sections(report: dict[str, Any], model: str | None) -> dict[str, tuple[dict[str, Any], str | None]]:
    out: dict[str, tuple[dict[str, Any], str | None]] = {}
    for s in report.get("sections") or []:
        if isinstance(s, dict) and not s.get("error") and isinstance(s.get("results"), dict):
            out[str(s.get("id"))] = (_pick(s["results"], model), s.get("page"))
    return out


def _proportion(name: str, family: str, label: str, k: int, n: int, page: str | None) -> Key:
    return Key(name, family, label, round(k / n, 4) if n else None, n, wilson(k, n), "higher", k, page)


def accuracy_keys(report: dict[str, Any], model: str | None) -> list[Key]:
    """top1, top5 and per-class recall, from the stored predictions, else from the model card's numbers."""
    secs = _sections(report, model)
    card, page = secs.get("card", ({}, None))
    p = predictions(report, model)
    out = []
    if p is not None:
        known = p.label >= 0
        n = int(known.sum())
        if n:
            out.append(_proportion("top1", "top1", "top-1 accuracy", int((p.pred == p.label)[known].sum()), n, page))
            out.append(_proportion("top5", "top5", "top-5 accuracy", int(p.top5[known].sum()), n, page))
        for c in np.unique(p.label[known]):
            m = p.label == c
            name = p.class_names[c] if c < len(p.class_names) else f"class_{c}"
            out.append(_proportion(f"per_class_recall.{name}", "per_class_recall", f"recall of {name}",
                                   int((p.pred[m] == c).sum()), int(m.sum()), page))
        return out
    labelled = card.get("labelled_images")
    for key, label in (("top1", "top-1 accuracy"), ("top5", "top-5 accuracy")):
        v = card.get(f"{key}_accuracy")
        if isinstance(labelled, int) and labelled > 0 and isinstance(v, (int, float)):
            out.append(_proportion(key, key, label, int(round(v * labelled)), labelled, page))
    per: dict[str, list[int]] = {}
    for row in card.get("confusion") or []:
        if isinstance(row, list) and len(row) == 3:
            t, q, cnt = row
            per.setdefault(t, [0, 0])
            per[t][1] += int(cnt)
            per[t][0] += int(cnt) if t == q else 0
    for c, (k, m) in per.items():
        out.append(_proportion(f"per_class_recall.{c}", "per_class_recall", f"recall of {c}", k, m, page))
    return out


def faithfulness_keys(results: dict[str, Any], page: str | None) -> list[Key]:
    """Each method's faithfulness score minus the random map's, with the bootstrap interval over images."""
    rows = [r for r in results.get("methods") or [] if isinstance(r, dict) and "method" in r]
    scores = {r["method"]: r.get("score") for r in rows}
    per_image = results.get("per_image_score") or {}
    rand = scores.get(RANDOM_ROW)
    images = tuple(results.get("images") or ())
    out = []
    for r in rows:
        m = r["method"]
        if "(baseline)" in m or not isinstance(r.get("score"), (int, float)) or not isinstance(rand, (int, float)):
            continue
        ci = r.get("vs_random_ci95")
        pi = None
        if m in per_image and RANDOM_ROW in per_image and len(per_image[m]) == len(per_image[RANDOM_ROW]):
            pi = tuple(float(a) - float(b) for a, b in zip(per_image[m], per_image[RANDOM_ROW]))
        out.append(Key(f"faithfulness.{m}", "faithfulness", f"faithfulness of {m} (vs random map)",
                       round(r["score"] - rand, 4), len(pi) if pi else len(images) or None,
                       tuple(ci) if isinstance(ci, list) and len(ci) == 2 else None, "higher", None, page,
                       pi, images if pi and len(images) == len(pi) else None))
    return out


def other_keys(report: dict[str, Any], model: str | None, n_labelled: int | None) -> list[Key]:
    """Sanity verdicts, calibration and drift numbers (each when its section is in the report)."""
    secs = _sections(report, model)
    out = []
    sanity, page = secs.get("sanity", ({}, None))
    for m, v in (sanity.get("verdict") or {}).items():
        out.append(Key(f"sanity.{m}", "sanity", f"sanity checks of {m}", str(v), None, None, "pass", None, page))
    cal, page = secs.get("calibration", ({}, None))
    for k in CALIBRATION_KEYS:
        v = _pick(cal.get(k), model)
        if isinstance(v, (int, float)):
            out.append(Key(k, k, k.replace("_", " "), float(v), n_labelled, None, "lower", None, page))
    for row in cal.get("per_class_ece") or []:
        if isinstance(row, dict) and isinstance(row.get("ece"), (int, float)):
            out.append(Key(f"per_class_ece.{row.get('class')}", "per_class_ece", f"ECE of {row.get('class')}",
                           float(row["ece"]), row.get("n"), None, "lower", None, page))
    drift, page = secs.get("drift", ({}, None))
    for row in drift.get("methods") or []:
        if isinstance(row, dict) and isinstance(row.get("mean_rank_correlation"), (int, float)):
            out.append(Key(f"drift.{row.get('method')}", "drift", f"map rank correlation of {row.get('method')}"
                           " with the other run", float(row["mean_rank_correlation"]), row.get("images"), None,
                           "higher", None, page))
    return out


def key_numbers(report: dict[str, Any], model: str | None = None) -> dict[str, Key]:
    """Every key number of ``report`` (a comparison: of ``model``, default the second model) by name."""
    models = models_of(report)
    if models and model is None:
        model = models[-1]
    keys = accuracy_keys(report, model)
    secs = _sections(report, model)
    if "faithfulness" in secs:
        keys += faithfulness_keys(*secs["faithfulness"])
    top1 = next((k.n for k in keys if k.name == "top1"), None)
    keys += other_keys(report, model, top1)
    return {k.name: k for k in keys}


__all__ = ["Key", "Predictions", "FAMILIES", "key_numbers", "predictions", "predictions_record", "models_of"]
