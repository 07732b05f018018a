"""``reportgen export REPORT --to mlflow | model-card``: a built report into the registries reviewers use.

REPORT is a report folder, its ``report.json``, or a single-file ``.html`` report. Nothing is recomputed: the
key numbers come from ``report.json`` (:func:`key_numbers`), the pictures and the summary from the folder.

- ``--to mlflow`` logs the key numbers as metrics, the run's model, preset and image count as params, and
  ``report.json``, ``summary.md`` / ``card.png`` (when the folder has them) and a single-file copy of the report
  as artifacts of one MLflow run. The tracking URI is MLflow's own choice (``MLFLOW_TRACKING_URI``, else its
  default) unless ``--tracking-uri`` names one; MLflow is the optional extra ``pip install reportgen[mlflow]``.
- ``--to model-card --out FILE`` writes a Hugging Face model-card fragment: YAML front matter whose
  ``model-index`` holds the accuracy results, then the summary (``summary.md`` when present, else a table of
  the key numbers) and ``card.png`` by relative path.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import click

from ..errors import ReportgenError

SUMMARY, CARD_PNG = "summary.md", "card.png"
INSTALL_HINT = "MLflow is not installed: pip install reportgen[mlflow]"
CALIBRATION_KEYS = ("ece", "ece_equal_mass", "nll", "brier", "temperature", "ece_before_temperature_heldout",
                    "ece_after_temperature")


@dataclass
class Exported:
    """A built report as read back: ``data`` (report.json), the folder (None for a single file) and the file
    that holds the whole report as one page (None: a folder that is not single-file)."""

    data: dict[str, Any]
    folder: Path | None
    single_file: Path | None

    def beside(self, name: str) -> Path | None:
        """``summary.md`` / ``card.png`` beside ``index.html`` (None when absent or for a single file)."""
        p = self.folder / name if self.folder is not None else None
        return p if p is not None and p.is_file() else None


@dataclass
class KeyNumbers:
    """The numbers a registry gets: ``metrics`` (name -> float) and ``text`` (name -> string, e.g. a method)."""

    metrics: dict[str, float] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)


def read_report(path: str | Path) -> Exported:
    """The report at ``path`` (folder, ``report.json`` or single ``.html``), or a one-line ReportgenError."""
    from .atomic import is_single_file_target
    from .rerender import read_report_json

    p = Path(path)
    if p.is_file() and p.name == "report.json":
        p = p.parent
    if is_single_file_target(p):
        return Exported(read_report_json(p), None, p)
    if not p.is_dir():
        raise ReportgenError(f"{p} is not a report folder, report.json or single-file .html report")
    return Exported(read_report_json(p), p, None)


def _results(data: dict, section_id: str) -> dict | None:
    """A section's results, or None when it is absent, failed or unsupported."""
    for s in data.get("sections", []):
        if s.get("id") == section_id and not s.get("error"):
            r = s.get("results") or {}
            return None if "unsupported" in r else r
    return None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def key_numbers(data: dict) -> KeyNumbers:
    """Top-1/top-5 accuracy (model card section), the calibration numbers and the most faithful attribution
    method with its score, from ``report.json``; a comparison gives each model's accuracy and ECE by name."""
    out = KeyNumbers()
    card = _results(data, "card") or {}
    for key in ("top1_accuracy", "top5_accuracy", "labelled_images"):
        if (v := _num(card.get(key))) is not None:
            out.metrics[key] = v
    cal = _results(data, "calibration") or {}
    for key in CALIBRATION_KEYS:
        v = cal.get(key)
        if isinstance(v, dict):  # a comparison: model name -> value
            out.metrics.update({f"calibration.{key}.{n}": float(x) for n, x in v.items() if _num(x) is not None})
        elif (x := _num(v)) is not None:
            out.metrics[f"calibration.{key}"] = x
    for name, acc in (data.get("accuracy") or {}).items():  # compare reports
        if _num(acc) is not None:
            out.metrics[f"top1_accuracy.{name}"] = float(acc)
    faith = _results(data, "faithfulness") or {}
    best = faith.get("most_faithful")
    if best:
        out.text["faithfulness.most_faithful"] = str(best)
        row: dict = next((m for m in faith.get("methods", []) if m.get("method") == best), {})
        if (v := _num(row.get("score"))) is not None:
            out.metrics["faithfulness.best_score"] = v
    return out


