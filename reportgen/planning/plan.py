"""The plan: each enabled section's estimated seconds and, under a budget, the options lowered to fit.

While the estimate exceeds the budget, the most expensive section that can still be reduced gives up one step
(about 30 %, at least 1) of the scalable option furthest above its floor (the ``minimal`` preset's value, or 1);
the loop ends when the estimate fits or every floor is reached. If every option is at its floor and the estimate still
exceeds the budget, whole sections are left out (as ``--skip`` would): ``lecture`` sections before ``review`` ones
(:data:`reportgen.registry.Role`), the most expensive first but the last the cheapest that makes the plan fit, each
only where that lowers the total (faithfulness computes the maps of a method whose section is left out); the
overview never; before each section the plan is checked against the time left (:func:`before_section`: slower
sections ahead are reduced or left out, a section left out runs after all when the time left holds it, review
sections left out further on having first call on that time). If even leaving sections out does not fit, the plan
says the budget cannot be met and by how much. The reduced options go through :mod:`reportgen.config`'s checks, so
their bounds hold; the overview lists every reduction and every section left out.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .. import registry
from ..config import Config, _apply
from .cost import DEFAULT_COST_S, Measure, estimate, feature_pass_s, formula_for, measure

if TYPE_CHECKING:
    from ..context import Ctx

#: the feature pass's key in the plan's per-section dictionaries
FEATURES = "features"
#: the largest slowdown re-planning believes (a demo --budget 3m build at load 20 on 2 cores ran 19x slower than its
#: probe said; at the earlier cap of 4x the plan left for the sections after it was 3x too long)
MAX_SLOWDOWN = 25.0
#: re-planning believes the measured slowdown in full once the sections behind it were estimated at this share of
#: the budget (less in proportion before: ViT-B/16's first three sections, 1.5 s of estimate, ran 2x slower than
#: estimated and the re-plan left faithfulness out; the whole build then took 65 % of its budget)
TRUST_SHARE = 0.05
#: a section the plan left out comes back, at its floors, when its estimate at the run's pace fits this share of the
#: time the sections ahead leave (ViT-B/16 under --budget 3m ended at 58 % of its budget: Integrated Gradients'
#: worst-case estimate, every image doubling its steps to the limit, is 3x what a converging run takes)
BRING_BACK_SHARE = 0.8
#: one reduction step keeps this share of an option's value (and always lowers it by at least 1)
STEP = 0.7


@dataclass
class Reduction:
    section: str
    option: str
    before: Any
    after: Any
    floor: Any

    def text(self) -> str:
        return f"{self.section}.{self.option} {self.before} -> {self.after} (floor {self.floor})"


@dataclass
class LeftOut:
    """A section the plan leaves out: every option at its floor did not fit the budget."""

    section: str
    role: str
    estimate_s: float

    def text(self) -> str:
        return f"{self.section} (estimated {self.estimate_s:.0f} s)"


#: the order in which the plan leaves sections out, by role (an absent role is never left out)
LEAVE_OUT_ORDER = {"lecture": 0, "review": 1}


@dataclass
class Plan:
    budget_s: float | None
    measure: Measure
    estimate_s: dict[str, float]
    estimate_before_s: dict[str, float]
    reductions: list[Reduction] = field(default_factory=list)
    defaults: list[str] = field(default_factory=list)
    measured_s: dict[str, float | None] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    replans: list[str] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)
    brought_back: list[LeftOut] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        return sum(self.estimate_s.values())

    @property
    def planned_s(self) -> float:
        """The estimate without the sections brought back (those ran on time the run saved, at its pace)."""
        back = {g.section for g in self.brought_back}
        return sum(v for k, v in self.estimate_s.items() if k not in back)

    @property
    def reachable(self) -> bool:
        return self.budget_s is None or self.planned_s <= self.budget_s

    def verdict(self) -> str:
        total, before = self.total_s, sum(self.estimate_before_s.values())
        if self.budget_s is None:
            return f"estimate {total:.0f} s (no budget: nothing reduced)"
        if not self.reductions:
            return f"estimate {total:.0f} s fits the budget of {self.budget_s:.0f} s: nothing reduced"
        again = (f"; re-planned {_times(len(self.replans))} as the sections ran slower than estimated"
                 if self.replans else "")
        gone = (f"; {len(self.left_out)} sections left out, every option being at its floor"
                if self.left_out else "")
        gone += (f"; {len(self.brought_back)} left out at first but run as time was left" if self.brought_back
                 else "")
        if self.reachable and before <= self.budget_s:  # every reduction came from re-planning
            return (f"estimate {before:.0f} s fit the budget of {self.budget_s:.0f} s, but the sections ran slower "
                    f"than estimated: {len(self.reductions)} options reduced{gone}{again}")
        if self.reachable:
            return (f"estimate {before:.0f} s exceeded the budget of {self.budget_s:.0f} s; "
                    f"{len(self.reductions)} options reduced{gone}, now {self.planned_s:.0f} s at the probe's speed"
                    + (f" ({total:.0f} s with those run as time was left)" if self.brought_back else "") + again)
        return (f"the budget of {self.budget_s:.0f} s cannot be met: with every scalable option at its floor"
                + (" and every section but the overview left out" if self.left_out else "")
                + f" the estimate is {self.planned_s:.0f} s, {self.planned_s - self.budget_s:.0f} s over")

    def lines(self) -> list[str]:
        """The plan as log lines: the verdict, each section's estimate, each reduction."""
        m = self.measure
        out = [f"Plan: {self.verdict()}",
               f"  measured per image: forward {m.fwd * 1e3:.1f} ms, forward+backward {m.grad * 1e3:.1f} ms, "
               f"batched x{m.batch_eff:.2f} "
               f"({m.source}; {m.n} images, {m.size} px" + (f", {m.macs / 1e9:.2f} GMAC)" if m.macs else ")")]
        for sid, s in sorted(self.estimate_s.items(), key=lambda kv: -kv[1]):
            was = self.estimate_before_s.get(sid, s)
            note = " (default cost: no formula)" if sid in self.defaults else ""
            out.append(f"  {sid:<22} {s:8.1f} s" + (f"  (was {was:.1f} s)" if abs(was - s) > 0.05 else "") + note)
        for r in self.reductions:
            out.append(f"  reduced {r.text()}: most expensive section first, to fit the budget")
        for g in self.left_out:
            out.append(f"  left out {g.text()}, a {g.role} section: every option at its floor did not fit")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"budget_s": self.budget_s, "estimate_total_s": round(self.total_s, 1), "reachable": self.reachable,
                "verdict": self.verdict(), "measure": self.measure.to_dict(),
                "estimate_s": {k: round(v, 2) for k, v in self.estimate_s.items()},
                "estimate_before_s": {k: round(v, 2) for k, v in self.estimate_before_s.items()},
                "reductions": [dataclasses.asdict(r) for r in self.reductions],
                "default_cost_sections": list(self.defaults), "default_cost_s": DEFAULT_COST_S,
                "replans": list(self.replans),
                "left_out": [dataclasses.asdict(g) for g in self.left_out],
                "brought_back": [dataclasses.asdict(g) for g in self.brought_back],
                "measured_s": {k: (None if v is None else round(v, 2)) for k, v in self.measured_s.items()}}


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def floor_of(info: registry.TechniqueInfo, name: str) -> int:
    """The lowest value the plan gives option ``name``: the ``minimal`` preset's (an int), else 1."""
    v = getattr(info.default_options("minimal"), name, None)
    return int(v) if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else 1


