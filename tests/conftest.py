"""Shared fixtures: tiny models and synthetic image folders built in the tests (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def occluded_copies(img: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
    """Occlusion written out, the reference for incremental occlusion: ``img`` (1 x C x H x W) repeated once per
    position with ``patch[i]`` written over rows ys[i].., columns xs[i].."""
    out = img.repeat(len(ys), 1, 1, 1)
    ph, pw = patch.shape[-2:]
    for i, (y, x) in enumerate(zip(ys.tolist(), xs.tolist())):
        out[i, :, y:y + ph, x:x + pw] = patch[i]
    return out


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def reference(module: str):
    """Import a reference library of the cross-checks (the ``crosscheck`` extra): skip when it is missing, unless
    ``REPORTGEN_REQUIRE_CROSSCHECK`` is set (``python3 dev.py test`` / ``.ci/run`` set it), where missing fails."""
    if os.environ.get("REPORTGEN_REQUIRE_CROSSCHECK"):
        import importlib

        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"{module} missing: pip install -e .[crosscheck]")


class TinyCNN(nn.Module):
    """conv-relu-pool-conv-relu-conv-relu-gap-linear: every technique's minimal customer."""

    def __init__(self, num_classes: int = 4, width: int = 8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def make_tiny_cnn(num_classes: int = 4, seed: int = 0) -> TinyCNN:
    torch.manual_seed(seed)
    return TinyCNN(num_classes).eval()


CLASSES = ["red", "green", "blue", "white"]


def write_image_folder(root: Path, per_class: int = 3, size: int = 32, seed: int = 0) -> Path:
    """Class sub-folders of simple coloured images with a bright square at a random place."""
    rng = np.random.default_rng(seed)
    colours = {"red": (200, 30, 30), "green": (30, 180, 30), "blue": (30, 30, 200), "white": (220, 220, 220)}
    for name, col in colours.items():
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            a = (rng.random((size, size, 3)) * 60).astype(np.uint8)
            y, x = rng.integers(0, size - 10, size=2)
            a[y:y + 10, x:x + 10] = col
            Image.fromarray(a).save(d / f"{name}_{k}.png")
    return root


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path_factory, monkeypatch):
    """Every test's cache (build_report's default $XDG_CACHE_HOME/reportgen) lives in a temp folder, never in ~."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))


@pytest.fixture(scope="session")
def tiny_model() -> TinyCNN:
    return make_tiny_cnn()


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def tiny_pre():
    from reportgen.preprocess import Preprocessing

    return Preprocessing(resize=None, input_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), source="test")


@pytest.fixture(scope="session")
def tiny_cnn_factory():
    """``make_tiny_cnn`` as a fixture: a fresh, seeded TinyCNN per call, for a test that changes or wraps its model."""
    return make_tiny_cnn


@pytest.fixture(scope="session")
def four_images(tmp_path_factory) -> Path:
    """One 32-px image per class (4 in all): the smallest set every technique runs on (techniques/test_common.py)."""
    return write_image_folder(tmp_path_factory.mktemp("four-images"), per_class=1)


@pytest.fixture(scope="session")
def run_minimal():
    """Factory: run_minimal(ctx, tid, **options) -> Section: technique ``tid``'s function called directly (no policy,
    no cache) with its minimal-preset options, the ones named overridden."""
    from reportgen import registry

    def _run(ctx, tid, **over):
        info = registry.get(tid)
        opts = info.default_options("minimal")
        for k, v in over.items():
            setattr(opts, k, v)
        return info.fn(ctx, opts)

    return _run


@pytest.fixture()
def make_ctx(tiny_pre):
    """Factory: make_ctx(model, images, preset='minimal', **technique_overrides) -> RunContext."""
    from reportgen.build import make_context
    from reportgen.config import make_config

    def _make(model, images, preset="minimal", general=None, overrides=None, class_names=None, pre=None):
        cfg = make_config(preset, general=general or {}, technique_overrides=overrides or {})
        return make_context(model, images, class_names=class_names, pre=pre or tiny_pre, config=cfg, device="cpu")

    return _make


@pytest.fixture()
def ctx(make_ctx, tiny_model, image_dir):
    return make_ctx(tiny_model, image_dir, class_names=CLASSES)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "models" / "mobilenet_v2_imagenet" / "build.py").is_file():
        pytest.skip("../shared is not available")
    return SHARED


class ColourMeans(nn.Module):
    """logit_k = 20 * (mean of colour channel k) - a tiny CNN whose label can always be flipped."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.conv.bias.zero_()
            self.fc.weight.copy_(20 * torch.eye(3))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch):
    """Builds append summary.md to $GITHUB_STEP_SUMMARY (reportgen.review): not the test suite's own builds."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


# ----- a model whose class score depends on one image region only (saliency, occlusion) -----------------------
REGION = (4, 14, 18, 28)  # y0, x0, y1, x1 in a 32x32 input


class RegionNet(nn.Module):
    """logit_0 = 20 * mean brightness of REGION, logit_1 = 0 (plus a conv so layer techniques run)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        y0, x0, y1, x1 = REGION
        _ = self.conv(x)
        s = x[:, :, y0:y1, x0:x1].mean(dim=(1, 2, 3)) * 20 - 8
        return torch.stack([s, torch.zeros_like(s)], 1)


