"""What an image's page (``images/<id>.html``) shows, arranged for a reviewer: the picture large with its
prediction; the attribution methods side by side in the faithfulness section's order with their scores; the
sanity checks' maps folded away, one row per method; the other sections' pictures; each section's numbers for
this image under their names and units (:data:`NUMBER_LABELS`, the one table of them). No torch here."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..report import ImageData

#: sections whose maps explain the prediction (shown as methods, side by side); their default method's name
ATTRIBUTION = {"saliency": "saliency", "smoothgrad": "SmoothGrad", "gradcam": "Grad-CAM",
               "integrated_gradients": "Integrated Gradients", "guided_backprop": "guided backprop",
               "occlusion": "occlusion"}
SANITY, FAITHFULNESS = "sanity", "faithfulness"
#: map labels that name a faithfulness method under another name
ALIASES = {"ig": "integratedgradients", "gradient": "saliency", "changewhencovered": "occlusion",
           "gradxinput": "gradientxinput"}
#: normalised name -> name of the methods the attribution sections draw
KNOWN = {**{re.sub(r"[^a-z0-9+]", "", v.lower()): v for v in ATTRIBUTION.values()},
         "gradcam++": "Grad-CAM++", "guidedgradcam": "Guided Grad-CAM", "smoothgradsquared": "SmoothGrad²"}
MAPS_PER_METHOD = 3
MAX_OTHER = 24  # other sections' pictures on one page
MAX_SANITY = 64
PICTURE_MIN, PICTURE_MAX = 320, 448  # the picture's display width in CSS px

#: per-image result keys -> (name, unit); "" for no unit. Keys not listed are shown with their words spelt out.
NUMBER_LABELS: dict[str, tuple[str, str]] = {
    "p": ("Probability of the explained class", ""),
    "class_index": ("Explained class (index)", ""),
    "p_unoccluded": ("Probability, nothing covered", ""),
    "p_occluded_min": ("Lowest probability, a patch covered", ""),
    "p_occluded_max": ("Highest probability, a patch covered", ""),
    "max_change": ("Largest probability change when covered", ""),
    "max_abs_grad": ("Largest |gradient|", "per unit of pixel value"),
    "top5pct_mass": ("Attribution in the top 5% of pixels", "fraction"),
    "peak_area": ("Grad-CAM peak area", "fraction of the image"),
    "peak_area_pp": ("Grad-CAM++ peak area", "fraction of the image"),
    "foreground_fraction": ("Foreground", "fraction of the image"),
    "fg_seed_fraction": ("Foreground seeds", "fraction of the image"),
    "bg_seed_fraction": ("Background seeds", "fraction of the image"),
    "score_x": ("Class score of the image", "logit"),
    "score_baseline": ("Class score of the baseline", "logit"),
    "sum_ig": ("Sum of the attributions", "logit"),
    "steps": ("Integration steps", ""),
    "gap": ("Completeness gap |sum − (score − baseline score)|", "logit"),
    "feature_neighbours_same_class": ("Feature-space neighbours of the same class", "images"),
    "pixel_neighbours_same_class": ("Pixel-space neighbours of the same class", "images"),
    "k": ("Neighbours compared", "images"),
    "deletion_auc": ("Deletion AUC", "probability × fraction"),
    "insertion_auc": ("Insertion AUC", "probability × fraction"),
    "score": ("Faithfulness score (insertion − deletion AUC)", ""),
    "confidence": ("Confidence", "probability"),
    "p_true": ("Probability of the true class", ""),
    "p_pred": ("Probability of the predicted class", ""),
    "margin": ("Margin over the runner-up", "probability"),
    "l2": ("Perturbation size (L2)", "pixel value"),
    "linf": ("Perturbation size (L∞)", "pixel value"),
    "rank_corr": ("Rank correlation", "Spearman ρ"),
    "ssim": ("Structural similarity", "SSIM"),
}


def number_label(key: str) -> tuple[str, str]:
    """(name, unit) of a per-image result key: from :data:`NUMBER_LABELS`, else its words spelt out."""
    if key in NUMBER_LABELS:
        return NUMBER_LABELS[key]
    words = re.sub(r"_+", " ", key).strip()
    words = re.sub(r"\bpct\b", "%", re.sub(r"\bauc\b", "AUC", words))
    return (words[:1].upper() + words[1:]) if words else key, ""


def _norm(name: str) -> str:
    key = re.sub(r"[^a-z0-9+]", "", name.lower().replace("over the image", ""))
    return ALIASES.get(key, key)


@dataclass
class Method:
    name: str
    maps: list[Any] = field(default_factory=list)  # Appearance
    rank: int | None = None
    score: float | None = None
    of: int = 0  # methods ranked

    @property
    def score_text(self) -> str:
        if self.score is None:
            return "no faithfulness score"
        return f"faithfulness {self.score:.3f}, rank {self.rank} of {self.of}"


def faithfulness_ranks(sections) -> dict[str, tuple[int, float | None, int, str]]:
    """normalised method name -> (rank, score, methods ranked, name) from the faithfulness section's results."""
    for s in sections:
        res = s.results if isinstance(s.results, dict) else {}
        if s.id == FAITHFULNESS and isinstance(res.get("methods"), list):
            rows = [m for m in res["methods"] if isinstance(m, dict) and isinstance(m.get("method"), str)]
            out: dict[str, tuple[int, float | None, int, str]] = {}
            for k, m in enumerate(rows, 1):
                rank = int(m["rank"]) if isinstance(m.get("rank"), int) else k
                score = m.get("score")
                out[_norm(m["method"])] = (rank, float(score) if isinstance(score, (int, float)) else None,
                                           len(rows), m["method"])
            return out
    return {}


