"""The time budget (reportgen/planning/): the plan fits its budget in estimate when it can and states each
reduction, says when it cannot, changes nothing without a budget; ``--plan`` runs no section; a bad ``--budget``
is one line, exit 2, before any work; every technique has a cost formula."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner

from conftest import CLASSES, make_tiny_cnn
from reportgen import build as build_mod, registry
from reportgen.cli import main
from reportgen.config import make_config
from reportgen.errors import ConfigError
from reportgen.planning.cost import FORMULAS, Measure, estimate, formula_for, parse_duration
from reportgen.planning import plan as plan_mod
from reportgen.planning.plan import FEATURES, LEAVE_OUT_ORDER, _step, floor_of, make_plan

TINY = dict(preset="minimal", resize=None, input_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, device="cpu",
            labels=CLASSES)
# a model 10 ms forward, 30 ms forward+backward per image, 100 images of 64 px
M = Measure(fwd=0.01, grad=0.03, n=100, size=64, macs=None)


def _floors_total(cfg, only=None, m=M) -> float:
    """The estimate with every scalable option at its floor (an independent walk of the declarations)."""
    low = make_config("standard", only=only)
    for t in low.enabled():
        for name in formula_for(t)[1]:
            v = getattr(low.options(t.id), name)
            setattr(low.options(t.id), name, min(v, floor_of(t, name)))
    return make_plan(low, m, None).total_s


def test_reachable_budget_fits_and_states_each_reduction():
    cfg = make_config("standard")
    before = make_plan(make_config("standard"), M, None)
    budget = (before.total_s + _floors_total(cfg)) / 2
    plan = make_plan(cfg, M, budget)
    assert plan.reachable and plan.total_s <= budget < before.total_s
    assert plan.reductions
    for r in plan.reductions:
        assert r.floor <= r.after < r.before
        assert getattr(cfg.options(r.section), r.option) == r.after  # applied to the configuration
        assert r.option in formula_for(registry.get(r.section))[1]
    changed = {(tid, k) for tid, o in cfg.techniques.items() for k, v in dataclasses.asdict(o).items()
               if v != getattr(make_config("standard").options(tid), k)}
    assert changed == {(r.section, r.option) for r in plan.reductions}  # every change is stated
    # the most expensive section was reduced
    top = max((k for k in before.estimate_s if k != FEATURES), key=before.estimate_s.get)
    assert top in {r.section for r in plan.reductions}
    assert "reduced" in plan.verdict() and str(round(budget)) in plan.verdict()


def test_unreachable_budget_says_so_and_stops_at_the_floors():
    cfg = make_config("standard")
    plan = make_plan(cfg, M, 0.5)
    assert not plan.reachable
    assert "cannot be met" in plan.verdict() and f"{plan.total_s - 0.5:.0f} s over" in plan.verdict()
    assert "left out" in plan.verdict()
    assert plan.total_s <= _floors_total(cfg) + 1e-9
    for t in cfg.enabled():  # no step that lowers the estimate is left
        assert _step(cfg, t, M) is None, t.id
        std = make_config("standard").options(t.id)
        for name in formula_for(t)[1]:
            assert getattr(cfg.options(t.id), name) >= min(floor_of(t, name), getattr(std, name))
    assert [t.id for t in cfg.enabled()] == ["card"]  # every section but the overview left out
    assert {g.section for g in plan.left_out} == {t.id for t in make_config("standard").enabled()} - {"card"}


def test_floors_that_do_not_fit_leave_sections_out_lecture_ones_first():
    cfg = make_config("standard")
    floors = _floors_total(cfg)
    plan = make_plan(cfg, M, floors * 0.6)
    assert plan.reachable and plan.total_s <= floors * 0.6
    gone = [g.section for g in plan.left_out]
    assert gone and set(gone) == set(cfg.skip)  # left out as --skip would
    assert set(gone).isdisjoint(plan.estimate_s) and "card" not in gone
    roles = [registry.get(s).role for s in gone]
    assert roles == sorted(roles, key=LEAVE_OUT_ORDER.__getitem__)  # lecture sections before review ones
    if "review" in roles:  # a review section goes only when every lecture section has gone
        assert {t.id for t in make_config("standard").enabled() if t.role == "lecture"} <= set(gone)
    # the first left out was the most expensive lecture section at the floors
    at_floors = make_config("standard")
    low = make_plan(at_floors, M, floors * 0.9999)
    assert not low.left_out or low.left_out[0].section == gone[0]
    lecture = {k: v for k, v in low.estimate_s.items() if k != FEATURES and registry.get(k).role == "lecture"}
    assert gone[0] == max(lecture, key=lecture.get)
    for line in ("left out " + plan.left_out[0].text(),):
        assert any(line in x for x in plan.lines())
    assert plan.to_dict()["left_out"][0]["section"] == gone[0]


def test_a_budget_the_floors_fit_leaves_nothing_out():
    cfg = make_config("standard")
    plan = make_plan(cfg, M, _floors_total(cfg) * 1.02)
    assert plan.reachable and plan.reductions and plan.left_out == [] and cfg.skip == []


def test_without_a_budget_nothing_changes():
    cfg = make_config("standard")
    plan = make_plan(cfg, M, None)
    assert plan.reductions == [] and plan.budget_s is None
    assert cfg.to_dict() == make_config("standard").to_dict()
    assert make_config("standard").general.budget is None


def test_every_technique_has_a_cost_formula():
    std, mini = make_config("standard"), make_config("minimal")
    for t in registry.all_techniques():
        fn, scales = formula_for(t)
        assert fn is not None or t.id not in FORMULAS, t.id
        assert fn is not None, f"{t.id} has no cost formula (it would get the default)"
        fields = {f.name for f in t.option_fields}
        assert set(scales) <= fields, (t.id, set(scales) - fields)
        assert 0 < estimate(t, mini.options(t.id), M) <= estimate(t, std.options(t.id), M) < 1e6, t.id


@pytest.mark.parametrize("text,secs", [("90s", 90), ("5m", 300), ("1h", 3600), ("1m30s", 90), ("45", 45)])
def test_durations(text, secs):
    assert parse_duration(text) == secs


@pytest.mark.parametrize("text", ["5x", "", "m", "-3m", "0s", "5m junk"])
def test_bad_durations(text):
    with pytest.raises(ConfigError):
        parse_duration(text)


def test_bad_budget_exits_2_with_one_line_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(build_mod, "load_for_run", lambda *a, **k: pytest.fail("the model was loaded"))
    res = CliRunner().invoke(main, ["build", "--model", "x.pt", "--images", str(tmp_path), "--out",
                                    str(tmp_path / "o"), "--budget", "5x"])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "--budget" in lines[0], res.output


def test_plan_exits_0_without_running_sections(tmp_path, image_dir, monkeypatch):
    monkeypatch.setattr(build_mod, "compute_sections", lambda *a, **k: pytest.fail("sections ran"))
    logged: list[str] = []
    res = build_mod.build_report(make_tiny_cnn(), image_dir, tmp_path / "o", plan_only=True, budget="2s",
                                 log=logged.append, **TINY)
    assert res.report is None and not (tmp_path / "o").exists()
    assert any(s.startswith("Plan: ") for s in logged)
    res = CliRunner().invoke(main, ["demo", "--plan", "--only", "saliency", "--out", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "d").exists()


def test_budgeted_build_records_the_plan(tmp_path, image_dir, monkeypatch):
    monkeypatch.setattr(plan_mod, "measure", lambda ctx: M)  # the probe's timing, fixed
    only = ["card", "smoothgrad", "integrated_gradients"]
    cfg = make_config("standard", only=only)
    budget = (_floors_total(cfg, only) + make_plan(make_config("standard", only=only), M, None).total_s) / 2
    res = build_mod.build_report(make_tiny_cnn(), image_dir, tmp_path / "o", only=only, budget=budget,
                                 use_cache=False, **{**TINY, "preset": "standard", "max_images": 6})
    plan = json.loads((tmp_path / "o" / "report.json").read_text())["plan"]
    assert plan["budget_s"] == budget and plan["left_out"] == []
    assert {r["section"] for r in plan["reductions"]} <= {"smoothgrad", "integrated_gradients"}
    assert set(plan["measured_s"]) == set(only) | {FEATURES}
    assert all(v is not None and v >= 0 for v in plan["measured_s"].values())
    card = next(s for s in res.report.sections if s.id == "card")
    assert f"{len(plan['reductions'])} options lowered" in card.blocks[0].text
    table = card.blocks[1]
    assert [row[:4] for row in table.rows] == [[r["section"], r["option"], r["before"], r["after"]]
                                               for r in plan["reductions"]]
    for r in plan["reductions"]:
        sec = next(s for s in res.report.sections if s.id == r["section"])
        assert sec.params[r["option"]] == r["after"]  # the section ran with the reduced option


def test_a_budget_below_the_floors_leaves_sections_out_of_the_build(tmp_path, image_dir):
    only = ["card", "smoothgrad", "integrated_gradients"]
    res = build_mod.build_report(make_tiny_cnn(), image_dir, tmp_path / "o", only=only, budget=1e-3,
                                 use_cache=False, **{**TINY, "preset": "standard", "max_images": 6})
    data = json.loads((tmp_path / "o" / "report.json").read_text())
    plan = data["plan"]
    assert plan["reachable"] is False and "cannot be met" in plan["verdict"]
    assert {g["section"] for g in plan["left_out"]} == {"smoothgrad", "integrated_gradients"}
    assert [s.id for s in res.report.sections] == ["card"]  # not run
    assert set(data["config"]["skip"]) == {"smoothgrad", "integrated_gradients"}
    card = next(s for s in res.report.sections if s.id == "card")
    assert "2 sections left out" in card.blocks[0].text and card.blocks[0].kind == "warning"
    assert {row[0] for row in card.blocks[1].rows if row[1].startswith("left out")} == {"smoothgrad",
                                                                                       "integrated_gradients"}


def test_without_budget_no_plan_key(tmp_path, image_dir):
    build_mod.build_report(make_tiny_cnn(), image_dir, tmp_path / "o", only=["card"], use_cache=False, **TINY)
    assert "plan" not in json.loads((tmp_path / "o" / "report.json").read_text())


def test_general_budget_from_toml_is_checked(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[general]\nbudget = 120\n")
    assert make_config(toml_path=p).general.budget == 120.0
    p.write_text("[general]\nbudget = -5\n")
    with pytest.raises(ConfigError, match="general.budget"):
        make_config(toml_path=p)


def test_replan_when_the_sections_run_slower_than_estimated():
    from reportgen.planning.plan import replan
    from reportgen.report import Section

    cfg = make_config("standard")
    techniques = cfg.enabled()
    total = make_plan(make_config("standard"), M, None).total_s
    plan = make_plan(cfg, M, total * 1.01)  # fits: nothing reduced
    assert plan.reductions == []
    first = sorted(techniques, key=lambda t: -plan.estimate_s[t.id])[:2]  # over TRUST_SHARE of the budget
    done = [Section(id=t.id, title=t.id, wall_time_s=plan.estimate_s[t.id] * s) for t, s in zip(first, (1.0, 1.05))]
    rest = [t for t in techniques if t not in first]
    logged: list[str] = []
    replan(plan, cfg, done, rest, logged.append)  # as fast as estimated: nothing changes
    assert plan.reductions == [] and logged == []
    done = [Section(id=t.id, title=t.id, wall_time_s=plan.estimate_s[t.id] * 3) for t in first]
    replan(plan, cfg, done, rest, logged.append)  # 3x slower: the sections left are reduced
    assert plan.reductions and {r.section for r in plan.reductions} <= {t.id for t in rest}
    assert len(logged) == 1 and "3.0x slower" in logged[0] and plan.to_dict()["replans"]
    for r in plan.reductions:
        assert getattr(cfg.options(r.section), r.option) == r.after < r.before


def test_a_run_far_slower_than_estimated_leaves_the_sections_ahead_out():
    from reportgen.planning.plan import before_section
    from reportgen.report import Section

    cfg = make_config("standard")
    techniques = cfg.enabled()
    plan = make_plan(cfg, M, make_plan(make_config("standard"), M, None).total_s * 1.01)
    first = [t for t in techniques if plan.estimate_s[t.id] > 1][:2]
    done = [Section(id=t.id, title=t.id, wall_time_s=plan.estimate_s[t.id] * 25) for t in first]
    plan.started -= plan.budget_s * 0.98  # nearly all the budget spent
    rest = [t for t in techniques if t not in first]
    logged: list[str] = []
    why = before_section(plan, cfg, done, rest, logged.append)
    gone = {g.section for g in plan.left_out}
    assert gone and gone <= {t.id for t in rest} and gone <= set(cfg.skip) and "card" not in gone
    assert "left out" in logged[0]
    assert (why is not None) == (rest[0].id in gone)
    nxt = next(t for t in rest if t.id in gone)
    assert "--budget" in before_section(plan, cfg, done, rest[rest.index(nxt):], logged.append)


def test_a_slowdown_over_a_few_seconds_of_sections_is_believed_only_in_part():
    from reportgen.planning.plan import TRUST_SHARE, replan
    from reportgen.report import Section

    cfg = make_config("standard")
    techniques = cfg.enabled()
    plan = make_plan(cfg, M, make_plan(make_config("standard"), M, None).total_s * 1.01)
    small = [t for t in techniques if 0 < plan.estimate_s[t.id] < 1][:1]
    est = sum(plan.estimate_s[t.id] for t in small)
    assert est < TRUST_SHARE * plan.budget_s
    done = [Section(id=t.id, title=t.id, wall_time_s=plan.estimate_s[t.id] * 3) for t in small]
    logged: list[str] = []
    replan(plan, cfg, done, [t for t in techniques if t not in small], logged.append)
    assert plan.reductions == [] and plan.left_out == [] and logged == []  # 3x on fixed costs: no re-plan


def test_a_section_left_out_runs_after_all_when_the_run_is_faster_than_estimated(tmp_path, image_dir, monkeypatch):
    """The probe says 100x slower than the tiny CNN runs: the plan leaves Integrated Gradients out, the sections
    before it take a hundredth of their estimate, so it comes back (at its floors) and the overview says so."""
    slow = Measure(fwd=1.0, grad=3.0, n=6, size=32, macs=None)
    monkeypatch.setattr(plan_mod, "measure", lambda ctx: slow)
    only = ["card", "saliency", "smoothgrad", "integrated_gradients"]
    budget = _floors_total(make_config("standard", only=only), only, slow) * 0.8  # below the floors
    first = make_plan(make_config("standard", only=only), slow, budget)
    assert [g.section for g in first.left_out] == ["integrated_gradients"]
    logged: list[str] = []
    res = build_mod.build_report(make_tiny_cnn(), image_dir, tmp_path / "o", only=only, budget=budget,
                                 use_cache=False, log=logged.append, **{**TINY, "preset": "standard", "max_images": 6})
    data = json.loads((tmp_path / "o" / "report.json").read_text())
    plan = data["plan"]
    assert plan["left_out"] == [] and [g["section"] for g in plan["brought_back"]] == ["integrated_gradients"]
    # its estimate ran on time the run saved: the plan still met its budget, and says so
    assert plan["estimate_total_s"] > budget and plan["reachable"] is True
    assert "cannot be met" not in plan["verdict"] and "run as time was left" in plan["verdict"]
    assert "integrated_gradients" in [s.id for s in res.report.sections] and data["config"]["skip"] == []
    assert any("brought back integrated_gradients" in line for line in logged)
    assert "integrated_gradients" in plan["measured_s"] and "integrated_gradients" in plan["estimate_s"]
    card = next(s for s in res.report.sections if s.id == "card")
    assert "1 sections left out at first were run as time was left" in card.blocks[0].text
    ig = next(s for s in res.report.sections if s.id == "integrated_gradients")
    lowered = [r for r in plan["reductions"] if r["section"] == "integrated_gradients"]
    assert lowered and all(ig.params[r["option"]] == r["after"] for r in lowered)  # at the options the plan left


def test_a_section_left_out_stays_out_without_the_time_for_it():
    from reportgen.planning.plan import before_section
    from reportgen.report import Section

    only = ["card", "saliency", "smoothgrad", "integrated_gradients"]
    cfg = make_config("standard", only=only)
    techniques = cfg.enabled()
    plan = make_plan(cfg, M, _floors_total(make_config("standard", only=only), only) * 0.8)
    assert [g.section for g in plan.left_out] == ["integrated_gradients"]
    done = [Section(id=t.id, title=t.id, wall_time_s=plan.estimate_s[t.id]) for t in techniques[:3]]  # on pace
    plan.started -= plan.total_s  # the budget less the time the plan gave the left-out section: spent
    logged: list[str] = []
    why = before_section(plan, cfg, done, techniques[3:], logged.append)
    assert why is not None and "--budget" in why and cfg.skip == ["integrated_gradients"]
    assert plan.brought_back == [] and not any("brought back" in x for x in logged)


def test_optimisation_on_a_fixed_size_model_is_counted_at_its_own_size(make_ctx, image_dir):
    """Class visualisation runs two optimisations (L2 only, regularised) per class; a model that takes only its
    own size (ViT-B/16) is shown each step resized to it, so a smaller canvas costs no less."""
    from torch import nn

    from reportgen.planning.cost import SECTION_OVERHEAD_S, measure

    t = registry.get("class_visualization")
    opts = dataclasses.replace(make_config("standard").options(t.id), image_size=32)
    per = 2 * opts.num_classes * opts.steps * M.grad
    cfg = make_config("standard")
    m = dataclasses.replace(M, batch_eff=1.0)  # passes cost in proportion to their pixels
    assert estimate(t, opts, m, cfg) == pytest.approx(SECTION_OVERHEAD_S + per * (32 / 64) ** 2)
    assert estimate(t, opts, dataclasses.replace(m, fixed_size=True), cfg) == pytest.approx(SECTION_OVERHEAD_S + per)
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4)).eval()  # takes 32 px only
    assert measure(make_ctx(flat, image_dir)).fixed_size is True
    assert measure(make_ctx(make_tiny_cnn(), image_dir)).fixed_size is False


def test_time_left_goes_to_a_review_section_left_out_before_a_lecture_one_ahead_of_it():
    """Segmentation (lecture) comes before Integrated Gradients (review) in the build; both are left out and the
    time left holds either but not both: the review section gets it, the lecture one stays out and says why."""
    from reportgen.planning.plan import BRING_BACK_SHARE, before_section
    from reportgen.report import Section

    only = ["card", "segmentation", "integrated_gradients"]
    cfg = make_config("standard", only=only)
    techniques = cfg.enabled()
    assert [t.id for t in techniques] == only
    plan = make_plan(cfg, M, 1e-3)
    assert {g.section for g in plan.left_out} == {"segmentation", "integrated_gradients"}
    seg, ig = (estimate(registry.get(s), cfg.options(s), M, cfg) for s in only[1:])
    assert 0 < seg and 0 < ig
    done = [Section(id="card", title="card", wall_time_s=plan.estimate_s["card"])]  # on pace
    left = (ig + seg / 2) / BRING_BACK_SHARE  # either fits, not both
    plan.started -= plan.budget_s - left
    logged: list[str] = []
    why = before_section(plan, cfg, done, techniques[1:], logged.append)
    assert why is not None and "--budget" in why and "segmentation" in cfg.skip
    assert any("segmentation stays left out" in x and "higher role" in x for x in logged)
    assert before_section(plan, cfg, done, techniques[2:], logged.append) is None
    assert [g.section for g in plan.brought_back] == ["integrated_gradients"]
    assert [g.section for g in plan.left_out] == ["segmentation"] and cfg.skip == ["segmentation"]


def test_a_lecture_section_comes_back_when_the_review_one_ahead_would_not_fit_anyway():
    """Nothing is held for a left-out review section too expensive for the time left: the lecture section that fits
    comes back."""
    from reportgen.planning.plan import BRING_BACK_SHARE, before_section
    from reportgen.report import Section

    only = ["card", "segmentation", "integrated_gradients"]
    cfg = make_config("standard", only=only)
    techniques = cfg.enabled()
    plan = make_plan(cfg, M, 1e-3)
    seg, ig = (estimate(registry.get(s), cfg.options(s), M, cfg) for s in only[1:])
    assert seg < ig / 2
    done = [Section(id="card", title="card", wall_time_s=plan.estimate_s["card"])]
    plan.started -= plan.budget_s - (ig / 2) / BRING_BACK_SHARE  # room for segmentation, not for IG
    logged: list[str] = []
    assert before_section(plan, cfg, done, techniques[1:], logged.append) is None
    assert [g.section for g in plan.brought_back] == ["segmentation"]
    assert "--budget" in before_section(plan, cfg, done, techniques[2:], logged.append)
