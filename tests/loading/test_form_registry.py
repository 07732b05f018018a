"""The loader registry (issue 29, item 5): one ModelForm per SPEC form feeds dispatch, the --model help, the
README's table and the card's weights line."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import get_args

import pytest
from click.testing import CliRunner
from torch import nn

from reportgen import loading
from reportgen.cli import main
from reportgen.errors import ModelError
from reportgen.loading import base

README = Path(__file__).resolve().parents[2] / "README.md"
FORMS = loading.model_forms()


def _readme_table() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    table = text[text.index("`--model` accepts:"):text.index("`--weights` is loaded")]
    return [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in table.splitlines()
            if ln.startswith("| ") and not ln.startswith("| form") and not ln.startswith("| ---")]


def test_every_form_has_a_distinct_name_order_and_example():
    assert sorted(f.name for f in FORMS) == sorted(get_args(base.FormName))  # the Literal names each form once
    kinds = {k for f in FORMS for k in (*f.weights, *f.titles)}
    assert kinds <= set(get_args(base.ModelKind)), kinds
    assert len({f.order for f in FORMS}) == len({f.example for f in FORMS}) == len(FORMS)


@pytest.mark.parametrize("cmd", ["build", "compare", "layers"])
def test_every_form_is_in_the_model_help(cmd):
    r = CliRunner().invoke(main, [cmd, "--help"])
    assert r.exit_code == 0, r.output
    text = "".join(r.output.split())  # click wraps lines at spaces and hyphens
    for form in FORMS:
        assert "".join(form.help.split()) in text and form.example in text, (cmd, form.name)
    if cmd == "compare":
        assert "Givetwice:modelA,thenmodelB.Themodel:" in text


def test_every_form_is_a_row_of_the_readme_table():
    rows = {row[0]: row[1] for row in _readme_table()}
    for form in FORMS:
        assert form.label in rows, form.name
        assert f"`{form.example}`" in rows[form.label], (form.name, rows[form.label])
    assert len(rows) == len(FORMS), sorted(rows)  # no row for a form that is not registered


def test_a_duplicate_form_is_refused():
    demo = next(f for f in FORMS if f.name == "demo")
    with pytest.raises(ValueError, match="duplicate model form 'demo'"):
        base.register_form(demo)
    with pytest.raises(ValueError, match="order 0 is taken"):
        base.register_form(base.ModelForm(**{**demo.__dict__, "name": "other"}))
    assert loading.model_forms() == FORMS


def _example_on_disk(form, tmp_path: Path) -> str:
    """The form's example SPEC, with the file or folder it names made under tmp_path (empty: never loaded)."""
    if form.name in ("export", "torchscript"):
        (tmp_path / form.example).write_bytes(b"")
        return str(tmp_path / form.example)
    if form.name == "huggingface":
        (tmp_path / "vit-folder").mkdir()
        return str(tmp_path / "vit-folder") + "/"
    return form.example


@pytest.mark.parametrize("form", FORMS, ids=[f.name for f in FORMS])
def test_each_example_dispatches_to_its_own_loader(form, tmp_path, monkeypatch):
    """load_model hands the example to this form's loader (swapped for a recorder: no weights are read)."""
    spec = _example_on_disk(form, tmp_path)
    assert loading.form_for(spec) is form
    calls = []
    recorder = dataclasses.replace(form, load=lambda *args: calls.append(args) or loading.LoadedModel(
        model=nn.Identity(), spec=spec, kind="module"))
    monkeypatch.setitem(base._FORMS, form.name, recorder)
    assert loading.load_model(spec).spec == spec
    assert calls == [(spec, None, False)]


def test_unrecognised_specs_keep_their_messages(tmp_path):
    with pytest.raises(ModelError) as e:
        loading.load_model(str(tmp_path / "missing" / "model.pt"))
    assert "model file not found" in str(e.value) and "timm:NAME" in str(e.value)
    with pytest.raises(ModelError, match="Did you mean: resnet18"):
        loading.load_model("resnet181")
    assert loading.form_for("no/such.py:build") is not None  # a file factory: its loader says the file is missing


def test_the_card_weights_line_comes_from_the_forms():
    by_kind = {k: v for f in FORMS for k, v in f.weights.items()}
    assert by_kind["torchscript"] == "inside the TorchScript archive"
    for kind, text in by_kind.items():
        assert loading.LoadedModel(model=nn.Identity(), spec="x", kind=kind).weights_text() == text
    assert loading.LoadedModel(model=nn.Identity(), spec="x", kind="timm").weights_text() == "none given"


def test_the_report_title_comes_from_the_forms():
    from reportgen.checks import model_title

    class Net(nn.Module):
        pass

    scripted = Net()
    scripted.original_name = "Traced"
    assert model_title(Net(), "resnet18", "torchvision") == "Net (resnet18)"
    assert model_title(Net(), "net", "torchvision") == "Net"
    assert model_title(scripted, "a/b/m.pt", "torchscript") == "Traced"
    assert model_title(Net(), "a/b/exported.pt2", "export") == "exported"
    assert model_title(scripted, "a/b/m.py:build", "factory") == "Net"  # other kinds: the class name, never a path