def _method_of(a, ranks: dict) -> str:
    """The method a map shows: the one its label names (after the group), else its section's own."""
    key = _norm((a.label or "").split(": ")[-1])
    return key if key in ranks or key in KNOWN else _norm(ATTRIBUTION[a.section.section.id])


def arrange(appearances, ranks: dict) -> dict:
    """Split an image's appearances into attribution methods (faithfulness order, then section order), sanity
    rows (method -> maps) and the rest."""
    methods: dict[str, Method] = {}
    sanity: dict[str, list] = {}
    other: list = []
    for a in appearances:
        if a.image is None:
            continue
        sid = a.section.section.id
        if sid in ATTRIBUTION:
            key = _method_of(a, ranks)
            name = ranks[key][3] if key in ranks else KNOWN.get(key, key)
            name = name[:1].upper() + name[1:]
            m = methods.setdefault(key, Method(name))
            if key in ranks:
                m.rank, m.score, m.of = ranks[key][:3]
            if len(m.maps) < MAPS_PER_METHOD:
                m.maps.append(a)
        elif sid == SANITY:
            head, _, stage = (a.label or "maps").rpartition(": ")
            sanity.setdefault(head or "maps", []).append((a, stage))
        elif len(other) < MAX_OTHER:
            other.append(a)
    order = sorted(methods.values(), key=lambda m: (m.rank is None, m.rank or 0))  # stable: section order after
    rows, left = [], MAX_SANITY
    for head, maps in sanity.items():
        rows.append((head, maps[:max(0, left)]))
        left -= len(maps)
    return {"methods": order, "sanity": [r for r in rows if r[1]], "n_sanity": sum(len(m) for _, m in rows),
            "others": other, "ranked": bool(ranks)}


def picture_width(img: ImageData | None) -> int:
    """The picture's display width: an integer enlargement of a small input into [PICTURE_MIN, PICTURE_MAX] px
    where one fits (square pixels for tiny inputs), else PICTURE_MIN..PICTURE_MAX."""
    if img is None:
        return 0
    w = int(img.array.shape[1]) if img.array is not None else PICTURE_MIN
    if w >= PICTURE_MIN:
        return min(w, PICTURE_MAX)
    k = PICTURE_MAX // w
    return w * k if w * k >= PICTURE_MIN else PICTURE_MIN


def numbers(found: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(name, value, unit) rows from (key, formatted value) pairs."""
    return [(number_label(k)[0], v, number_label(k)[1]) for k, v in found]
