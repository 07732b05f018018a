"""Rules: pass/fail conditions on a report's key numbers, absolute or relative to a baseline.

A rules file is TOML, validated before any work (bad input, exit 2, one line naming the problem)::

    alpha = 0.05                  # optional: significance level of "beyond noise" (default 0.05)

    [[rule]]
    metric = "top1"               # a key number, or a family (every member): see reportgen.review.keys
    min = 0.70                    # absolute: value >= min   (also: max = ...)

    [[rule]]
    metric = "top1"
    no_drop_beyond_noise = true   # relative: not worse than the baseline beyond its noise

    [[rule]]
    metric = "per_class_recall"   # every class
    max_drop = 0.05               # relative: at most 0.05 worse than the baseline (lower-is-better: rise)

    [[rule]]
    metric = "sanity"
    must_pass = true              # a verdict metric: every method passes its sanity checks

With a baseline and no rules file, :func:`default_rules` applies: no key number worse beyond its noise, no
method that passed its sanity checks now failing them.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .change import Change, fmt
from .keys import FAMILIES, Key

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONDITIONS = ("min", "max", "max_drop", "no_drop_beyond_noise", "must_pass")
RELATIVE = ("max_drop", "no_drop_beyond_noise")
RULE_KEYS = ("metric", "name", *CONDITIONS)


@dataclass(frozen=True)
class Rule:
    """One condition set on ``metric`` (a key number's name, or a family: then on each member)."""

    metric: str
    min: float | None = None
    max: float | None = None
    max_drop: float | None = None
    no_drop_beyond_noise: bool = False
    must_pass: bool = False
    name: str | None = None

    @property
    def relative(self) -> bool:
        return self.max_drop is not None or self.no_drop_beyond_noise

    def text(self) -> str:
        """``top1 >= 0.7``, ``top1: no drop beyond noise``, ``per_class_recall: max drop 0.05``."""
        if self.name:
            return self.name
        parts = []
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        if self.max_drop is not None:
            parts.append(f"max drop {self.max_drop:g}")
        if self.no_drop_beyond_noise:
            parts.append("no drop beyond noise" if self.metric.split(".")[0] != "sanity" else "no new failure")
        if self.must_pass:
            parts.append("must pass")
        sep = " " if parts and parts[0][0] in "<>" else ": "
        return f"{self.metric}{sep}{', '.join(parts)}"


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    alpha: float = 0.05
    source: str = "no rules"


@dataclass(frozen=True)
class Outcome:
    """One rule on one key number: passed or not, with the value and threshold as text."""

    rule: str
    metric: str
    passed: bool
    value: str
    threshold: str

    def line(self) -> str:
        return f"{'pass' if self.passed else 'FAIL'}: {self.rule}: {self.metric} = {self.value} (threshold: " \
               f"{self.threshold})"


def _bad(where: str, msg: str) -> ConfigError:
    return ConfigError(f"rules file {where}: {msg}")


def _number(where: str, k: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _bad(where, f"{k} must be a number, not {v!r}")
    return float(v)


def parse_rule(entry: Any, where: str) -> Rule:
    """One ``[[rule]]`` table, checked."""
    if not isinstance(entry, dict):
        raise _bad(where, "each [[rule]] must be a table")
    for k in entry:
        if k not in RULE_KEYS:
            close = difflib.get_close_matches(k, RULE_KEYS, n=2)
            raise _bad(where, f"unknown key {k!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")
                       + f"; known: {', '.join(RULE_KEYS)}")
    metric = entry.get("metric")
    if not isinstance(metric, str) or not metric:
        raise _bad(where, "metric is missing (e.g. metric = \"top1\")")
    family = metric.split(".", 1)[0]
    if family not in FAMILIES:
        close = difflib.get_close_matches(family, FAMILIES, n=2)
        raise _bad(where, f"unknown metric {metric!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")
                   + f"; known: {', '.join(FAMILIES)} (a family, or family.member such as faithfulness.Grad-CAM)")
    if not any(k in entry for k in CONDITIONS):
        raise _bad(where, f"{metric}: no condition (give one of {', '.join(CONDITIONS)})")
    kw: dict[str, Any] = {"metric": metric, "name": str(entry["name"]) if "name" in entry else None}
    for k in ("min", "max", "max_drop"):
        if k in entry:
            if family == "sanity":
                raise _bad(where, f"{metric} is a verdict: use must_pass or no_drop_beyond_noise, not {k}")
            kw[k] = _number(where, k, entry[k])
    if kw.get("max_drop") is not None and kw["max_drop"] < 0:
        raise _bad(where, f"max_drop must be >= 0, not {kw['max_drop']:g}")
    for k in ("no_drop_beyond_noise", "must_pass"):
        if k in entry:
            if not isinstance(entry[k], bool):
                raise _bad(where, f"{k} must be true or false, not {entry[k]!r}")
            kw[k] = entry[k]
    if kw.get("must_pass") and family != "sanity":
        raise _bad(where, f"must_pass is for verdicts (sanity), not {metric}")
    return Rule(**kw)