def _estimates(cfg: Config, techniques: list[registry.TechniqueInfo], m: Measure) -> dict[str, float]:
    return {FEATURES: feature_pass_s(m), **{t.id: estimate(t, cfg.options(t.id), m, cfg) for t in techniques}}


def _step(cfg: Config, t: registry.TechniqueInfo, m: Measure) -> tuple[str, int, int, int] | None:
    """(option, value, lowered value, floor) of the scalable option of ``t`` furthest above its floor whose step
    lowers the estimate (an image count above the run's images does not), or None."""
    opts = cfg.options(t.id)
    now = estimate(t, opts, m, cfg)
    cands = []
    for name in formula_for(t)[1]:
        v = getattr(opts, name, None)
        if isinstance(v, int) and not isinstance(v, bool) and v > (fl := min(floor_of(t, name), v)):
            cands.append((v / fl, name, v, fl))
    for _, name, v, fl in sorted(cands, reverse=True):
        while v > fl:
            new = max(fl, min(v - 1, int(v * STEP)))
            if estimate(t, dataclasses.replace(opts, **{name: new}), m, cfg) < now:
                return name, getattr(opts, name), new, fl
            v = new  # no effect yet (e.g. max_images above the images there are): look further down
    return None


def make_plan(cfg: Config, m: Measure, budget_s: float | None,
              techniques: list[registry.TechniqueInfo] | None = None, features: bool = True) -> Plan:
    """The plan for ``cfg`` (its enabled techniques). Lowers options on ``cfg`` itself when over ``budget_s``."""
    techniques = cfg.enabled() if techniques is None else techniques
    est = _estimates(cfg, techniques, m)
    if not features:
        est.pop(FEATURES)
    plan = Plan(budget_s=budget_s, measure=m, estimate_s=dict(est), estimate_before_s=dict(est),
                defaults=[t.id for t in techniques if formula_for(t)[0] is None])
    if budget_s is None:
        return plan
    first: dict[tuple[str, str], Reduction] = {}
    while sum(est.values()) > budget_s:
        steps = [(est[t.id], t, s) for t in techniques if (s := _step(cfg, t, m)) is not None]
        if not steps:
            break
        _, t, (name, v, new, fl) = max(steps, key=lambda e: e[0])
        _apply(cfg.options(t.id), {name: new}, f"techniques.{t.id}")  # bounds checked as for any value
        first.setdefault((t.id, name), Reduction(t.id, name, v, new, fl)).after = new
        est.update({u.id: estimate(u, cfg.options(u.id), m, cfg) for u in techniques})  # faithfulness reads others
    plan.left_out = _leave_out(cfg, techniques, m, budget_s, est)
    plan.estimate_s = est
    plan.reductions = list(first.values())
    return plan


