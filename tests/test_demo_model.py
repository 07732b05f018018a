"""Tests for the embedded demo model (``reportgen.demo``): shipped weights,
labels and sample images are present, load safely and agree with each other."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from reportgen import demo
from reportgen.demo.model import FashionNet


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return demo.build_model()


def _normalise(batch_u8: np.ndarray) -> torch.Tensor:
    """uint8 [N,H,W,3] -> normalised float [N,3,H,W]."""
    x = torch.from_numpy(batch_u8).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(demo.MEAN).view(1, 3, 1, 1)
    std = torch.tensor(demo.STD).view(1, 3, 1, 1)
    return (x - mean) / std


def test_weights_load_with_weights_only():
    state = torch.load(demo.WEIGHTS_PATH, weights_only=True, map_location="cpu")
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    FashionNet().load_state_dict(state)  # strict: keys and shapes match
    assert demo.WEIGHTS_PATH.stat().st_size < 1.5 * 1024 * 1024


def test_build_model_is_eval_and_small(model):
    assert isinstance(model, FashionNet)
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) < 300_000
    assert demo.INPUT_SIZE == 28
    assert len(demo.MEAN) == len(demo.STD) == 3


def test_first_layer_channels_tied(model):
    w = model.features[0].weight
    assert torch.allclose(w[:, 0], w[:, 1]) and torch.allclose(w[:, 0], w[:, 2])


@pytest.mark.parametrize("size", [28, 32, 64])
def test_runs_at_several_input_sizes(model, size):
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_labels():
    names = demo.labels()
    assert len(names) == 10
    assert names[0] == "T-shirt/top" and names[9] == "Ankle boot"
    assert len(demo.LABELS_PATH.read_text(encoding="utf-8").splitlines()) == 10


def _class_folders():
    return sorted(p for p in demo.images_dir().iterdir() if p.is_dir())


def test_image_folders():
    folders = _class_folders()
    assert [f.name for f in folders] == [
        "0_t-shirt_top", "1_trouser", "2_pullover", "3_dress", "4_coat",
        "5_sandal", "6_shirt", "7_sneaker", "8_bag", "9_ankle_boot",
    ]
    for folder in folders:
        files = sorted(folder.iterdir())
        assert len(files) == 30, folder
        assert all(f.is_file() and f.suffix == ".png" and f.stem.startswith("test_") for f in files)


def test_accuracy_on_shipped_images(model):
    images, targets = [], []
    for folder in _class_folders():
        label = int(folder.name.split("_", 1)[0])
        for f in sorted(folder.glob("*.png")):
            with Image.open(f) as im:
                assert im.size == (28, 28) and im.mode == "L"
                images.append(np.asarray(im.convert("RGB")))
            targets.append(label)
    x = _normalise(np.stack(images))
    with torch.no_grad():
        pred = model(x).argmax(1)
    acc = (pred == torch.tensor(targets)).float().mean().item()
    assert acc >= 0.85, acc
