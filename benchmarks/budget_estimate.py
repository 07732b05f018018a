"""The time budget's estimate against the measured time, per section, from a report built with ``--budget``.

    python benchmarks/budget_estimate.py [--recompute] OUT/report.json [...]

Prints each section's estimated and measured seconds (cached or skipped sections have no measured time), the
ratio, and the totals over the sections that ran (reportgen/planning/; a report without ``--budget`` has no plan).
``--recompute``: the estimates of this checkout's formulas from the probe and options the report recorded.
"""

from __future__ import annotations

import json
import sys


def recompute(data: dict) -> dict[str, float]:
    """Each section's estimate by this checkout's formulas, from the report's recorded probe and options."""
    from reportgen import registry
    from reportgen.config import make_config
    from reportgen.planning.cost import BATCH_EFFICIENCY, Measure, bounded_efficiency, estimate, feature_pass_s

    pm = data["plan"]["measure"]
    m = Measure(fwd=pm["forward_s_per_image"], grad=pm["grad_s_per_image"], n=pm["images"], size=pm["input_size"],
                macs=pm["macs"], attends=bool(pm.get("attends", False)), fixed_size=bool(pm.get("fixed_size", False)),
                batch_eff=bounded_efficiency(pm.get("batch_efficiency", BATCH_EFFICIENCY)),
                small_grad=pm.get("small_grad_s"))
    cfg = make_config(data["config"]["preset"], technique_overrides=data["config"]["techniques"])
    out = {"features": feature_pass_s(m)}
    for sid in data["plan"]["estimate_s"]:
        if sid != "features":
            out[sid] = estimate(registry.get(sid), cfg.options(sid), m, cfg)
    return out


def table(path: str, again: bool = False) -> list[str]:
    data = json.loads(open(path, encoding="utf-8").read())
    plan = data.get("plan")
    if not plan:
        return [f"{path}: no plan (built without --budget)"]
    est, got = recompute(data) if again else plan["estimate_s"], plan["measured_s"]
    out = [f"{path}: {plan['verdict']}", f"{'section':<22} {'estimate s':>10} {'measured s':>10} {'est/meas':>8}"]
    te = tm = 0.0
    for sid in sorted(est, key=lambda k: -(got.get(k) or 0)):
        m = got.get(sid)
        if m is None:
            out.append(f"{sid:<22} {est[sid]:10.1f} {'-':>10}")
            continue
        te, tm = te + est[sid], tm + m
        out.append(f"{sid:<22} {est[sid]:10.1f} {m:10.1f} {est[sid] / max(m, 0.05):8.2f}")
    out.append(f"{'total (measured ones)':<22} {te:10.1f} {tm:10.1f} {te / max(tm, 0.05):8.2f}")
    out.append(f"build total_time_s: {data.get('total_time_s')}")
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    for p in [a for a in args if a != "--recompute"]:
        print("\n".join(table(p, "--recompute" in args)), "\n", sep="")
