"""The one list of attribution methods (issue 29.1): declared on the techniques, read by every consumer.

A method registered in a test appears in faithfulness, sanity, the set-level sections' ``method`` option and
compare's ordering with no other edit; the real list is exactly what those consumers iterate; duplicates are refused;
the map identities (``MapSpec``) the map store and the cache key on are today's."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import CLASSES
from reportgen import registry
from reportgen.build import make_context, run_technique
from reportgen.compare.paired import listed_order
from reportgen.config import ConfigError, allowed_values, make_config
from reportgen.registry import AttributionMethod, ClassMaps, SanityCheck
from reportgen.techniques._faith_maps import MapMethod, method_functions, scored_methods
from reportgen.techniques._map_store import MapSpec, map_modules
from reportgen.techniques._sanity_checks import checked_methods
from reportgen.techniques._setlevel import class_maps

torch.set_num_threads(1)
FAKE = "fake map (test)"
DOC = Path(__file__).resolve().parents[1] / "docs" / "adding-a-technique.md"


def _brightness(pm, x, t, _idx):
    """A map that follows the image: its brightness (cheap, and it ignores the class and the weights)."""
    return x.detach().float().mean(1).cpu().numpy()


@pytest.fixture()
def fake():
    """A throw-away technique declaring one method with a sanity check and a set-level variant."""
    registry.all_techniques()
    method = AttributionMethod(
        FAKE, lambda ctx, o: MapMethod(MapSpec(FAKE), _brightness), order=15, sanity=SanityCheck(),
        set_level=ClassMaps("fake_brightness", lambda pm, layer, x, t: x.detach().float().mean(1)))
    registry.technique("fake_methods", "Fake methods", methods=[method], order=999)(lambda ctx, opts: None)
    try:
        yield method
    finally:
        registry.unregister("fake_methods")


def _ctx(tiny_model, image_dir, tiny_pre, only, preset="minimal", **overrides):
    cfg = make_config(preset, only=only, technique_overrides=overrides)
    return make_context(tiny_model, image_dir, class_names=CLASSES, pre=tiny_pre, config=cfg, device="cpu")


def test_a_method_registered_in_a_test_is_scored_checked_and_drawn_without_other_edits(
        fake, tiny_model, image_dir, tiny_pre):
    only = ["fake_methods", "sanity", "faithfulness"]
    ctx = _ctx(tiny_model, image_dir, tiny_pre, only)
    faith = run_technique(ctx, registry.get("faithfulness"), strict=True)
    assert faith.error is None
    rows = {r["method"]: r for r in faith.results["methods"]}
    assert set(rows) == {FAKE, "random map (baseline)", "centre Gaussian (baseline)"}
    # the brightness map ignores the weights and the class: the sanity checks (faithfulness shows them) say so
    assert rows[FAKE]["sanity"].startswith("weights fails") and "class fails" in rows[FAKE]["sanity"]
    # the sanity section checks it after its own four (tests/techniques/test_vargrad.py runs that section)
    assert [m.sanity_label for m in checked_methods(ctx)] == [
        "gradient", "guided backprop", "Grad-CAM", "Integrated Gradients", FAKE]
    # the set-level sections' option admits its key, and their maps come from its variant
    mistakes = make_config("minimal", technique_overrides={"mistakes": {"method": "fake_brightness"}})
    assert mistakes.options("mistakes").method == "fake_brightness"
    assert "fake_brightness" in allowed_values(registry.get("shortcuts").options, "method")
    got = class_maps(ctx, "features.0", "fake_brightness", [0, 1], 0, lambda m: m.numpy())
    want = ctx.images.batch([0, 1]).float().mean(1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # compare's joined tables put it in the list's place
    assert listed_order(["random map (baseline)", "SmoothGrad", FAKE, "saliency"]) == [
        "saliency", FAKE, "SmoothGrad", "random map (baseline)"]


def test_the_consumers_iterate_exactly_the_list(tiny_model, image_dir, tiny_pre):
    listed = registry.attribution_methods()
    ids = list(dict.fromkeys(m.technique for m in listed))
    ctx = _ctx(tiny_model, image_dir, tiny_pre, ids + ["sanity", "faithfulness"])
    chosen, from_config = scored_methods(ctx)
    assert from_config and [m.name for m in chosen] == [m.name for m in listed if m.maps is not None]
    fns, _ = method_functions(ctx)  # all but attention rollout, which this CNN has no attention for
    assert list(fns) == [m.name for m in chosen if m.name != "attention rollout"]
    checked = [m.sanity_label for m in checked_methods(ctx)]
    assert set(checked) == {m.sanity_label for m in listed if m.sanity is not None}
    keys = [m.set_level.key for m in listed if m.set_level is not None]
    for section in ("mistakes", "shortcuts"):
        assert allowed_values(registry.get(section).options, "method") == " | ".join(keys)
    with pytest.raises(ConfigError, match="did you mean gradcam"):
        make_config("minimal", technique_overrides={"mistakes": {"method": "gradcm"}})
    assert {m.module for m in listed} <= set(map_modules())  # a map function's edit changes its cache key


def test_the_map_identities_are_todays(tiny_model, image_dir, tiny_pre):
    """The MapSpec of each method at the minimal preset's options: what the map store and the cache key on."""
    ctx = _ctx(tiny_model, image_dir, tiny_pre, None)
    fns, from_config = method_functions(ctx)
    assert from_config
    specs = {m: f.spec for m, f in fns.items()}
    assert specs == {
        "saliency": MapSpec("saliency"), "SmoothGrad": MapSpec("SmoothGrad", (8, 0.15)),
        "Integrated Gradients": MapSpec("Integrated Gradients", ("black", 8, 0.01, 64)),
        "Grad-CAM": MapSpec("Grad-CAM", ("features",)), "Grad-CAM++": MapSpec("Grad-CAM++", ("features",)),
        "Guided Grad-CAM": MapSpec("Guided Grad-CAM", ("features",)),
        "guided backprop": MapSpec("guided backprop"),
        "occlusion": MapSpec("occlusion", (8, 8, specs["occlusion"].options[2]))}
    assert list(specs) == ["saliency", "SmoothGrad", "Integrated Gradients", "Grad-CAM", "Grad-CAM++",
                           "Guided Grad-CAM", "guided backprop", "occlusion"]  # faithfulness's order, as before


