"""Small pure text helpers for the renderer (also Jinja filters/globals): formatting numbers and durations,
sentences, slugs, tone classes and marks, safe URLs, and making any text encodable as UTF-8."""

from __future__ import annotations

import json
import math
import numbers
import re
from pathlib import Path
from typing import Any, get_args

import numpy as np
from markupsafe import Markup

from ..report import NoteKind, Tone

TONES = {t for t in get_args(Tone) if t} | set(get_args(NoteKind))  # the CSS tone classes themes style




_SURROGATE = re.compile(r"[\ud800-\udfff]")


def safe_text(text: str) -> str:
    """Make text encodable as UTF-8: a byte a file name could not decode (Python keeps it as a lone surrogate,
    e.g. Latin-1 ``caf\\xe9.png``) is shown as ``\\xe9``; any other lone surrogate becomes U+FFFD."""
    def sub(m: re.Match) -> str:
        c = ord(m.group(0))
        return f"\\x{c - 0xDC00:02x}" if 0xDC80 <= c <= 0xDCFF else "\ufffd"

    try:
        text.encode("utf-8")  # the common case: encodable, and far cheaper to check than to search
        return text
    except UnicodeEncodeError:
        return _SURROGATE.sub(sub, text)


def clean_strings(obj: Any) -> Any:
    """``safe_text`` applied to every string (and key) of a JSON-like structure."""
    if isinstance(obj, str):
        return safe_text(obj)
    if isinstance(obj, dict):
        return {clean_strings(k): clean_strings(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_strings(v) for v in obj]
    return obj


def slugify(text: str, fallback: str = "section") -> str:
    """Section id -> file/anchor name: lower-case ``[a-z0-9_-]``, never empty, never dots or slashes."""
    s = re.sub(r"[^a-z0-9_-]+", "-", str(text).lower()).strip("-_")
    return s[:80] or fallback


def fmt_value(v: Any) -> str:
    """A table/key-value cell as text: floats get 4 significant digits, containers become compact JSON."""
    if v is None:
        return "—"
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        x = float(v)
        if math.isnan(x):
            return "NaN"
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        if x == 0:
            return "0"
        ax = abs(x)
        if 1e-3 <= ax < 1e4:
            return f"{x:.4g}"
        if 1e4 <= ax < 1e9:
            return f"{x:,.0f}" if ax >= 1e5 else f"{x:.1f}"
        return f"{x:.3e}"
    if isinstance(v, (dict, list, tuple, set, frozenset)):
        try:
            return json.dumps(v if not isinstance(v, (set, frozenset)) else sorted(v, key=str),
                              default=str, ensure_ascii=False)
        except (TypeError, ValueError):
            return str(v)
    if isinstance(v, Path):
        return str(v)
    return str(v)


def is_number(v: Any) -> bool:
    return isinstance(v, (numbers.Real, np.number)) and not isinstance(v, (bool, np.bool_))


def fmt_duration(s: Any) -> str:
    try:
        s = float(s)
    except (TypeError, ValueError):
        return "—"
    if not math.isfinite(s) or s < 0:
        return "—"
    if s < 0.05:
        return "<0.1 s"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def first_sentence(text: str, limit: int = 180) -> str:
    text = " ".join(str(text or "").split())
    m = re.search(r"(?<=[.!?])\s+(?=[A-Z(\"'])", text)
    s = text[: m.start()] if m else text
    if len(s) > limit:
        s = s[: limit - 1].rsplit(" ", 1)[0] + "…"
    return s


def paragraphs(text: str) -> list[str]:
    """Split prose on blank lines; single newlines become spaces."""
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", str(text or "")) if p.strip()]


def tone_class(tone: Any) -> str:
    t = str(tone or "").strip().lower()
    if not t:
        return ""
    t = "warn" if t == "warning" else t
    return f" tone-{t}" if t in TONES else f" tone-{slugify(t, 'other')}"


# Tones are never shown by colour alone: a mark (and words for screen readers) goes with them (WCAG 1.4.1).
TONE_MARKS = {"ok": ("✓", "correct"), "bad": ("✗", "incorrect"), "error": ("✗", "error"),
              "warn": ("!", "warning"), "warning": ("!", "warning")}


def tone_mark(tone: Any) -> Markup:
    """``<span class="tone-mark">✓</span><span class="sr-only">(correct)</span>`` for a tone, or nothing."""
    t = str(tone or "").strip().lower().removeprefix("tone-")
    mark = TONE_MARKS.get(t)
    if not mark:
        return Markup("")
    return Markup('<span class="tone-mark" aria-hidden="true">{}</span><span class="sr-only">({})</span>').format(
        *mark)


def safe_url(url: Any) -> str:
    """Only http(s) URLs become links (no javascript:, data:, file:)."""
    u = str(url or "").strip()
    return u if re.match(r"https?://[^\s<>\"']+$", u, re.I) else ""


def short_hash(h: Any, n: int = 12) -> str:
    h = str(h or "")
    return h[:n] + "…" if len(h) > n else h


def wbr_path(text) -> Markup:
    """Escaped text with a line-break opportunity (``<wbr>``) after each path separator, so a long path wraps
    between folders rather than mid-name. Jinja filter ``wbr_path``."""
    from markupsafe import escape

    return Markup("<wbr>").join(escape(part) for part in re.split(r"(?<=[/\\])", str(text)))
