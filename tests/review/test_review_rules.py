"""Rules files: validated before any work (exit 2, one line), evaluated against key numbers and changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from reportgen.cli import main
from reportgen.errors import ConfigError
from reportgen.review.change import change
from reportgen.review.keys import Key
from reportgen.review.rules import RuleSet, default_rules, evaluate, load_rules, parse_rule

BAD = {
    'rule = 3': "no [[rule]] tables",
    '[[rule]]\nmetric = "top1"\nmn = 0.7': "unknown key 'mn' (did you mean min",
    '[[rule]]\nmetric = "top_1"\nmin = 0.7': "unknown metric 'top_1' (did you mean top1",
    '[[rule]]\nmetric = "top1"': "no condition",
    '[[rule]]\nmetric = "top1"\nmin = "high"': "min must be a number",
    '[[rule]]\nmetric = "sanity"\nmin = 0.5': "is a verdict",
    '[[rule]]\nmetric = "top1"\nmax_drop = -1': "max_drop must be >= 0",
    'alpha = 2\n[[rule]]\nmetric = "top1"\nmin = 0.5': "alpha must be between 0 and 1",
    '[[rule]\nmetric = "top1"': "is not valid TOML",
    'thresholds = 1': "unknown top-level key 'thresholds'",
}


@pytest.mark.parametrize("text", list(BAD))
def test_bad_rules_files_are_named_in_one_line(tmp_path, text):
    p = tmp_path / "rules.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=None) as e:
        load_rules(p)
    assert BAD[text] in str(e.value) and "\n" not in str(e.value)


def test_a_bad_rules_file_exits_2_before_any_model_is_loaded(tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nmetric = "top1"\nminimum = 0.7\n')
    missing_model = f"{tmp_path / 'nope.py'}:build"  # would fail to load: the rules error must come first
    images = tmp_path / "images"
    images.mkdir()
    r = CliRunner().invoke(main, ["build", "--model", missing_model, "--images", str(images), "--out",
                                  str(tmp_path / "out"), "--rules", str(rules), "--no-cache"])
    assert r.exit_code == 2, r.output
    assert "rules file" in r.output and "minimum" in r.output and "nope.py" not in r.output
    assert not (tmp_path / "out").exists()
    r = CliRunner().invoke(main, ["build", "--model", missing_model, "--images", str(images), "--out",
                                  str(tmp_path / "out"), "--baseline", str(tmp_path / "old"), "--no-cache"])
    assert r.exit_code == 2 and "baseline" in r.output and "nope.py" not in r.output
    rel = tmp_path / "rel.toml"
    rel.write_text('[[rule]]\nmetric = "top1"\nno_drop_beyond_noise = true\n')
    r = CliRunner().invoke(main, ["build", "--model", missing_model, "--images", str(images), "--out",
                                  str(tmp_path / "out"), "--rules", str(rel), "--no-cache"])
    assert r.exit_code == 2 and "relative to a baseline" in r.output


def _key(name, value, n=100, k=None, better="higher"):
    fam = name.split(".")[0]
    return Key(name, fam, name, value, n, None, better, k)


def test_rules_evaluate_absolute_and_relative_conditions():
    old = {"top1": _key("top1", 0.9, 100, 90), "per_class_recall.cat": _key("per_class_recall.cat", 0.8, 10, 8),
           "per_class_recall.dog": _key("per_class_recall.dog", 0.9, 10, 9), "sanity.saliency":
           _key("sanity.saliency", "passes", None, better="pass"), "ece": _key("ece", 0.05, better="lower")}
    new = {"top1": _key("top1", 0.88, 100, 88), "per_class_recall.cat": _key("per_class_recall.cat", 0.7, 10, 7),
           "per_class_recall.dog": _key("per_class_recall.dog", 0.9, 10, 9), "sanity.saliency":
           _key("sanity.saliency", "fails", None, better="pass"), "ece": _key("ece", 0.09, better="lower")}
    changes = {k: change(old[k], new[k]) for k in new}
    rules = RuleSet(tuple(parse_rule(e, "t") for e in [
        {"metric": "top1", "min": 0.89},
        {"metric": "per_class_recall", "max_drop": 0.05},
        {"metric": "sanity", "no_drop_beyond_noise": True},
        {"metric": "ece", "max_drop": 0.03},
        {"metric": "top1", "no_drop_beyond_noise": True},
        {"metric": "brier", "max": 0.2},  # the report has no such number: fails
    ]))
    out = evaluate(rules, new, changes)
    failed = {(o.rule, o.metric) for o in out if not o.passed}
    assert failed == {("top1 >= 0.89", "top1"), ("per_class_recall: max drop 0.05", "per_class_recall.cat"),
                      ("sanity: no new failure", "sanity.saliency"), ("ece: max drop 0.03", "ece"),
                      ("brier <= 0.2", "brier")}
    line = next(o for o in out if o.metric == "top1" and not o.passed).line()
    assert line.startswith("FAIL") and "0.88" in line and ">= 0.89" in line
    # the default rules from the baseline: a 2-point drop on 100 images (unpaired) is within noise
    d = evaluate(default_rules(new, old), new, changes)
    assert {o.metric for o in d if not o.passed} == {"sanity.saliency"}


def test_the_documented_example_rules_file_is_valid(tmp_path):
    doc = (Path(__file__).resolve().parents[2] / "docs" / "review.md").read_text(encoding="utf-8")
    block = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    p = tmp_path / "rules.toml"
    p.write_text(block)
    assert len(load_rules(p).rules) >= 3