def test_a_name_or_key_declared_twice_is_refused():
    registry.all_techniques()
    before = [m.name for m in registry.attribution_methods()]
    with pytest.raises(ValueError, match="'saliency' of 'dup_methods' is already declared by 'saliency'"):
        registry.technique("dup_methods", "Dup", methods=[AttributionMethod("saliency")])(lambda ctx, o: None)
    with pytest.raises(ValueError, match="set-level key 'gradcam'"):
        registry.technique("dup_methods", "Dup", methods=[
            AttributionMethod("other", set_level=ClassMaps("gradcam", lambda *a: None))])(lambda ctx, o: None)
    with pytest.raises(ValueError, match="'twice' of 'dup_methods' is already declared by 'dup_methods'"):
        registry.technique("dup_methods", "Dup", methods=[AttributionMethod("twice"), AttributionMethod("twice")])(
            lambda ctx, o: None)
    assert [m.name for m in registry.attribution_methods()] == before
    assert "dup_methods" not in registry.ids()


@pytest.fixture()
def doc_method(tmp_path, monkeypatch):
    """docs/adding-a-technique.md's attribution method module as ``docmethod.squaregrad``; unregistered afterwards."""
    (module,) = re.findall(r"```py\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    (tmp_path / "docmethod").mkdir()
    (tmp_path / "docmethod" / "__init__.py").write_text("")
    (tmp_path / "docmethod" / "squaregrad.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.all_techniques()
    try:
        yield importlib.import_module("docmethod.squaregrad")
    finally:
        registry.unregister("squaregrad")
        for name in ("docmethod.squaregrad", "docmethod"):
            sys.modules.pop(name, None)


def test_the_documented_method_is_scored_and_checked_with_no_other_edit(doc_method, tiny_model, image_dir, tiny_pre):
    ctx = _ctx(tiny_model, image_dir, tiny_pre, ["squaregrad", "faithfulness"], faithfulness={"sanity": False})
    own = run_technique(ctx, registry.get("squaregrad"), strict=True)
    faith = run_technique(ctx, registry.get("faithfulness"), strict=True)
    assert own.error is None and faith.error is None
    assert "SmoothGrad-Squared" in {r["method"] for r in faith.results["methods"]}
    assert faith.results["maps_reused"] == {"SmoothGrad-Squared": 2}  # the section's maps, not recomputed
    assert "SmoothGrad-Squared" in [m.sanity_label for m in checked_methods(ctx)]
    assert "squaregrad" not in [t.id for t in make_config("standard").enabled()]
