"""Class names: reading a labels file, and matching folder / file names to class names.

A labels file is a text file (one name per line, in output order), a JSON list, or a JSON
``{index: name}`` object (``imagenet_class_index.json``'s ``{"0": ["n01440764", "tench"]}`` works).
Folder and file names are matched to class names with case, punctuation and a leading number
ignored (``0_t-shirt_top`` matches ``T-shirt/top``); ImageNet-style ``"tench, Tinca tinca"`` names
match each synonym. A name two classes share is never guessed: an exact match (case kept) decides, or the
file's WordNet id (:func:`match_file_labels`), else the image stays unlabelled. :func:`folder_class_names`
applies torchvision's ``ImageFolder`` convention (sorted sub-folder names) when the model has no class names.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError


def label_str(item: Any, where: str) -> str:
    if isinstance(item, str):
        s = item.strip()
    elif isinstance(item, (list, tuple)) and item and isinstance(item[-1], str):
        s = item[-1].strip()  # e.g. imagenet_class_index.json: {"0": ["n01440764", "tench"]}
    elif isinstance(item, (int, float)) and not isinstance(item, bool):
        s = str(item)
    else:
        raise ConfigError(f"{where}: class name {item!r} is not a string")
    if not s:
        raise ConfigError(f"{where}: empty class name")
    return s


def labels_from_mapping(d: Mapping[Any, Any], where: str) -> list[str]:
    out: dict[int, str] = {}
    for k, v in d.items():
        try:
            idx = int(k)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: key {k!r} is not a class index (expected {{index: name}})") from None
        if idx < 0 or idx in out:
            raise ConfigError(f"{where}: bad or repeated class index {k!r}")
        out[idx] = label_str(v, f"{where} [{k!r}]")
    missing = [i for i in range(len(out)) if i not in out]
    if missing:
        raise ConfigError(f"{where}: class indices must run 0..{len(out) - 1}; missing {missing[:10]}")
    return [out[i] for i in range(len(out))]


def load_labels(path: str | os.PathLike) -> list[str]:
    """Class names in output order: a text file (one per line), a JSON list, or a JSON {index: name} dict."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"labels file not found: {p}")
    if not p.is_file():
        raise ConfigError(f"labels path {p} is not a file")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"labels file {p} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                          "save it as UTF-8") from None
    s = text.strip()
    if not s:
        raise ConfigError(f"labels file {p} is empty")
    if s[0] in "[{":
        try:
            data = json.loads(s)
        except json.JSONDecodeError as e:
            if p.suffix.lower() == ".json":
                raise ConfigError(f"labels file {p} is not valid JSON: {e}") from None
            data = None
        if data is not None:
            where = f"labels file {p}"
            if isinstance(data, Mapping):
                for key in ("labels", "classes", "class_names", "categories"):
                    if isinstance(data.get(key), list):
                        data = data[key]
                        break
            if isinstance(data, list):
                if not data:
                    raise ConfigError(f"{where} is an empty list")
                return [label_str(x, f"{where} item {i}") for i, x in enumerate(data)]
            if isinstance(data, Mapping):
                return labels_from_mapping(data, where)
            raise ConfigError(f"{where}: expected a JSON list of names or a {{index: name}} object")
    if p.suffix.lower() == ".json":
        raise ConfigError(f"labels file {p} is not a JSON list or object")
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    names = []
    for i, line in enumerate(lines, 1):
        name = line.strip()
        if not name:
            raise ConfigError(f"labels file {p} line {i} is empty: one class name per line, in output order")
        names.append(name)
    return names


def norm_name(s: str) -> str:
    s = s.lower()
    s = re.sub(r"^\d+[\s_\-.]+", "", s)  # "0_t-shirt_top" -> "t-shirt_top"
    return re.sub(r"[^a-z0-9]+", "", s)


WNID = re.compile(r"^(n\d{8})[_\-]")  # an ImageNet file name's WordNet id: n02113186_Cardigan.jpg


def _spaced(s: str) -> str:
    return re.sub(r"[\s_]+", " ", s).strip()


