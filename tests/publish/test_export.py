"""reportgen export: key numbers from report.json; an MLflow run in a local file store read back with MlflowClient
(metrics equal report.json's, the files logged); a Hugging Face model-card fragment whose model-index holds the
accuracy; bad input and a missing MLflow exit 2 with one line."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner
from PIL import Image

from reportgen import demo
from reportgen.cli import main
from reportgen.publish.export import key_numbers

SUMMARY_TEXT = "# Review\n\nVerdict: no key number is worse beyond its noise.\n"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A demo report (card + calibration) with its stored tree in a private cache, plus the summary.md and
    card.png the review step writes beside index.html."""
    from reportgen.build import build_report

    root = tmp_path_factory.mktemp("export")
    cache = root / "cache"
    res = build_report("demo", demo.images_dir(), root / "report", preset="minimal", only=["card", "calibration"],
                       device="cpu", max_images=40, cache_dir=cache)
    (res.out / "summary.md").write_text(SUMMARY_TEXT, encoding="utf-8")
    Image.new("RGB", (40, 20), (200, 30, 30)).save(res.out / "card.png")
    data = json.loads((res.out / "report.json").read_text())
    return res.out, cache, data


def _results(data, sid):
    return next(s["results"] for s in data["sections"] if s["id"] == sid)


def test_key_numbers_read_accuracy_calibration_and_the_most_faithful_method():
    data = {"sections": [
        {"id": "card", "results": {"top1_accuracy": 0.8, "top5_accuracy": 0.95, "labelled_images": 50}},
        {"id": "calibration", "results": {"ece": 0.05, "nll": 0.6, "temperature": 1.4, "per_class_ece": []}},
        {"id": "faithfulness", "results": {"most_faithful": "SmoothGrad", "methods": [
            {"method": "saliency", "score": 0.1}, {"method": "SmoothGrad", "score": 0.3}]}},
        {"id": "sanity", "error": "RuntimeError: boom", "results": {}},
    ]}
    k = key_numbers(data)
    assert k.metrics == {"top1_accuracy": 0.8, "top5_accuracy": 0.95, "labelled_images": 50.0,
                         "calibration.ece": 0.05, "calibration.nll": 0.6, "calibration.temperature": 1.4,
                         "faithfulness.best_score": 0.3}
    assert k.text == {"faithfulness.most_faithful": "SmoothGrad"}
    unsupported = {"sections": [{"id": "calibration", "results": {"unsupported": "calibration needs true labels"}}]}
    assert key_numbers(unsupported).metrics == {}


def test_mlflow_run_in_a_local_file_store_holds_the_report(built, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="mlflow missing: pip install -e .[mlflow]")
    from mlflow.tracking import MlflowClient

    out, cache, data = built
    uri = (tmp_path / "mlruns").as_uri()  # file:///...: a local file store, no server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file stores unless asked
    r = CliRunner().invoke(main, ["export", str(out / "report.json"), "--to", "mlflow", "--experiment", "review",
                                  "--cache-dir", str(cache)])
    assert r.exit_code == 0, r.output
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("review")
    (run,) = client.search_runs([exp.experiment_id])
    card, cal = _results(data, "card"), _results(data, "calibration")
    m = run.data.metrics
    assert m["top1_accuracy"] == pytest.approx(card["top1_accuracy"])
    assert m["top5_accuracy"] == pytest.approx(card["top5_accuracy"])
    for key in ("ece", "ece_equal_mass", "nll", "brier", "temperature", "ece_after_temperature"):
        assert m[f"calibration.{key}"] == pytest.approx(cal[key]), key
    assert run.data.params["model"] == "demo" and run.data.params["preset"] == "minimal"
    assert run.data.params["images"] == "40"
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.json", "summary.md", "card.png", "report.html"} <= files, files
    page = client.download_artifacts(run.info.run_id, "report.html", str(tmp_path))
    html = open(page, encoding="utf-8").read()
    assert 'id="reportgen-report"' in html and "assets/" not in html.split("<body", 1)[1][:2000]
    mlflow.set_tracking_uri(None)


def test_missing_mlflow_is_one_line_and_exit_2(built, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    r = CliRunner().invoke(main, ["export", str(built[0]), "--to", "mlflow"])
    assert r.exit_code == 2
    assert r.output.strip() == "error: MLflow is not installed: pip install reportgen[mlflow]"


def test_model_card_fragment_holds_the_accuracy_summary_and_card(built, tmp_path):
    out, _, data = built
    target = tmp_path / "hub" / "README.md"
    target.parent.mkdir()
    r = CliRunner().invoke(main, ["export", str(out), "--to", "model-card", "--out", str(target)])
    assert r.exit_code == 0, r.output
    text = target.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    top1 = _results(data, "card")["top1_accuracy"]
    yaml = pytest.importorskip("yaml")
    meta = yaml.safe_load(front)
    (entry,) = meta["model-index"]
    (result,) = entry["results"]
    assert result["task"] == {"type": "image-classification"}
    assert result["dataset"]["type"] == "imagefolder" and result["dataset"]["name"] == "images"
    assert result["metrics"][0] == {"type": "accuracy", "value": round(top1, 4), "name": "top-1 accuracy"}
    assert SUMMARY_TEXT.strip() in body
    link = body.split("](", 1)[1].split(")", 1)[0]
    assert (target.parent / link).resolve() == (out / "card.png").resolve()


@pytest.mark.parametrize("args, message", [
    (["--to", "model-card"], "--to model-card needs --out FILE"),
    (["--to", "mlflow", "--out", "x.md"], "--out is for --to model-card"),
])
def test_bad_flags_exit_2(built, args, message):
    r = CliRunner().invoke(main, ["export", str(built[0]), *args])
    assert r.exit_code == 2 and message in r.output


def test_a_folder_that_is_not_a_report_exits_2(tmp_path):
    r = CliRunner().invoke(main, ["export", str(tmp_path), "--to", "model-card", "--out", str(tmp_path / "c.md")])
    assert r.exit_code == 2 and "is not a reportgen report" in r.output
    assert not (tmp_path / "c.md").exists()


def test_a_single_file_report_exports_its_embedded_numbers(built, tmp_path):
    from reportgen.cache import Cache
    from reportgen.publish.rerender import rerender

    out, cache, data = built
    page, _ = rerender(out, single_file=True, new_out=tmp_path / "one.html", cache=Cache(cache))
    target = tmp_path / "card.md"
    r = CliRunner().invoke(main, ["export", str(page), "--to", "model-card", "--out", str(target)])
    assert r.exit_code == 0, r.output
    text = target.read_text(encoding="utf-8")
    top1 = _results(data, "card")["top1_accuracy"]
    ece = _results(data, "calibration")["ece"]
    assert f"value: {round(top1, 4)!r}" in text and f"| calibration.ece | {ece:.4g} |" in text
    assert "![" not in text  # no card.png beside a single file
