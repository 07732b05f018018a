"""Tiny models trained in the test (seconds) on images with planted evidence: bars, and a corner mark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from conftest import TinyCNN
from PIL import Image
from torch import nn

SIZE = 32
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def bar(a: np.ndarray, kind: str, y: int, x: int) -> None:
    """A white horizontal (10x3) or vertical (3x10) bar with its top-left corner at (y, x)."""
    if kind == "h":
        a[y:y + 3, x:x + 10] = 1.0
    else:
        a[y:y + 10, x:x + 3] = 1.0


def corner(a: np.ndarray) -> None:
    """The shortcut: a white 6x6 square in the top-left corner."""
    a[0:6, 0:6] = 1.0


def noise(rng, n: int = 1) -> np.ndarray:
    return (rng.random((n, SIZE, SIZE)) * 0.25).astype(np.float32)


def train(images: np.ndarray, labels: np.ndarray, classes: int, steps: int = 60, seed: int = 0) -> TinyCNN:
    """TinyCNN fitted with Adam on grey images (N x H x W in [0, 1], replicated to RGB, normalised)."""
    torch.manual_seed(seed)
    model = TinyCNN(classes, width=8)
    x = (torch.as_tensor(images)[:, None].repeat(1, 3, 1, 1) - 0.5) / 0.25
    y = torch.as_tensor(labels, dtype=torch.long)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        b = torch.randint(0, len(x), (32,), generator=g)
        loss = nn.functional.cross_entropy(model(x[b]), y[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def bars_data(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class 0: a horizontal bar, class 1: a vertical bar, anywhere, on faint noise."""
    rng = np.random.default_rng(seed)
    a = noise(rng, n)
    y = np.arange(n) % 2
    for i in range(n):
        py, px = rng.integers(0, SIZE - 10, size=2)
        bar(a[i], "h" if y[i] == 0 else "v", int(py), int(px))
    return a, y


def shortcut_data(per_class: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class 0: a horizontal bar away from the corner. Class 1: a vertical bar, except for a third of its images that
    carry only the corner mark (and no bar): for those, the corner is the only evidence. (images, labels, marked)."""
    rng = np.random.default_rng(seed)
    a = noise(rng, 2 * per_class)
    y = np.repeat([0, 1], per_class)
    marked = np.zeros(2 * per_class, dtype=bool)
    for i in range(2 * per_class):
        py, px = rng.integers(10, SIZE - 11, size=2)
        if y[i] == 1 and (i - per_class) % 3 == 0:
            corner(a[i])
            marked[i] = True
        else:
            bar(a[i], "h" if y[i] == 0 else "v", int(py), int(px))
    return a, y, marked


def write_folder(root: Path, images: np.ndarray, labels: np.ndarray, classes: list[str]) -> list[str]:
    """Class sub-folders of PNGs; returns the relative names in image order."""
    names = []
    for i, (a, c) in enumerate(zip(images, labels)):
        d = root / classes[int(c)]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray((a * 255).round().astype(np.uint8)).convert("RGB").save(d / f"img_{i:03d}.png")
        names.append(f"{classes[int(c)]}/img_{i:03d}.png")
    return names
