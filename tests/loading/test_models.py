"""reportgen.loading and reportgen.labels: every SPEC form, weights files, preprocessing resolution and labels files.

Tiny models are built here; torchvision models are built with ``weights=None`` and their state
dicts saved locally (the hub cache is pointed at tmp_path). Nothing is ever downloaded: an autouse
fixture makes any download attempt fail the test.
"""

from __future__ import annotations

import argparse
import copy
import json
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from reportgen import labels, loading
from reportgen.errors import ConfigError, ModelError
from reportgen.preprocess import Preprocessing

TINY_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn


    class TinyNet(nn.Module):
        def __init__(self, num_classes=3):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                                          nn.ReLU())
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, num_classes)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.features(x)), 1))


    def make_model():
        torch.manual_seed(0)
        return TinyNet().train()  # load_model must switch it to eval
    """
)


class TinyNet(nn.Module):
    """Same architecture as TINY_SOURCE's (state dicts are interchangeable)."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def tiny(seed: int = 1) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet().eval()


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("reportgen tried to download something")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


@pytest.fixture()
def model_file(tmp_path) -> Path:
    d = tmp_path / "proj"
    d.mkdir()
    (d / "tinynet.py").write_text(TINY_SOURCE)
    f = d / "build_model.py"
    # a sibling import: the file's folder must be on sys.path while it is imported
    f.write_text("from tinynet import TinyNet, make_model\n\ndef labels():\n    return ['a', 'b', 'c']\n")
    return f


# ----------------------------------------------------------------------------------------------
# demo


def test_demo_spec():
    demo = pytest.importorskip("reportgen.demo")
    if not Path(getattr(demo, "WEIGHTS_PATH", "")).is_file():
        pytest.skip("demo weights are not built yet")
    lm = loading.load_model("demo")
    assert lm.kind == "demo" and not lm.model.training
    assert lm.class_names == list(demo.labels())
    assert lm.preprocessing.input_size == demo.INPUT_SIZE and lm.preprocessing.mean == tuple(demo.MEAN)
    out = lm.model(torch.rand(2, 3, demo.INPUT_SIZE, demo.INPUT_SIZE))
    assert out.shape == (2, len(lm.class_names))


# ----------------------------------------------------------------------------------------------
# torchvision names


def _tv_file(name: str) -> str:
    import torchvision

    return Path(torchvision.models.get_model_weights(name).DEFAULT.url).name


def test_torchvision_with_weights_file(tmp_path):
    import torchvision

    ref = torchvision.models.get_model("squeezenet1_1", weights=None)
    f = tmp_path / "my_squeezenet.pth"
    torch.save(ref.state_dict(), f)
    lm = loading.load_model("squeezenet1_1", weights=str(f))
    assert lm.kind == "torchvision" and lm.weights == str(f) and not lm.model.training
    assert same_weights(lm.model, ref)
    assert len(lm.class_names) == 1000 and lm.class_names[0] == "tench"
    pre = lm.preprocessing
    assert (pre.resize, pre.input_size) == (256, 224) and pre.mean == pytest.approx((0.485, 0.456, 0.406))
    assert "torchvision weights metadata (SqueezeNet1_1_Weights.IMAGENET1K_V1" in pre.source
    assert any(str(f) in n for n in lm.notes)


def test_torchvision_finetuned_head_and_checkpoint_wrapping(tmp_path):
    import torchvision

    ref = torchvision.models.get_model("squeezenet1_1", weights=None, num_classes=5)
    f = tmp_path / "ft.pth"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in ref.state_dict().items()}}, f)
    lm = loading.load_model("squeezenet1_1", weights=f)
    assert same_weights(lm.model, ref)
    assert lm.class_names is None  # 5 outputs: ImageNet names do not apply
    text = " ".join(lm.notes)
    assert "num_classes=5" in text and "'state_dict'" in text and "module." in text


