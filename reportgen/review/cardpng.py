"""``card.png``: one picture a reviewer can drop into a review (matplotlib; no torch).

Left: the most predicted classes (bars) with top-1/top-5 accuracy; middle: the most faithful method's maps
(the first pictures of its section, read back from the report's assets); right: the key numbers with their
change against the baseline and the verdict.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from .change import fmt
from .keys import models_of, predictions
from .plan import Review

#: faithfulness method name -> the section that draws its maps
METHOD_SECTIONS = {"saliency": "saliency", "smoothgrad": "smoothgrad", "grad-cam": "gradcam",
                   "grad-cam++": "gradcam", "guided grad-cam": "gradcam", "guided backprop": "guided_backprop",
                   "integrated gradients": "integrated_gradients", "occlusion": "occlusion"}
FALLBACK = ("gradcam", "saliency", "integrated_gradients", "occlusion", "card")


def _sections(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in data.get("sections") or [] if isinstance(s, dict) and "id" in s}


def map_pictures(data: dict[str, Any], folder: Path, most: int = 6) -> tuple[str, list[np.ndarray]]:
    """(what they show, up to ``most`` pictures) of the most faithful method's section, else another map."""
    from PIL import Image

    secs = _sections(data)
    res = (secs.get("faithfulness") or {}).get("results") or {}
    best = res.get("most_faithful") if isinstance(res, dict) else None
    ids = ([METHOD_SECTIONS.get(str(best).lower())] if best else []) + list(FALLBACK)
    for sid in ids:
        sec = secs.get(sid or "")
        if not sec or sec.get("error") or not sec.get("figures"):
            continue
        pics = []
        for rel in sec["figures"][:most]:
            try:
                with Image.open(folder / rel) as im:
                    pics.append(np.asarray(im.convert("RGB")))
            except (OSError, ValueError):
                continue
        if pics:
            title = sec.get("title", sid)
            what = f"{title} (most faithful: {best})" if best and sid == ids[0] else title
            return str(what), pics
    return "", []


def top_predictions(data: dict[str, Any], most: int = 8) -> list[tuple[str, int, int]]:
    """(class, images predicted as it, of which labelled with it) for the most predicted classes."""
    models = models_of(data)
    p = predictions(data, models[-1] if models else None)
    if p is None or not len(p.pred):
        card = (_sections(data).get("card") or {}).get("results") or {}
        counts = card.get("predicted_counts") if isinstance(card, dict) else None
        return [(c, int(v), 0) for c, v in sorted((counts or {}).items(), key=lambda kv: -kv[1])[:most]]
    ks, vs = np.unique(p.pred, return_counts=True)
    out = []
    for k, v in sorted(zip(ks, vs), key=lambda kv: -kv[1])[:most]:
        name = p.class_names[k] if k < len(p.class_names) else f"class_{k}"
        out.append((name, int(v), int(((p.pred == k) & (p.label == k)).sum())))
    return out


def _numbers_text(review: Review) -> str:
    lines = [textwrap.fill(review.verdict.replace("**", ""), 46), ""]
    for k in [k for k in review.keys.values() if k.family not in ("per_class_recall", "per_class_ece")][:14]:
        ch = review.changes.get(k.name)
        d = f" ({ch.delta:+.3f})" if ch is not None and ch.delta is not None else ""
        mark = " !" if ch is not None and ch.worse and ch.beyond_noise else ""
        lines.append(f"{k.name[:30]:<30} {fmt(k.value)[:12]}{d}{mark}")
    if review.outcomes:
        lines += ["", f"rules: {len(review.outcomes) - len(review.failed)} pass, {len(review.failed)} fail"]
    return "\n".join(lines)


def write_card(data: dict[str, Any], review: Review, folder: Path, path: Path) -> None:
    """Draw the card picture of the report in ``folder`` to ``path``."""
    from ..pictures import figure_to_png, new_figure

    what, pics = map_pictures(data, folder)
    fig = new_figure((15, 5))
    gs = fig.add_gridspec(2, 6, width_ratios=[1.6, 1, 1, 1, 0.1, 2.4])
    ax = fig.add_subplot(gs[:, 0])
    counts = top_predictions(data)
    if counts:
        names = [str(c)[:22] for c, _, _ in counts][::-1]
        ax.barh(names, [v for _, v, _ in counts][::-1], color="#c9d6ea", label="predicted")
        ax.barh(names, [r for _, _, r in counts][::-1], color="#4c72b0", label="of which right")
        ax.set_xlabel("images predicted as the class")
        ax.legend(fontsize=7, loc="lower right")
        ax.tick_params(axis="y", labelsize=8)
    else:
        ax.axis("off")
    top1, top5 = review.keys.get("top1"), review.keys.get("top5")
    acc = f"top-1 {fmt(top1.value)}  top-5 {fmt(top5.value)}" if top1 and top5 else "no labelled images"
    ax.set_title(f"Top predictions\n{acc}", fontsize=10)
    for i in range(6):
        a = fig.add_subplot(gs[i // 3, 1 + i % 3])
        a.axis("off")
        if i < len(pics):
            a.imshow(pics[i])
        if i == 1:
            a.set_title(textwrap.shorten(what, 48) if what else "", fontsize=10)
        if i == 4 and not pics:
            a.text(0.5, 0.5, "no attribution maps in this report\n(run saliency, gradcam, faithfulness)",
                   ha="center", va="center", fontsize=10, transform=a.transAxes)
    t = fig.add_subplot(gs[:, 5])
    t.axis("off")
    t.text(0, 1, _numbers_text(review), va="top", ha="left", family="monospace", fontsize=8.5,
           transform=t.transAxes)
    fig.suptitle(textwrap.shorten(str(data.get("title") or "reportgen report"), 110), fontsize=12)
    path.write_bytes(figure_to_png(fig, dpi=90).data or b"")


__all__ = ["write_card", "map_pictures"]
