"""Model-side bad inputs (issue 9): each is either handled (the report builds, with a note on the card)
or refused with a clear one-line message and exit status 2, and nothing is written.

The image/file-side corpus lives in another file; this one holds what the *model* can get wrong:
tuple / dict / 1-D / NaN / Inf outputs, 1-channel and fixed-size inputs, batch-1 exports, factories
that raise or return something else, checkpoints with prefixes or missing keys, pickled models.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from conftest import CLASSES, make_tiny_cnn, write_image_folder
from reportgen import loading
from reportgen.build import build_report
from reportgen.cli import main
from reportgen.errors import ModelError

# A tiny CNN whose forward output is shaped by OUTPUT (an expression of `logits`), written to a file
# and loaded through the file.py:factory SPEC form, as a user would.
SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, in_ch=3, classes=4):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(in_ch, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                          nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8, classes)

        def forward(self, x):
            logits = self.fc(torch.flatten(self.pool(self.features(x)), 1))
            return {output}


    class FixedSize(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 32 * 32, 4)

        def forward(self, x):
            return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))


    def make():
        torch.manual_seed(0)
        return Net({in_ch})


    def fixed():
        return FixedSize()


    def raises():
        raise ValueError("checkpoint folder not configured")


    def not_a_module():
        return {{"weights": 1}}
    """
)


def write_model(tmp_path: Path, output: str = "logits", in_ch: int = 3) -> Path:
    f = tmp_path / "net.py"
    f.write_text(SOURCE.format(output=output, in_ch=in_ch))
    return f


def cli_build(model: str, images: Path, out: Path, *extra: str):
    return CliRunner().invoke(main, ["build", "--model", model, "--images", str(images), "--out", str(out),
                                     "--preset", "minimal", "--only", "card", *extra])


# ----------------------------------------------------------------------------------------------
# refused with one line and exit status 2


def _weights_missing_key(tmp_path: Path, model_file: Path) -> list[str]:
    sd = loading.load_model(f"{model_file}:make").model.state_dict()
    sd.pop("fc.bias")
    torch.save(sd, tmp_path / "w.pth")
    return ["--weights", str(tmp_path / "w.pth")]


def _pickled_model(tmp_path: Path, model_file: Path) -> list[str]:
    torch.save(make_tiny_cnn(), tmp_path / "whole.pth")  # a pickled nn.Module, not a state dict
    return ["--weights", str(tmp_path / "whole.pth")]


REFUSED = {
    # kind: (output expression, factory, extra-args builder, expected words)
    "dict output without logits": ("{'a': logits, 'b': logits * 2}", "make", None, "without a 'logits' entry"),
    "1-D output": ("logits.sum(1)", "make", None, "not a classifier"),
    "one score per image": ("logits[:, :1]", "make", None, "at least 2 classes"),
    "NaN output": ("logits * float('nan')", "make", None, "outputs NaN"),
    "Inf output": ("logits + float('inf')", "make", None, "outputs Inf"),
    "fixed input size": ("logits", "fixed", None, "pass --input-size 32"),
    "factory that raises": ("logits", "raises", None, "raised ValueError: checkpoint folder not configured"),
    "non-module factory": ("logits", "not_a_module", None, "returned a dict, not a torch.nn.Module"),
    "checkpoint with missing keys": ("logits", "make", _weights_missing_key, "1 missing key: fc.bias"),
    "pickled full model without --trust-weights": ("logits", "make", _pickled_model, "--trust-weights"),
}


@pytest.mark.parametrize("kind", list(REFUSED))
def test_bad_model_is_refused_in_one_line(kind, tmp_path, image_dir):
    output, factory, extra_fn, words = REFUSED[kind]
    f = write_model(tmp_path, output)
    extra = extra_fn(tmp_path, f) if extra_fn else []
    out = tmp_path / "out"
    r = cli_build(f"{f}:{factory}", image_dir, out, *extra)
    assert r.exit_code == 2, (kind, r.output)
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and words in lines[0], (kind, r.output)
    assert "Traceback" not in r.output
    assert not out.exists()  # nothing written


def test_one_channel_model_forced_to_rgb_says_which_flag(tmp_path, image_dir):
    f = write_model(tmp_path, in_ch=1)
    r = cli_build(f"{f}:make", image_dir, tmp_path / "out", "--channels", "3")
    assert r.exit_code == 2 and "takes 1-channel images; pass --channels 1" in r.output


# ----------------------------------------------------------------------------------------------
# handled: the report builds, and the card says what was done