def test_torchvision_from_hub_cache_torch_home(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ckpt = tmp_path / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    ref = torchvision.models.get_model("mobilenet_v3_small", weights=None)
    torch.save(ref.state_dict(), ckpt / _tv_file("mobilenet_v3_small"))
    lm = loading.load_model("mobilenet_v3_small")
    assert same_weights(lm.model, ref)
    assert lm.weights == str(ckpt / _tv_file("mobilenet_v3_small"))
    assert any(n.startswith("weights from the torch hub cache") for n in lm.notes)
    assert "MobileNet_V3_Small_Weights.IMAGENET1K_V1" in lm.preprocessing.source


def test_torchvision_from_hub_cache_set_dir(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setattr(torch.hub, "_hub_dir", torch.hub._hub_dir)  # restored after the test
    torch.hub.set_dir(str(tmp_path / "hub"))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    ref = torchvision.models.get_model("squeezenet1_1", weights=None)
    torch.save(ref.state_dict(), tmp_path / "hub" / "checkpoints" / _tv_file("squeezenet1_1"))
    lm = loading.load_model("squeezenet1_1")
    assert same_weights(lm.model, ref) and lm.kind == "torchvision"


def test_torchvision_missing_weights_message(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "empty_hub"))
    with pytest.raises(ModelError) as ei:
        loading.load_model("resnet18")
    msg = str(ei.value)
    expected = tmp_path / "empty_hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(expected) in msg
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in msg
    assert "--weights" in msg and "never downloads" in msg


@pytest.mark.parametrize("spec, suggestion", [("resnet19", "resnet18"), ("mobilenetv2", "mobilenet_v2")])
def test_unknown_torchvision_name_suggests(spec, suggestion):
    with pytest.raises(ModelError) as ei:
        loading.load_model(spec)
    assert suggestion in str(ei.value) and "SPEC forms" in str(ei.value)


def test_torchvision_wrong_architecture_weights(tmp_path):
    f = tmp_path / "tiny.pth"
    torch.save(tiny().state_dict(), f)
    with pytest.raises(ModelError) as ei:
        loading.load_model("squeezenet1_1", weights=f)
    assert "unexpected key" in str(ei.value) and "fc.weight" in str(ei.value)


# ----------------------------------------------------------------------------------------------
# factories


def test_file_factory_with_sibling_import(model_file):
    import sys

    before = list(sys.path)
    lm = loading.load_model(f"{model_file}:make_model")
    assert lm.kind == "factory" and not lm.model.training
    assert type(lm.model).__name__ == "TinyNet"
    assert lm.class_names == ["a", "b", "c"]  # from the module's labels()
    assert lm.weights is None and lm.preprocessing is None
    assert sys.path == before  # the file's folder was only on sys.path during the import


def test_file_factory_with_weights_and_prefix(model_file, tmp_path):
    ref = tiny(seed=7)
    f = tmp_path / "w.pt"
    torch.save({"model": {"module." + k: v for k, v in ref.state_dict().items()}}, f)
    lm = loading.load_model(f"{model_file}:make_model", weights=f)
    assert same_weights(lm.model, ref) and lm.weights == str(f)
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(lm.model(x), ref(x))


@pytest.mark.parametrize("key", [None, "state_dict", "model", "model_state_dict", "net"])
def test_checkpoint_shapes(model_file, tmp_path, key):
    ref = tiny(seed=3)
    sd = ref.state_dict()
    f = tmp_path / "ckpt.pth"
    torch.save(sd if key is None else {key: sd, "epoch": 1}, f)
    lm = loading.load_model(f"{model_file}:make_model", weights=f)
    assert same_weights(lm.model, ref)


def test_model_prefix_stripped(model_file, tmp_path):
    ref = tiny(seed=4)
    f = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {"model." + k: v for k, v in ref.state_dict().items()}}, f)
    lm = loading.load_model(f"{model_file}:make_model", weights=f)
    assert same_weights(lm.model, ref)
    assert any("'model.'" in n for n in lm.notes)


def test_mismatched_keys_error(model_file, tmp_path):
    sd = tiny().state_dict()
    sd["head.weight"] = sd.pop("fc.weight")
    sd["features.0.weight"] = torch.zeros(4, 1, 3, 3)
    f = tmp_path / "bad.pth"
    torch.save(sd, f)
    with pytest.raises(ModelError) as ei:
        loading.load_model(f"{model_file}:make_model", weights=f)
    msg = str(ei.value)
    assert "1 missing key: fc.weight" in msg
    assert "1 unexpected key: head.weight" in msg
    assert "features.0.weight (file (4, 1, 3, 3) vs model (4, 3, 3, 3))" in msg


