"""``--model timm:NAME`` and Hugging Face folders: built offline, preprocessing and labels from their configs."""

from __future__ import annotations

import sys

import pytest
import torch

from reportgen.errors import ModelError
from reportgen.loading import load_model, resolve_preprocessing
from reportgen.preprocess import PixelModel

timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")


def test_timm_model_gets_its_pretrained_cfg_and_imagenet_names():
    loaded = load_model("timm:vit_tiny_patch16_224")
    pre = loaded.preprocessing
    assert (pre.input_size, pre.resize, pre.interpolation) == (224, 248, "bicubic")  # crop_pct 0.9
    assert pre.mean == (0.5, 0.5, 0.5) and pre.std == (0.5, 0.5, 0.5)
    assert loaded.fixed_input_size == 224
    assert len(loaded.class_names) == 1000 and loaded.class_names[0].lower().startswith("tench")
    assert resolve_preprocessing(loaded).interpolation == "bicubic"


def test_timm_safetensors_weights_with_a_fine_tuned_head(tmp_path):
    torch.manual_seed(0)
    src = timm.create_model("resnet10t", pretrained=False, num_classes=4).eval()
    path = tmp_path / "w.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    loaded = load_model("timm:resnet10t", weights=path)
    assert loaded.model.num_classes == 4 and loaded.class_names is None
    x = torch.rand(1, 3, 64, 64)
    assert torch.allclose(loaded.model(x), src(x), atol=1e-5)
    with pytest.raises(ModelError, match="timm has no model 'resnet10q'.*resnet10t"):
        load_model("timm:resnet10q")


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ModelError, match=r"pip install reportgen\[timm\]"):
        load_model("timm:vit_tiny_patch16_224")


def _hf_folder(tmp_path, weights=True):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTConfig(image_size=32, patch_size=8, num_hidden_layers=2, num_attention_heads=2,
                                 hidden_size=16, intermediate_size=32, num_labels=3,
                                 id2label={0: "cat", 1: "dog", 2: "fox"}, label2id={"cat": 0, "dog": 1, "fox": 2})
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(cfg).eval()
    folder = tmp_path / "hf_vit"
    model.save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3,
                                   image_std=[0.5] * 3).save_pretrained(folder)
    if not weights:
        for f in folder.glob("*.safetensors"):
            f.unlink()
    return folder, model


def test_hf_folder_loads_offline_with_labels_preprocessing_and_logits(tmp_path):
    folder, ref = _hf_folder(tmp_path)
    loaded = load_model(str(folder))
    assert loaded.kind == "huggingface" and loaded.class_names == ["cat", "dog", "fox"]
    pre = resolve_preprocessing(loaded)
    assert (pre.input_size, pre.mean, pre.std) == (32, (0.5,) * 3, (0.5,) * 3)
    x = torch.rand(2, 3, 32, 32)
    logits = PixelModel(loaded.model, pre)(x)
    assert torch.allclose(logits, ref(pixel_values=(x - 0.5) / 0.5).logits, atol=1e-5)


def test_hf_folder_without_weights_names_the_missing_file(tmp_path):
    folder, _ = _hf_folder(tmp_path, weights=False)
    with pytest.raises(ModelError, match="model.safetensors"):
        load_model(str(folder))
    with pytest.raises(ModelError, match="config.json"):
        load_model(str(tmp_path))  # a folder that is not a model folder