def _leave_out(cfg: Config, techniques: list[registry.TechniqueInfo], m: Measure, budget_s: float,
               est: dict[str, float]) -> list[LeftOut]:
    """While ``est`` (updated in place) exceeds ``budget_s``: leave out a section of the first role in
    :data:`LEAVE_OUT_ORDER` that has one whose removal lowers the total (it joins ``cfg.skip``): the cheapest whose
    removal makes the plan fit, else the most expensive."""
    out: list[LeftOut] = []
    while sum(est.values()) > budget_s:
        tiers: dict[int, list[tuple[float, registry.TechniqueInfo, dict[str, float]]]] = {}
        for t in techniques:
            if t.role in LEAVE_OUT_ORDER and t.id in est:
                after = _without(cfg, techniques, m, est, t.id)
                if sum(after.values()) < sum(est.values()):
                    tiers.setdefault(LEAVE_OUT_ORDER[t.role], []).append((est[t.id], t, after))
        if not tiers:
            break
        tier = tiers[min(tiers)]
        fits = [e for e in tier if sum(e[2].values()) <= budget_s]
        cost, t, after = min(fits, key=lambda e: e[0]) if fits else max(tier, key=lambda e: e[0])
        cfg.skip.append(t.id)
        out.append(LeftOut(t.id, t.role, cost))
        est.clear()
        est.update(after)
    return out


def _without(cfg: Config, techniques: list[registry.TechniqueInfo], m: Measure, est: dict[str, float],
             tid: str) -> dict[str, float]:
    """``est`` with section ``tid`` left out and the others re-estimated (faithfulness then maps that method)."""
    cfg.skip.append(tid)
    try:
        after = {k: v for k, v in est.items() if k != tid}
        after.update({u.id: estimate(u, cfg.options(u.id), m, cfg) for u in techniques if u.id in after})
    finally:
        cfg.skip.pop()
    return after


def plan_run(ctx: Ctx, budget_s: float | None, plan_only: bool, log: Callable[[str], None]) -> Plan | None:
    """Under ``--budget`` or ``--plan``: measure the model, plan (lowering ``ctx.config``'s options to fit the
    budget) and log the plan; then, unless ``plan_only``, run and time the feature pass. None otherwise."""
    if budget_s is None and not plan_only:
        return None
    plan = make_plan(ctx.config, measure(ctx), budget_s)
    for line in plan.lines():
        log(line)
    if not plan_only:
        t0 = time.perf_counter()
        ctx.features()
        plan.measured_s[FEATURES] = time.perf_counter() - t0
    return plan