def test_weights_only_refuses_pickled_objects_unless_trusted(model_file, tmp_path):
    ref = tiny(seed=5)
    f = tmp_path / "with_args.pth"
    torch.save({"state_dict": ref.state_dict(), "args": argparse.Namespace(lr=0.1)}, f)
    with pytest.raises(ModelError) as ei:
        loading.load_model(f"{model_file}:make_model", weights=f)
    msg = str(ei.value)
    assert "pickled Python objects" in msg and "--trust-weights" in msg and "argparse.Namespace" in msg
    lm = loading.load_model(f"{model_file}:make_model", weights=f, trust=True)
    assert same_weights(lm.model, ref)
    assert any("--trust-weights" in n for n in lm.notes)


def test_whole_pickled_module_only_with_trust(tmp_path, monkeypatch):
    pkg = tmp_path / "pkgroot"
    (pkg / "tinypkg").mkdir(parents=True)
    (pkg / "tinypkg" / "__init__.py").write_text("")
    (pkg / "tinypkg" / "nets.py").write_text(TINY_SOURCE)
    monkeypatch.syspath_prepend(str(pkg))
    import importlib

    nets = importlib.import_module("tinypkg.nets")
    torch.manual_seed(11)
    whole = nets.TinyNet().eval()
    f = tmp_path / "whole.pth"
    torch.save(whole, f)
    with pytest.raises(ModelError, match="--trust-weights"):
        loading.load_model("tinypkg.nets:make_model", weights=f)
    lm = loading.load_model("tinypkg.nets:make_model", weights=f, trust=True)
    assert same_weights(lm.model, whole)
    # the pickled model itself as SPEC
    with pytest.raises(ModelError, match="--weights"):
        loading.load_model(str(f))
    lm = loading.load_model(str(f), trust=True)
    assert lm.kind == "module" and same_weights(lm.model, whole)


def test_package_module_factory(tmp_path, monkeypatch):
    pkg = tmp_path / "src"
    (pkg / "mypkg").mkdir(parents=True)
    (pkg / "mypkg" / "__init__.py").write_text("")
    (pkg / "mypkg" / "arch.py").write_text(
        TINY_SOURCE
        + "\nLABELS = ['x', 'y', 'z']\n"
        + "\ndef preprocessing():\n    return {'resize': 40, 'input_size': 32, 'mean': (0.5, 0.5, 0.5),"
        + " 'std': (0.2, 0.2, 0.2)}\n"
    )
    monkeypatch.syspath_prepend(str(pkg))
    lm = loading.load_model("mypkg.arch:make_model")
    assert lm.kind == "factory" and isinstance(lm.model, nn.Module) and not lm.model.training
    assert lm.class_names == ["x", "y", "z"]
    assert (lm.preprocessing.resize, lm.preprocessing.input_size) == (40, 32)
    # a class is a factory too
    assert type(loading.load_model("mypkg.arch:TinyNet").model).__name__ == "TinyNet"


def test_factory_errors(tmp_path, model_file):
    (tmp_path / "notamodel.py").write_text("def make():\n    return 42\n\ndef needs_args(n):\n    return n\n")
    with pytest.raises(ModelError, match="not a torch.nn.Module"):
        loading.load_model(f"{tmp_path / 'notamodel.py'}:make")
    with pytest.raises(ModelError, match="no arguments"):
        loading.load_model(f"{tmp_path / 'notamodel.py'}:needs_args")
    with pytest.raises(ModelError, match="Did you mean: make_model"):
        loading.load_model(f"{model_file.parent / 'tinynet.py'}:make_modle")
    with pytest.raises(ModelError, match="needs_args|make"):
        loading.load_model(str(tmp_path / "notamodel.py"))  # a .py without :factory
    with pytest.raises(ModelError, match="cannot import module 'no_such_pkg_xyz.arch'.*PYTHONPATH"):
        loading.load_model("no_such_pkg_xyz.arch:build")