def _build(tmp_path: Path, model, images: Path, only=("card",), **kw):
    return build_report(model, images, tmp_path / "rep", preset="minimal", only=list(only), resize=None,
                        input_size=32, device="cpu", **kw)


def _notes(res) -> str:
    return " ".join(res.report.meta.model["notes"])


def _card_value(res, key: str) -> str | None:
    """A value of the card's key/value blocks (e.g. "top-1 accuracy"), None when absent."""
    from reportgen.report import KeyValues

    card = next(s for s in res.report.sections if s.id == "card")
    for b in card.blocks:
        if isinstance(b, KeyValues):
            for k, v in b.pairs:
                if k == key:
                    return v
    return None


#: sections that failed with "'tuple' object has no attribute ..." before outputs were unpacked in one place
OUTPUT_SECTIONS = ("card", "neighbors", "embedding", "saliency", "occlusion", "adversarial", "class_visualization")


@pytest.mark.parametrize("output, note", [
    ("(logits, logits.detach() * 0.5)", "tuple of 2; its first element"),
    ("{'logits': logits, 'aux': logits * 0}", "dict; its 'logits' entry"),
    ("[logits]", "list of 1"),
])
def test_tuple_and_dict_outputs_are_unpacked_once(output, note, tmp_path, image_dir):
    f = write_model(tmp_path, output)
    res = _build(tmp_path, f"{f}:make", image_dir, only=OUTPUT_SECTIONS + ("activations",), labels=CLASSES)
    for s in res.report.sections:
        assert s.error is None, (s.id, s.error)
    assert note in _notes(res)
    assert _card_value(res, "top-1 accuracy") is not None  # computed from the unpacked logits


def test_one_channel_model_gets_grey_images_and_grey_filters(tmp_path, image_dir):
    f = write_model(tmp_path, in_ch=1)
    res = _build(tmp_path, f"{f}:make", image_dir, only=("card", "filters", "saliency"), labels=CLASSES)
    for s in res.report.sections:
        assert s.error is None, (s.id, s.error)
    pre = res.report.meta.preprocessing
    assert pre["channels"] == 1 and "in_channels of the first convolution (features.0)" in pre["source"]
    assert "greyscale" in res.report.meta.preprocessing_text
    filters = next(s for s in res.report.sections if s.id == "filters")
    text = repr(filters.blocks)
    assert "greyscale (mean over input channels)" in text


def test_one_channel_pixel_model_sees_the_grey_image(image_dir):
    from reportgen.build import make_context
    from reportgen.preprocess import Preprocessing

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 4)).eval()
    lm = loading.LoadedModel(model=model, spec="m", kind="module")
    pre = loading.resolve_preprocessing(lm, input_size=32, resize=None)
    assert pre.channels == 1
    ctx = make_context(model, image_dir, pre=pre, device="cpu")
    a = ctx.images.array(0)
    assert a.shape[-1] == 3 and np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2])
    x = ctx.images.batch([0, 1])
    grey = (x.mean(1, keepdim=True) - 0.449) / 0.226  # ImageNet mean/std averaged over the channels
    with torch.no_grad():
        assert torch.allclose(ctx.pixel_model(x), model(grey), atol=1e-4)
    assert Preprocessing(channels=1).describe().count("greyscale") == 1


def test_checkpoint_with_module_prefix_loads_with_a_note(tmp_path, image_dir):
    f = write_model(tmp_path)
    ref = loading.load_model(f"{f}:make").model
    torch.save({"state_dict": {"module." + k: v for k, v in ref.state_dict().items()}}, tmp_path / "ddp.pth")
    res = _build(tmp_path, f"{f}:make", image_dir, weights=tmp_path / "ddp.pth", labels=CLASSES)
    assert not res.report.failed and "stripped key prefix 'module.'" in _notes(res)


def test_export_with_static_batch_of_one_runs_image_by_image(tmp_path, image_dir):
    model = make_tiny_cnn()
    f = tmp_path / "batch1.pt2"
    torch.export.save(torch.export.export(model, (torch.rand(1, 3, 32, 32),)), str(f))
    res = _build(tmp_path, str(f), image_dir, only=("card", "activations", "saliency"), labels=CLASSES)
    for s in res.report.sections:
        assert s.error is None, (s.id, s.error)
    assert "one at a time" in _notes(res)
    assert res.report.meta.config["general"]["batch_size"] == 1
    # the same predictions as the eager model on the same images
    eager = _build(tmp_path / "eager", model, image_dir, labels=CLASSES)
    assert _card_value(res, "top-1 accuracy") == _card_value(eager, "top-1 accuracy") is not None