def before_section(plan: Plan | None, cfg: Config, done: list[Any], remaining: list[registry.TechniqueInfo],
                   log: Callable[[str], None]) -> str | None:
    """Before the next section (``remaining[0]``): :func:`replan`, then why the plan leaves that section out (None:
    it runs, and a section left out earlier runs when :func:`bring_back` finds the time for it)."""
    replan(plan, cfg, done, remaining, log)
    if plan is None or not remaining:
        return None
    gone = next((g for g in plan.left_out if g.section == remaining[0].id), None)
    if gone is None or bring_back(plan, cfg, done, remaining, log):
        return None
    return (f"left out to fit the time budget (--budget {plan.budget_s:.0f} s): {gone.text()}; every option at its "
            "floor did not fit")


def _pace(plan: Plan, done: list[Any]) -> float:
    """How many times slower than estimated the sections run so far were (at most :data:`MAX_SLOWDOWN`), believed
    in part while they were estimated at less than :data:`TRUST_SHARE` of the budget (fixed costs, a warm-up)."""
    pairs = [(plan.estimate_s[s.id], s.wall_time_s) for s in done
             if s.id in plan.estimate_s and not s.cached and s.wall_time_s is not None]
    est, got = sum(e for e, _ in pairs), sum(g for _, g in pairs)
    raw = min(MAX_SLOWDOWN, got / est) if est > 0 else 1.0
    return 1.0 + (raw - 1.0) * min(1.0, est / (TRUST_SHARE * (plan.budget_s or 1.0)))


def _held(plan: Plan, cfg: Config, t: registry.TechniqueInfo, later: list[registry.TechniqueInfo], ratio: float,
          room: float) -> float:
    """Seconds (at the run's pace) held out of ``room`` for the sections ``later`` in the build that the plan left
    out and that outrank ``t`` (:data:`LEAVE_OUT_ORDER`: a review section before a lecture one), in build order, each
    that fits what is still free: a section comes back by role, not by its place in the build."""
    gone = {g.section for g in plan.left_out}
    rank, held = LEAVE_OUT_ORDER.get(t.role, 0), 0.0
    for u in later:
        if u.id in gone and LEAVE_OUT_ORDER.get(u.role, 0) > rank:
            cost = estimate(u, cfg.options(u.id), plan.measure, cfg) * ratio
            if cost <= room - held:
                held += cost
    return held


def bring_back(plan: Plan, cfg: Config, done: list[Any], remaining: list[registry.TechniqueInfo],
               log: Callable[[str], None]) -> bool:
    """Run ``remaining[0]``, a section the plan left out, after all when its estimate at the run's pace fits
    :data:`BRING_BACK_SHARE` of the time the sections ahead leave (the estimates are worst cases: Integrated
    Gradients counts every doubling round), less the time held for left-out sections of a higher role further on
    (:func:`_held`). It leaves ``cfg.skip`` and ``plan.left_out`` for ``plan.brought_back``."""
    t, ratio = remaining[0], _pace(plan, done)
    left = plan.budget_s - (time.perf_counter() - plan.started) if plan.budget_s is not None else 0.0
    ahead = [u for u in remaining[1:] if u.id not in cfg.skip]
    need = sum(estimate(u, cfg.options(u.id), plan.measure, cfg) for u in ahead) * ratio
    room = BRING_BACK_SHARE * (left - need)
    cfg.skip.remove(t.id)
    own = estimate(t, cfg.options(t.id), plan.measure, cfg)
    held = _held(plan, cfg, t, remaining[1:], ratio, room)
    if own * ratio > room - held:
        cfg.skip.append(t.id)
        if held > 0 and own * ratio <= room:
            log(f"Re-plan: {t.id} stays left out: {held:.0f} s of the time left are held for the left-out sections "
                f"of a higher role further on")
        return False
    gone = next(g for g in plan.left_out if g.section == t.id)
    plan.left_out.remove(gone)
    plan.brought_back.append(LeftOut(t.id, t.role, own))
    plan.estimate_s[t.id] = own
    log(f"Re-plan: after {len(done)} sections {left:.0f} s are left and the {len(ahead)} ahead need {need:.0f} s at "
        f"{ratio:.1f}x the estimate: brought back {t.id} (estimated {own * ratio:.0f} s at this pace)")
    return True