def test_missing_path_and_unknown_spec_list_forms(tmp_path):
    for spec in [str(tmp_path / "nope.pt"), str(tmp_path / "nope.py") + ":make", "not-a-model"]:
        with pytest.raises(ModelError) as ei:
            loading.load_model(spec)
        assert "Accepted model SPEC forms" in str(ei.value)


# ----------------------------------------------------------------------------------------------
# TorchScript and torch.export archives


def _save_script(model: nn.Module, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(model), str(path))


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ts"])
def test_torchscript_archive(tmp_path, suffix):
    ref = tiny(seed=2)
    f = tmp_path / f"scripted{suffix}"
    _save_script(ref, f)
    lm = loading.load_model(str(f))
    assert lm.kind == "torchscript" and not lm.model.training
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(lm.model(x), ref(x), atol=1e-6)
    assert "features.0" in dict(lm.model.named_modules())  # names survive, hooks do not:
    assert any("hooks" in n for n in lm.notes)
    with pytest.raises(RuntimeError):
        lm.model.register_forward_hook(lambda *a: None)
    with pytest.raises(ModelError, match="carries its own weights"):
        loading.load_model(str(f), weights=str(f))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A torch.export archive of a tiny model with BatchNorm, dynamic batch, static 16x16 input."""
    torch.manual_seed(0)
    ref = nn.Sequential()
    ref.add_module("features", nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, stride=2), nn.BatchNorm2d(4), nn.ReLU(),
                                             nn.Conv2d(4, 6, 3, padding=1), nn.ReLU()))
    ref.add_module("pool", nn.AdaptiveAvgPool2d(1))
    ref.add_module("flat", nn.Flatten())
    ref.add_module("fc", nn.Linear(6, 3))
    ref.eval()
    with torch.no_grad():
        ref.features[1].running_mean.uniform_(-0.5, 0.5)
    ep = torch.export.export(ref, (torch.rand(2, 3, 16, 16),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    f = tmp_path_factory.mktemp("export") / "model.pt2"
    torch.export.save(ep, str(f))
    return ref, f


def test_export_archive_hierarchy_hooks_and_layers(exported):
    from reportgen.inspection.hooks import capture_outputs, count_hooks
    from reportgen.inspection.layers import classifier_layer, first_conv, last_conv

    ref, f = exported
    lm = loading.load_model(str(f))
    assert lm.kind == "export"
    m = lm.model
    x = torch.rand(3, 3, 16, 16)
    assert torch.allclose(m(x), ref(x), atol=1e-5)
    assert torch.allclose(m(x[:1]), ref(x[:1]), atol=1e-5)  # batch 1 works too
    names = dict(m.named_modules())
    assert {"features.0", "features.1", "features.2", "features.3", "fc"} <= set(names)
    # layer detection works thanks to re-typing
    assert (first_conv(m), last_conv(m), classifier_layer(m)) == ("features.0", "features.3", "fc")
    conv = names["features.0"]
    assert isinstance(conv, nn.Conv2d) and conv.stride == (2, 2) and conv.out_channels == 4
    # forward hooks fire with the original layer's output
    with capture_outputs({"features.3": names["features.3"]}) as store:
        m(x)
    assert store["features.3"].shape == (3, 6, 8, 8)
    assert count_hooks(m) == 0
    # gradients to the input flow
    xg = x.clone().requires_grad_(True)
    m(xg)[:, 0].sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0
    # static image size is reported and enforced
    assert lm.fixed_input_size == 16 and lm.preprocessing.input_size == 16
    with pytest.raises(ConfigError, match="16x16"):
        loading.resolve_preprocessing(lm, input_size=32)
    assert any("unflatten" in n for n in lm.notes)


def test_export_model_deepcopy_and_other_suffix(exported, tmp_path):
    ref, f = exported
    other = tmp_path / "model.bin"  # detected by content, not by name
    other.write_bytes(f.read_bytes())
    m = loading.load_model(str(other)).model
    m2 = copy.deepcopy(m)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        for p in m2.parameters():
            p.add_(1.0)
    assert torch.allclose(m(x), ref(x), atol=1e-5)  # the copy is independent
    assert not torch.allclose(m2(x), m(x))
    with pytest.raises(Exception, match="16"):
        m2(torch.rand(2, 3, 20, 20))  # the copy still checks its input shape
    with pytest.raises(ModelError, match="carries its own weights"):
        loading.load_model(str(f), weights=str(f))


def test_export_with_context(exported, tmp_path):
    from reportgen.build import make_context

    from conftest import write_image_folder

    _, f = exported
    lm = loading.load_model(str(f))
    pre = loading.resolve_preprocessing(lm)
    ctx = make_context(lm.model, write_image_folder(tmp_path / "imgs", per_class=1), pre=pre, device="cpu")
    assert ctx.num_classes == 3


def test_export_static_batch_of_one_runs_one_image_at_a_time(tmp_path):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2)).eval()
    f = tmp_path / "fixed.pt2"
    torch.export.save(torch.export.export(m, (torch.rand(1, 3, 8, 8),)), str(f))  # torch.export's default
    lm = loading.load_model(str(f))
    assert lm.static_batch and any("one at a time" in n for n in lm.notes)
    x = torch.rand(3, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(lm.model(x), m(x), atol=1e-5)  # a batch of 3 through a batch-1 program
    assert copy.deepcopy(lm.model)(x).shape == (3, 2)
    f2 = tmp_path / "fixed4.pt2"
    torch.export.save(torch.export.export(m, (torch.rand(4, 3, 8, 8),)), str(f2))
    with pytest.raises(ModelError, match="fixed batch size of 4.*dynamic_shapes"):
        loading.load_model(str(f2))


def test_plain_checkpoint_as_spec_is_explained(tmp_path):
    f = tmp_path / "weights.pth"
    torch.save(tiny().state_dict(), f)
    with pytest.raises(ModelError, match="--weights"):
        loading.load_model(str(f))


# ----------------------------------------------------------------------------------------------
# preprocessing


def test_preprocessing_defaults_and_overrides():
    lm = loading.LoadedModel(model=tiny(), spec="t", kind="module")
    pre = loading.resolve_preprocessing(lm)
    assert pre == Preprocessing()
    pre = loading.resolve_preprocessing(lm, input_size=112)
    assert (pre.resize, pre.input_size) == (128, 112) and "--input-size" in pre.source
    pre = loading.resolve_preprocessing(lm, input_size=32, resize=64, mean=(0.5, 0.5, 0.5), std=[0.2, 0.3, 0.4])
    assert (pre.resize, pre.input_size, pre.mean, pre.std) == (64, 32, (0.5, 0.5, 0.5), (0.2, 0.3, 0.4))
    assert pre.source == "resize from --resize; input size from --input-size; mean from --mean; std from --std"
    assert "defaults" not in pre.source  # every value came from a flag


def test_preprocessing_from_metadata_with_override():
    known = Preprocessing(resize=342, input_size=299, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6),
                          source="torchvision weights metadata (Inception_V3_Weights.IMAGENET1K_V1)")
    lm = loading.LoadedModel(model=tiny(), spec="t", kind="torchvision", preprocessing=known)
    assert loading.resolve_preprocessing(lm) == known
    pre = loading.resolve_preprocessing(lm, mean=(0.0, 0.0, 0.0))
    assert pre.mean == (0.0, 0.0, 0.0) and pre.std == known.std and pre.input_size == 299
    assert pre.source == ("resize, input size, std from torchvision weights metadata "
                          "(Inception_V3_Weights.IMAGENET1K_V1); mean from --mean")  # each value's origin
    pre = loading.resolve_preprocessing(lm, input_size=598)  # keeps the resize/crop ratio
    assert (pre.resize, pre.input_size) == (684, 598)
    no_resize = loading.LoadedModel(model=tiny(), spec="t", kind="factory",
                                   preprocessing=Preprocessing(resize=None, input_size=32, source="factory"))
    assert loading.resolve_preprocessing(no_resize, input_size=224).resize == 256


@pytest.mark.parametrize("kwargs", [
    {"mean": (0.5, 0.5)}, {"std": (0.2, 0.0, 0.2)}, {"std": (0.2, -1, 0.2)}, {"input_size": 0},
    {"resize": -5}, {"input_size": 2.5}, {"mean": ("a", "b", "c")},
])
def test_preprocessing_validation(kwargs):
    lm = loading.LoadedModel(model=tiny(), spec="t", kind="module")
    with pytest.raises(ConfigError):
        loading.resolve_preprocessing(lm, **kwargs)


# ----------------------------------------------------------------------------------------------
# labels


def test_labels_text_file(tmp_path):
    f = tmp_path / "labels.txt"
    f.write_text("  cat \ndog\nsea lion\n\n", encoding="utf-8")
    assert labels.load_labels(f) == ["cat", "dog", "sea lion"]
    f.write_text("\ufeffchat\nchien", encoding="utf-8")  # BOM, no final newline
    assert labels.load_labels(str(f)) == ["chat", "chien"]
    f.write_text("a\n\nb\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 2"):
        labels.load_labels(f)


def test_labels_json_forms(tmp_path):
    f = tmp_path / "labels.json"
    f.write_text(json.dumps(["a", "b", "c"]))
    assert labels.load_labels(f) == ["a", "b", "c"]
    f.write_text(json.dumps({"1": "b", "0": "a", "2": "c"}))
    assert labels.load_labels(f) == ["a", "b", "c"]
    f.write_text(json.dumps({"0": ["n01440764", "tench"], "1": ["n01443537", "goldfish"]}))
    assert labels.load_labels(f) == ["tench", "goldfish"]
    f.write_text(json.dumps({"0": "a", "2": "c"}))
    with pytest.raises(ConfigError, match="missing"):
        labels.load_labels(f)
    f.write_text("[1, 2")
    with pytest.raises(ConfigError, match="JSON"):
        labels.load_labels(f)


def test_labels_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        labels.load_labels(tmp_path / "missing.txt")
    f = tmp_path / "latin1.txt"
    f.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="UTF-8"):
        labels.load_labels(f)
    e = tmp_path / "empty.txt"
    e.write_text("\n\n")
    with pytest.raises(ConfigError, match="empty"):
        labels.load_labels(e)


def test_torchscript_archive_gets_every_output_level_section(tmp_path, image_dir):
    """TorchScript refuses hooks: output-level sections still work, layer-level ones say why they cannot."""
    import torch

    from conftest import CLASSES, make_tiny_cnn
    from reportgen.build import build_report

    path = tmp_path / "tiny_ts.pt"
    torch.jit.save(torch.jit.script(make_tiny_cnn()), str(path))
    res = build_report(str(path), image_dir, tmp_path / "rep", labels=CLASSES, preset="minimal", resize=None,
                       input_size=32, device="cpu")
    by_id = {s.id: s for s in res.report.sections}
    for ok in ["card", "neighbors", "embedding", "occlusion", "saliency", "segmentation", "class_visualization",
               "adversarial"]:
        assert by_id[ok].error is None, (ok, by_id[ok].error)
    from reportgen import registry

    layer_level = [t.id for t in registry.all_techniques() if t.needs_layers and t.id in by_id]
    assert {"filters", "activations", "patches", "guided_backprop", "deepdream"} <= set(layer_level)
    for tid in layer_level:  # skipped from the registry metadata, with a note; not failed
        assert by_id[tid].error is None
        assert "TorchScript archives do not allow hooks" in by_id[tid].results["unsupported"]
    assert res.ok


def test_torchvision_googlenet_builder_details_without_patching_weights_enum(tmp_path):
    """The pretrained builder's details (transform_input, aux heads dropped) without touching the weights enum."""
    import torchvision

    enum = torchvision.models.get_model_weights("googlenet")
    before = dict(vars(type(enum.DEFAULT)))
    torch.manual_seed(0)
    ref = torchvision.models.get_model("googlenet", weights=None, aux_logits=True, transform_input=True,
                                       init_weights=False).eval()
    f = tmp_path / "googlenet.pth"
    torch.save(ref.state_dict(), f)
    lm = loading.load_model("googlenet", weights=f)
    m = lm.model
    assert m.transform_input and m.aux1 is None and m.aux2 is None and not m.training
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(m(x), ref(x), atol=1e-5)
    assert dict(vars(type(enum.DEFAULT))) == before  # no process-wide monkeypatch
    assert len(lm.class_names) == 1000
