"""A single-file report holds each distinct picture once.

A picture shown in several places (an image's input beside each of its maps, its thumbnail on its image page,
a sanity map also on the image page) would otherwise be inlined as a data URI at every place: 5,013 URIs of
1,728 distinct pictures made a 17.4 MB report 52.6 MB. Here each picture shown more than once is written once,
as a rule of one ``<style>`` block (``img[data-p="k"]{background-image:url(data:...)}``), and every place keeps
its ``<img>``: its ``alt`` text, ``width`` / ``height``, classes and lazy loading stay, and its ``src`` becomes an
empty SVG of the picture's own size (so the layout keeps the picture's aspect ratio). Why not SVG ``<use>`` or a
script: ``<img>`` keeps every stylesheet rule and the accessibility tree as they are, and nothing runs (the page's
policy already allows its inline stylesheet and ``data:`` images). A picture shown once stays an ordinary
``<img src="data:...">``. Printing keeps backgrounds (``print-color-adjust: exact``). No torch here."""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections import Counter

from PIL import Image

_SRC = re.compile(r'src="(data:image/[a-z0-9.+-]+;base64,[A-Za-z0-9+/=]+)"')
COMMON = ("img[data-p]{background-size:100% 100%!important;background-repeat:no-repeat!important;"
          "background-position:center!important;-webkit-print-color-adjust:exact;print-color-adjust:exact}")


def _size(uri: str) -> tuple[int, int]:
    """A data URI picture's pixel size (read from its header), (1, 1) when unreadable."""
    try:
        head = base64.b64decode(uri.split(",", 1)[1])
        with Image.open(io.BytesIO(head)) as im:
            return max(1, im.width), max(1, im.height)
    except (binascii.Error, OSError, ValueError, IndexError):
        return 1, 1


def placeholder(width: int, height: int) -> str:
    """An empty SVG of this size as a data URI (written without characters an attribute would need escaped)."""
    return (f"data:image/svg+xml,%3Csvg xmlns=%27http://www.w3.org/2000/svg%27 width=%27{width}%27 "
            f"height=%27{height}%27/%3E")


def dedupe_pictures(html: str) -> str:
    """``html`` with every picture inlined more than once written once (see the module's docstring)."""
    counts = Counter(m.group(1) for m in _SRC.finditer(html))
    repeated = {u: k for k, u in enumerate(u for u, c in counts.items() if c > 1)}
    if not repeated:
        return html
    holders = {u: placeholder(*_size(u)) for u in repeated}

    def swap(m: re.Match) -> str:
        k = repeated.get(m.group(1))
        return m.group(0) if k is None else f'src="{holders[m.group(1)]}" data-p="{k}"'

    body = _SRC.sub(swap, html)
    rules = COMMON + "".join(f'img[data-p="{k}"]{{background-image:url("{u}")!important}}'
                             for u, k in repeated.items())
    end = body.find("</head>")
    block = f"<style>{rules}</style>\n"
    return body[:end] + block + body[end:] if end >= 0 else block + body