def _metric_name(name: str) -> str:
    """MLflow allows letters, digits and ``_ - . / space`` in a metric name."""
    return re.sub(r"[^\w\-./ ]", "_", name)


def _params(data: dict) -> dict[str, str]:
    images = data.get("images") or {}
    cfg = data.get("config") or {}
    model = data.get("model") or {}
    params = {"model": model.get("spec"), "model_kind": model.get("kind"), "model_hash": data.get("model_hash"),
              "preset": cfg.get("preset"), "images": images.get("count"), "images_folder": images.get("folder"),
              "report_kind": data.get("kind", "build"), "reportgen_version": data.get("reportgen")}
    return {k: str(v)[:500] for k, v in params.items() if v is not None}


def export_mlflow(rep: Exported, *, experiment: str | None = None, run_name: str | None = None,
                  tracking_uri: str | None = None, cache_dir: Path | None = None,
                  log: Callable[[str], None] = lambda s: None) -> tuple[str, str]:
    """Log ``rep`` to one MLflow run; returns (run id, tracking URI). ReportgenError when MLflow is missing."""
    try:
        import mlflow
        from mlflow.exceptions import MlflowException
    except ImportError:
        raise ReportgenError(INSTALL_HINT) from None
    nums = key_numbers(rep.data)
    try:
        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        if experiment:
            mlflow.set_experiment(experiment)
        with mlflow.start_run(run_name=run_name or str(rep.data.get("title") or "reportgen report")[:250]) as run:
            mlflow.log_metrics({_metric_name(k): v for k, v in nums.metrics.items()})
            mlflow.log_params(_params(rep.data))
            mlflow.set_tags({"reportgen." + _metric_name(k): v[:500] for k, v in nums.text.items()})
            _log_artifacts(mlflow, rep, cache_dir, log)
            return run.info.run_id, mlflow.get_tracking_uri()
    except MlflowException as e:
        raise ReportgenError(f"MLflow: {' '.join(str(e).split())[:400]}") from None


def _log_artifacts(mlflow, rep: Exported, cache_dir: Path | None, log: Callable[[str], None]) -> None:
    """report.json, summary.md, card.png, and the report as one HTML file, ``report.html`` (rendered from the cached
    tree; a single-file REPORT keeps its own name)."""
    with tempfile.TemporaryDirectory(prefix="reportgen-export-") as tmp:
        data_file = Path(tmp) / "report.json"
        data_file.write_text(json.dumps(rep.data, indent=1), encoding="utf-8")
        mlflow.log_artifact(str(data_file))
        for name in (SUMMARY, CARD_PNG):
            if (p := rep.beside(name)) is not None:
                mlflow.log_artifact(str(p))
        if rep.single_file is not None:
            mlflow.log_artifact(str(rep.single_file))
            return
        assert rep.folder is not None
        page = Path(tmp) / "report.html"
        try:
            _render_single_file(rep.folder, page, cache_dir)
        except ReportgenError as e:
            log(f"no single-file copy ({e}); logging the report folder under report/ instead")
            mlflow.log_artifacts(str(rep.folder), artifact_path="report")
            return
        mlflow.log_artifact(str(page))


def _render_single_file(folder: Path, page: Path, cache_dir: Path | None) -> None:
    from ..cache import Cache, default_cache_dir
    from .rerender import rerender

    rerender(folder, single_file=True, new_out=page, cache=Cache(cache_dir or default_cache_dir()))


def _yaml(v: Any) -> str:
    """A YAML scalar: numbers as they are, strings double-quoted (a JSON string is a valid YAML one)."""
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    return repr(v) if isinstance(v, (int, float)) else json.dumps(str(v), ensure_ascii=False)