def test_cifar_style_folders_name_the_classes(tmp_path):
    images = write_image_folder(tmp_path / "imgs", per_class=2)  # red/green/blue/white folders
    res = _build(tmp_path, make_tiny_cnn(), images)
    meta = res.report.meta
    assert meta.images.labels_from == "sub-folder names"
    assert "ImageFolder convention" in _notes(res)
    assert _card_value(res, "top-1 accuracy") is not None
    # --labels still wins; a model with its own names too
    res = _build(tmp_path, make_tiny_cnn(), images, labels=["a", "b", "c", "d"])
    assert "ImageFolder" not in _notes(res) and meta is not res.report.meta
    assert res.report.meta.images.labels_from is None
    # folder count != outputs: no guess
    res = _build(tmp_path, make_tiny_cnn(num_classes=5), images)
    assert "ImageFolder" not in _notes(res) and res.report.meta.images.labels_from is None


def test_build_report_restores_the_callers_train_mode(tmp_path, image_dir):
    model = make_tiny_cnn().train()
    model.features[0].eval()  # a mixed state must come back as it was
    before = [m.training for m in model.modules()]
    _build(tmp_path, model, image_dir, labels=CLASSES)
    assert [m.training for m in model.modules()] == before


def test_title_is_the_model_class_and_published_paths_are_relative(tmp_path, image_dir, monkeypatch):
    f = write_model(tmp_path)
    ref = loading.load_model(f"{f}:make").model
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["/usr/bin/reportgen", "build", "--model", f"{f}:make",
                                     f"--weights={tmp_path / 'w.pth'}", "--images", str(image_dir)])
    res = _build(tmp_path, f"{f}:make", image_dir, weights=tmp_path / "w.pth", labels=CLASSES)
    assert res.report.title == "Net — model card"
    info = res.report.meta.model
    assert info["spec"] == "net.py:make" and info["weights"] == "w.pth"
    published = (tmp_path / "rep" / "report.json").read_text()
    assert str(tmp_path) not in published
    assert res.report.meta.command.startswith("reportgen build --model net.py:make --weights=w.pth")
    res = _build(tmp_path, f"{f}:make", image_dir, labels=CLASSES, title="My net")
    assert res.report.title == "My net"


def test_cli_preprocessing_line_names_each_values_origin(tmp_path, image_dir):
    f = write_model(tmp_path)
    r = cli_build(f"{f}:make", image_dir, tmp_path / "out", "--input-size", "32", "--resize", "36",
                  "--mean", "0.5,0.5,0.5", "--std", "0.2,0.2,0.2", "--labels", _labels_file(tmp_path))
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.output.splitlines() if ln.startswith("Preprocessing:"))
    assert "[resize from --resize; input size from --input-size; mean from --mean; std from --std]" in line
    assert "defaults" not in line
    r = cli_build(f"{f}:make", image_dir, tmp_path / "out", "--input-size", "32", "--labels", _labels_file(tmp_path))
    line = next(ln for ln in r.output.splitlines() if ln.startswith("Preprocessing:"))
    assert ("[resize from --input-size (same resize/crop ratio); input size from --input-size; "
            "mean, std from defaults (ImageNet)]") in line


def _labels_file(tmp_path: Path) -> str:
    p = tmp_path / "labels.txt"
    p.write_text("\n".join(CLASSES) + "\n")
    return str(p)


def test_greyscale_image_folder_with_rgb_model_still_works(tmp_path):
    d = tmp_path / "g" / "a"
    d.mkdir(parents=True)
    for k in range(2):
        grey = (np.random.default_rng(k).random((32, 32)) * 255).astype(np.uint8)
        Image.fromarray(grey, mode="L").save(d / f"{k}.png")
    res = _build(tmp_path, make_tiny_cnn(), tmp_path / "g")
    assert not res.report.failed and res.report.meta.preprocessing.get("channels", 3) == 3


def test_unpack_logits_refuses_what_is_not_logits():
    from reportgen.preprocess import unpack_logits

    t = torch.zeros(2, 3)
    assert unpack_logits(t) == (t, "")
    assert unpack_logits({"only": t})[0] is t
    for bad in [("text", t), {"a": t, "b": t}, 3.0]:
        with pytest.raises(ModelError):
            unpack_logits(bad)
