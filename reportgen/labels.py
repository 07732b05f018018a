"""Class names: reading a labels file, and matching folder / file names to class names.

A labels file is a text file (one name per line, in output order), a JSON list, or a JSON
``{index: name}`` object (``imagenet_class_index.json``'s ``{"0": ["n01440764", "tench"]}`` works).
Folder and file names are matched to class names with case, punctuation and a leading number
ignored (``0_t-shirt_top`` matches ``T-shirt/top``); ImageNet-style ``"tench, Tinca tinca"`` names
match each synonym. :func:`folder_class_names` applies torchvision's ``ImageFolder`` convention (sorted
sub-folder names) when the model has no class names.
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


def match_labels(names: list[str], class_names: list[str]) -> tuple[dict[str, int], int]:
    """Map folder/file label names to class indices; returns (mapping, number matched)."""
    by_norm: dict[str, int] = {}
    for k, c in enumerate(class_names):
        by_norm.setdefault(norm_name(c), k)
    for k, c in enumerate(class_names):  # ImageNet-style "tench, Tinca tinca": each synonym names the class
        for syn in c.split(",")[1:] if "," in c else []:
            by_norm.setdefault(norm_name(syn), k)
        if "," in c:
            by_norm.setdefault(norm_name(c.split(",")[0]), k)
    mapping: dict[str, int] = {}
    for n in names:
        if n.isdigit() and int(n) < len(class_names):
            mapping[n] = int(n)
            continue
        k = by_norm.get(norm_name(n))
        if k is None:
            m = re.match(r"^(\d+)[\s_\-.]", n)
            if m and int(m.group(1)) < len(class_names):
                k = int(m.group(1))
        if k is not None:
            mapping[n] = k
    return mapping, len(mapping)


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