class _NameIndex:
    """Class indices by name, in three levels tried in turn: whole names, first synonyms, other synonyms; each
    first exactly (case kept: "Cardigan" is the corgi, "cardigan" the sweater), then normalised (:func:`norm_name`).
    A name several classes share at the first level it meets is ambiguous (ImageNet has two "crane"s)."""

    def __init__(self, class_names: list[str]):
        self.n = len(class_names)
        levels: list[list[tuple[int, str]]] = [[], [], []]
        for k, c in enumerate(class_names):
            parts = [x for x in (p.strip() for p in c.split(",")) if x] if "," in c else []
            levels[0].append((k, c))
            levels[1] += [(k, parts[0])] if parts else []
            levels[2] += [(k, x) for x in parts[1:]]
        self.exact = [self._index(lv, _spaced) for lv in levels]
        self.norm = [self._index(lv, norm_name) for lv in levels]

    @staticmethod
    def _index(level: list[tuple[int, str]], key) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        for k, name in level:
            out.setdefault(key(name), set()).add(k)
        return out

    def candidates(self, name: str) -> set[int]:
        """The classes ``name`` names: one, several (ambiguous) or none."""
        if name.isdigit() and int(name) < self.n:
            return {int(name)}
        bare = re.sub(r"^\d+[\s_\-.]+", "", name)
        for table, key in ((self.exact, _spaced), (self.norm, norm_name)):
            for level in table:
                hit = level.get(key(name)) or level.get(key(bare))
                if hit:
                    return set(hit)
        m = re.match(r"^(\d+)[\s_\-.]", name)
        return {int(m.group(1))} if m and int(m.group(1)) < self.n else set()


def match_labels(names: list[str], class_names: list[str]) -> tuple[dict[str, int], int]:
    """Map folder/file label names to class indices; returns (mapping, number matched). A name two classes
    share is left out (see :func:`match_file_labels` for ImageNet file names, whose WordNet id decides)."""
    index = _NameIndex(class_names)
    mapping = {n: next(iter(c)) for n in names if len(c := index.candidates(n)) == 1}
    return mapping, len(mapping)


def match_file_labels(stems: list[str], class_names: list[str]) -> list[int | None]:
    """The class of each file from its name (``n02113186_Cardigan`` or ``cardigan_03``...).

    A name several classes share (ImageNet's "crane" the bird and "crane" the machine) is decided by the file's
    WordNet id when the classes are in WordNet-id order, as ImageNet's are: the files whose names matched one
    class show whether that order holds (their ids sort as their classes do), and the shared name's file takes the
    one candidate between its id's nearest matched neighbours. Otherwise it stays unlabelled (never a guess).
    """
    index = _NameIndex(class_names)
    wnids = [m.group(1) if (m := WNID.match(s)) else None for s in stems]
    cands = [index.candidates(WNID.sub("", s)) for s in stems]
    out: list[int | None] = [next(iter(c)) if len(c) == 1 else None for c in cands]
    known = sorted({(w, k) for w, k in zip(wnids, out) if w is not None and k is not None})
    ordered = len(known) >= 2 and all(a[1] < b[1] for a, b in zip(known, known[1:])) and \
        len({w for w, _ in known}) == len(known)
    if not ordered:
        return out
    for i, (w, c) in enumerate(zip(wnids, cands)):
        if out[i] is None and w is not None and len(c) > 1:
            lo = max((k for kw, k in known if kw <= w), default=-1)
            hi = min((k for kw, k in known if kw >= w), default=index.n)
            between = [k for k in c if lo <= k <= hi]
            out[i] = between[0] if len(between) == 1 else None
    return out


def folder_class_names(images: str | Path, n_classes: int) -> list[str] | None:
    """torchvision's ``ImageFolder`` convention: the sorted sub-folder names, when there are ``n_classes``.

    Only for a model without class names; hidden folders are ignored.
    """
    root = Path(images)
    if not root.is_dir():
        return None
    try:
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return None
    return names if len(names) == n_classes and n_classes >= 2 else None
