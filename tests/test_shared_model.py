"""The real ImageNet MobileNetV2 in ../shared (skipped cleanly when ../shared is absent)."""

from __future__ import annotations

import json

import pytest

from reportgen.build import build_report

pytestmark = pytest.mark.shared


def _spec(shared_dir):
    return f"{shared_dir / 'models' / 'mobilenet_v2_imagenet' / 'build.py'}:build"


COMMON = dict(resize=256, input_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), device="cpu")


def test_real_model_card_labels_from_file_names(shared_dir, tmp_path):
    """File names carry the WordNet id + class name: the card reports a real accuracy on 16 images."""
    res = build_report(_spec(shared_dir), shared_dir / "images" / "imagenet_dev", tmp_path / "rep",
                       preset="minimal", only=["card"], max_images=16, **COMMON)
    assert res.ok
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["num_classes"] == 1001 and data["images"]["labels_from"] == "file names"
    from reportgen.report import KeyValues

    card = res.report.sections[0]
    pairs = dict(p for b in card.blocks if isinstance(b, KeyValues) for p in b.pairs)
    acc = float(pairs["top-1 accuracy"])
    assert acc >= 0.6, f"MobileNetV2 top-1 on 16 dev images is {acc}"


@pytest.mark.slow
def test_real_model_every_technique_minimal(shared_dir, tmp_path):
    res = build_report(_spec(shared_dir), shared_dir / "images" / "photos", tmp_path / "rep", preset="minimal",
                       strict=True, **COMMON)
    assert res.ok and len(res.report.sections) >= 13