def replan(plan: Plan | None, cfg: Config, done: list[Any], remaining: list[registry.TechniqueInfo],
           log: Callable[[str], None]) -> None:
    """Before the next section: when the sections run so far (``done``) took longer than estimated (the machine's
    load changed since the probe), re-plan the ``remaining`` ones with the probe scaled by that ratio (at most
    :data:`MAX_SLOWDOWN`) into the budget left; new reductions and sections left out join the plan's."""
    if plan is None or plan.budget_s is None or not remaining:
        return
    left = plan.budget_s - (time.perf_counter() - plan.started)
    ratio = _pace(plan, done)
    remaining = [t for t in remaining if t.id not in cfg.skip]  # not those left out already
    ahead = sum(estimate(t, cfg.options(t.id), plan.measure, cfg) for t in remaining) * ratio
    if ratio <= 1.1 or ahead <= left:
        return
    m = dataclasses.replace(plan.measure, fwd=plan.measure.fwd * ratio, grad=plan.measure.grad * ratio)
    sub = make_plan(cfg, m, max(left, 0.0), remaining, features=False)
    if not sub.reductions and not sub.left_out:
        return
    have = {(r.section, r.option): r for r in plan.reductions}
    for r in sub.reductions:
        if (r.section, r.option) in have:
            have[(r.section, r.option)].after = r.after
        else:
            plan.reductions.append(r)
    plan.left_out += sub.left_out
    for t in remaining:  # in the probe's seconds, as the others (faithfulness's follows its sources' options)
        if t.id in sub.estimate_s:
            plan.estimate_s[t.id] = sub.estimate_s[t.id] / ratio
        else:
            plan.estimate_s.pop(t.id, None)
    note = (f"after {len(done)} sections the run is {ratio:.1f}x slower than estimated; {left:.0f} s left for "
            f"{len(remaining)}: " + "; ".join([r.text() for r in sub.reductions]
                                              + [f"left out {g.text()}" for g in sub.left_out]))
    plan.replans.append(note)
    log(f"Re-plan: {note}")


def record_measured(plan: Plan | None, sections: list[Any], report: Any) -> None:
    """The sections' wall times beside the estimate, ``report.json``'s ``plan``, and a note on the card section
    (the overview) listing the reductions."""
    if plan is None:
        return
    for s in sections:
        if s.id in plan.estimate_s:
            plan.measured_s[s.id] = None if s.cached else s.wall_time_s
    report.meta.extra["plan"] = plan.to_dict()
    if plan.budget_s is None or not plan.reductions and not plan.left_out and plan.reachable:
        return
    card = next((s for s in sections if s.id == "card"), None)
    if card is not None:
        card.blocks[0:0] = budget_blocks(plan, sum(v for v in plan.measured_s.values() if v is not None))


def budget_blocks(plan: Plan, measured_s: float) -> list[Any]:
    """The overview's account of a budget that changed the run: a note (the estimate, how many options were lowered
    and sections left out, the time the sections took) and a table of each change."""
    from ..report import Note, Table

    before, budget = sum(plan.estimate_before_s.values()), plan.budget_s or 0.0
    did = [f"{len(plan.reductions)} options lowered (never below the minimal preset's values)"] * bool(plan.reductions)
    did += [f"{len(plan.left_out)} sections left out (not run: rebuild without --budget, or with a larger one, "
            "for them)"] * bool(plan.left_out)
    text = (f"Time budget (--budget {budget:.3g} s): every section at its options was estimated at "
            f"{before:.0f} s; " + ("; ".join(did) or "nothing changed")
            + (f"; re-planned {_times(len(plan.replans))} as the sections ran slower than estimated" if plan.replans
               else "")
            + (f"; {len(plan.brought_back)} sections left out at first were run as time was left"
               if plan.brought_back else "") + f". The sections took {measured_s:.0f} s"
            + (f", {measured_s / budget - 1:.0%} over the budget" if measured_s > budget * 1.05 else "")
            + ("" if plan.reachable else f"; {plan.verdict()}") + ". report.json's plan has each section's estimate "
            "beside its measured time.")
    rows = [[r.section, r.option, r.before, r.after, r.floor] for r in plan.reductions]
    rows += [[g.section, f"left out ({g.role} section)", "", "", f"estimated {g.estimate_s:.0f} s"]
             for g in plan.left_out]
    rows += [[g.section, f"run after all ({g.role} section)", "", "", f"estimated {g.estimate_s:.0f} s"]
             for g in plan.brought_back]
    return [Note(text, kind="warning" if not plan.reachable or plan.left_out else "info"),
            Table(["section", "option", "preset's value", "used", "floor"], rows, numeric=[2, 3],
                  caption="What the time budget changed: the options lowered, most expensive section first, and the "
                          "sections left out, lecture pictures before review sections.")]