def load_rules(path: str | Path) -> RuleSet:
    """The rules file at ``path``, validated (ConfigError: one line naming the problem)."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise _bad(str(p), f"cannot be read ({e.strerror or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise _bad(str(p), f"is not valid TOML ({e})") from None
    for k in data:
        if k not in ("rule", "alpha"):
            raise _bad(str(p), f"unknown top-level key {k!r} (expected [[rule]] tables and alpha)")
    entries = data.get("rule", [])
    if not isinstance(entries, list) or not entries:
        raise _bad(str(p), "no [[rule]] tables")
    alpha = _number(str(p), "alpha", data.get("alpha", 0.05))
    if not 0 < alpha < 1:
        raise _bad(str(p), f"alpha must be between 0 and 1, not {alpha:g}")
    rules = tuple(parse_rule(e, f"{p} (rule {i + 1})") for i, e in enumerate(entries))
    return RuleSet(rules, alpha, str(p))


def require_baseline(rules: RuleSet, has_baseline: bool) -> None:
    """Relative rules need a baseline (bad input otherwise)."""
    rel = [r for r in rules.rules if r.relative]
    if rel and not has_baseline:
        raise ConfigError(f"rules file {rules.source}: rule '{rel[0].text()}' is relative to a baseline; "
                          "give --baseline OLD (or drop the rule)")


def default_rules(new: dict[str, Key], old: dict[str, Key], alpha: float = 0.05) -> RuleSet:
    """No key number worse beyond its noise; no method that passed its sanity checks now failing them."""
    families = []
    for k in new.values():
        if k.name in old and k.family not in families and k.family != "drift":
            families.append(k.family)
    return RuleSet(tuple(Rule(f, no_drop_beyond_noise=True) for f in families), alpha,
                   "default rules derived from the baseline")


def _members(rule: Rule, keys: dict[str, Key]) -> list[Key]:
    if rule.metric in keys:
        return [keys[rule.metric]]
    return [k for k in keys.values() if k.family == rule.metric]


def _check(rule: Rule, key: Key, ch: Change | None) -> tuple[bool, str, str]:
    """(passed, value text, threshold text) of one rule on one key number."""
    v = key.value
    value = fmt(v) + (f" (n = {key.n})" if key.n else "")
    fails, thresholds = [], []
    if rule.min is not None:
        thresholds.append(f">= {rule.min:g}")
        fails.append(not isinstance(v, float) or v < rule.min)
    if rule.max is not None:
        thresholds.append(f"<= {rule.max:g}")
        fails.append(not isinstance(v, float) or v > rule.max)
    if rule.must_pass:
        thresholds.append("passes")
        fails.append(v != "passes")
    if rule.relative and ch is not None:
        value = ch.describe()
        if rule.max_drop is not None and ch.delta is not None:
            drop = -ch.delta if key.better == "higher" else ch.delta
            thresholds.append(f"drop <= {rule.max_drop:g}")
            fails.append(drop > rule.max_drop + 1e-12)
        if rule.no_drop_beyond_noise:
            thresholds.append("no new failure" if key.better == "pass" else "no drop beyond noise")
            fails.append(bool(ch.worse and ch.beyond_noise))
    elif rule.relative:
        thresholds.append("baseline has no such number: not judged")
    return not any(fails), value, "; ".join(thresholds)


def evaluate(rules: RuleSet, keys: dict[str, Key], changes: dict[str, Change]) -> list[Outcome]:
    """Every rule on every key number it names; a rule naming a number the report lacks fails."""
    out = []
    for r in rules.rules:
        members = _members(r, keys)
        if not members:
            out.append(Outcome(r.text(), r.metric, False, "missing (the report has no such number)", r.text()))
        for k in members:
            ok, value, threshold = _check(r, k, changes.get(k.name))
            out.append(Outcome(r.text(), k.name, ok, value, threshold))
    return out


__all__ = ["Rule", "RuleSet", "Outcome", "load_rules", "default_rules", "evaluate", "require_baseline",
           "parse_rule"]
