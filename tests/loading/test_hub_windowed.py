"""A Hugging Face folder of a windowed-attention model (Swin) builds: the input-size probe no longer leaves the model
with shrunken windows (every section failed), and attention says why it does not apply instead of crashing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from reportgen.build import build_report
from reportgen.results_schema import UNSUPPORTED


def test_hf_swin_folder_builds_with_attention_unsupported(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    cfg = transformers.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                                  window_size=4, num_labels=3, id2label={0: "a", 1: "b", 2: "c"},
                                  label2id={"a": 0, "b": 1, "c": 2})
    torch.manual_seed(0)
    folder = tmp_path / "swin"
    transformers.SwinForImageClassification(cfg).eval().save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3,
                                   image_std=[0.5] * 3).save_pretrained(folder)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(imgs / f"{i}.png")
    build_report(str(folder), imgs, tmp_path / "out", preset="minimal", only=["card", "attention", "saliency"],
                 use_cache=False)
    secs = json.loads((tmp_path / "out" / "report.json").read_text())["sections"]
    by_id = {s["id"]: s for s in (secs if isinstance(secs, list) else secs.values())}
    assert by_id["card"].get("error") is None and by_id["saliency"].get("error") is None
    why = by_id["attention"]["results"][UNSUPPORTED]
    assert "another structure" in why and "Swin" in why