@pytest.fixture()
def region_ctx(make_ctx, tmp_path):
    """A RunContext of RegionNet on 3 noise images with bright content in REGION (class "a")."""
    rng = np.random.default_rng(0)
    root = tmp_path / "region"
    for k in range(3):
        a = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
        y0, x0, y1, x1 = REGION
        a[y0:y1, x0:x1] = 230  # bright content in the region: covering it lowers logit_0
        (root / "a").mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(root / "a" / f"{k}.png")
    from reportgen.preprocess import Preprocessing

    pre = Preprocessing(resize=None, input_size=32, mean=(0, 0, 0), std=(1, 1, 1), source="test")
    return make_ctx(RegionNet().eval(), root, class_names=["a", "b"], pre=pre)


def _inside(yx, region, margin=0):
    y, x = yx
    y0, x0, y1, x1 = region
    return y0 - margin <= y < y1 + margin and x0 - margin <= x < x1 + margin


@pytest.fixture(scope="session")
def region():
    """REGION: (y0, x0, y1, x1), the only part of a 32x32 input region_ctx's model looks at."""
    return REGION


@pytest.fixture(scope="session")
def inside():
    """inside((y, x), region, margin=0): whether a pixel lies in the region grown by ``margin``."""
    return _inside


# ----- small helpers of the per-technique tests (tests/techniques/test_<id>.py) -------------------------------
@pytest.fixture(scope="session")
def identity_pre():
    """Preprocessing of 32-px inputs with no normalisation (mean 0, std 1): the model sees the pixels in [0, 1]."""
    from reportgen.preprocess import Preprocessing

    return Preprocessing(None, 32, (0.0,) * 3, (1.0,) * 3)


@pytest.fixture(scope="session")
def notes_of():
    """notes_of(section) -> its top-level Note blocks."""
    from reportgen.report import Note

    def _notes(sec) -> list:
        return [b for b in sec.blocks if isinstance(b, Note)]

    return _notes


@pytest.fixture(scope="session")
def walk_blocks():
    """walk_blocks(blocks): every block, the ones inside Rows and Groups included (depth first)."""
    from reportgen.report import Group, Row

    def _walk(blocks):
        for b in blocks:
            yield b
            if isinstance(b, (Row, Group)):
                yield from _walk(b.blocks)

    return _walk


# ROAD's noisy linear imputation written out (tests/attribution/test_formulas_imputation.py and
# test_formulas_faith_mufidelity_road.py)
# Rong et al.'s weights: 1/6 for the four edge neighbours, 1/12 for the four diagonal ones
NEIGHBOURS = [(dy, dx, 1 / 6 if dy == 0 or dx == 0 else 1 / 12)
              for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def imputation_dense(x: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Each removed value the weighted mean of its in-image neighbours, all removed pixels solved together as one
    dense system ``sum_j w_ij (x_i - x_j) = 0``; kept pixels unchanged (float64)."""
    c, h, w = x.shape
    idx = [(y, xx) for y in range(h) for xx in range(w) if removed[y, xx]]
    pos = {p: k for k, p in enumerate(idx)}
    a, rhs = np.zeros((len(idx), len(idx))), np.zeros((len(idx), c))
    for k, (y, xx) in enumerate(idx):
        for dy, dx, wt in NEIGHBOURS:
            ny, nx = y + dy, xx + dx
            if 0 <= ny < h and 0 <= nx < w:
                a[k, k] += wt
                if (ny, nx) in pos:
                    a[k, pos[ny, nx]] -= wt
                else:
                    rhs[k] += wt * x[:, ny, nx]
    out = x.astype(np.float64).copy()
    if idx:
        sol = np.linalg.solve(a, rhs)
        for k, (y, xx) in enumerate(idx):
            out[:, y, xx] = sol[k]
    return out