def model_card(rep: Exported, out: Path, *, dataset: str | None = None, model_name: str | None = None) -> str:
    """The Hugging Face model-card fragment of ``rep`` (front matter with ``model-index``, then Markdown)."""
    data = rep.data
    if data.get("kind") == "compare":
        raise ReportgenError("a model card describes one model and this report compares two: export the build "
                             "report of the model the card is for")
    nums = key_numbers(data)
    folder = str((data.get("images") or {}).get("folder") or "images").rstrip("/")
    name = model_name or str((data.get("model") or {}).get("spec") or data.get("title") or "model")
    lines = ["---", "pipeline_tag: image-classification", "tags:", "- image-classification", "- reportgen"]
    metrics = [(kind, label, nums.metrics[key]) for kind, label, key in (
        ("accuracy", "top-1 accuracy", "top1_accuracy"), ("top_5_accuracy", "top-5 accuracy", "top5_accuracy"))
        if key in nums.metrics]
    if metrics:
        lines += ["model-index:", f"- name: {_yaml(name)}", "  results:", "  - task:",
                  "      type: image-classification", "    dataset:",
                  f"      name: {_yaml(dataset or Path(folder).name or folder)}",
                  f"      type: {_yaml(dataset or 'imagefolder')}", "    metrics:"]
        for kind, label, value in metrics:
            lines += [f"    - type: {kind}", f"      value: {_yaml(round(value, 4))}", f"      name: {_yaml(label)}"]
    lines += ["---", ""]
    summary = rep.beside(SUMMARY)
    if summary is not None:
        lines += [summary.read_text(encoding="utf-8").rstrip(), ""]
    else:
        lines += [f"## {data.get('title') or name}", "", "| key number | value |", "| --- | --- |"]
        lines += [f"| {k} | {v:.4g} |" for k, v in nums.metrics.items()]
        lines += [f"| {k} | {v} |" for k, v in nums.text.items()] + [""]
    card = rep.beside(CARD_PNG)
    if card is not None:
        rel = Path(os.path.relpath(card.resolve(), out.resolve().parent)).as_posix()
        lines += [f"![reportgen card: predictions, explanations and key numbers]({rel})", ""]
    lines.append(f"*Generated by reportgen {data.get('reportgen', '')} from the report of {folder} "
                 f"({(data.get('images') or {}).get('count', '?')} images).*")
    return "\n".join(lines) + "\n"


@click.command("export")
@click.argument("report", type=click.Path(exists=True))
@click.option("--to", "to", required=True, type=click.Choice(["mlflow", "model-card"]), help="Where the report goes.")
@click.option("--out", type=click.Path(dir_okay=False), help="model-card: the Markdown file to write.")
@click.option("--dataset", help="model-card: the dataset's Hub id (default: the image folder's name, type "
              "imagefolder).")
@click.option("--model-name", help="model-card: the model-index name (default: the report's model).")
@click.option("--experiment", help="mlflow: experiment name (default: MLflow's, e.g. $MLFLOW_EXPERIMENT_NAME).")
@click.option("--run-name", help="mlflow: run name (default: the report's title).")
@click.option("--tracking-uri", help="mlflow: tracking URI (default: $MLFLOW_TRACKING_URI, else MLflow's default).")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="mlflow: cache folder the build used, to render "
              "the single-file copy (default: the user cache directory).")
def export_command(report, to, out, dataset, model_name, experiment, run_name, tracking_uri, cache_dir) -> None:
    """Export a built REPORT (folder, report.json or single .html) to an MLflow run (key numbers as metrics;
    report.json, summary.md, card.png and the report as one HTML file as artifacts) or as a Hugging Face
    model-card fragment (--out FILE). Exit 0 done, 2 bad input (or MLflow missing / refusing)."""
    try:
        if to == "model-card" and not out:
            raise ReportgenError("--to model-card needs --out FILE (the Markdown file to write)")
        if to == "mlflow" and out:
            raise ReportgenError("--out is for --to model-card; MLflow keeps the files in its run")
        rep = read_report(report)
        if to == "model-card":
            target = Path(out)
            text = model_card(rep, target, dataset=dataset, model_name=model_name)
            try:
                target.write_text(text, encoding="utf-8")
            except OSError as e:
                raise ReportgenError(f"cannot write {target}: {e}") from None
            click.echo(f"Model card written to {target.resolve()} ({len(text):,} characters).")
            return
        run_id, uri = export_mlflow(rep, experiment=experiment, run_name=run_name, tracking_uri=tracking_uri,
                                    cache_dir=Path(cache_dir) if cache_dir else None,
                                    log=lambda s: click.echo(s, err=True))
        click.echo(f"Logged to MLflow run {run_id} at {uri}.")
    except ReportgenError as e:
        click.echo(f"error: {' '.join(str(e).split())}", err=True)
        sys.exit(2)


__all__ = ["Exported", "KeyNumbers", "read_report", "key_numbers", "export_mlflow", "model_card", "export_command"]
