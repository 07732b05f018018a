"""The class_visualization technique (reportgen/techniques/class_visualization.py): its own tests."""

from __future__ import annotations

from conftest import CLASSES, ColourMeans

from reportgen import registry
from reportgen.build import run_technique
from reportgen.report import Grid, Note


def test_class_visualization_uses_given_classes(make_ctx, tiny_model, image_dir):
    c = make_ctx(tiny_model, image_dir, class_names=CLASSES, general={"classes": [3, 1]})
    sec = run_technique(c, registry.get("class_visualization"), strict=True)
    assert sec.params["classes"] == [3, 1]
    grid = sec.blocks[0].blocks[0]
    assert len(grid.items) == 4 and "white" in grid.items[0].label and "green" in grid.items[2].label
    # objective improved (the tiny untrained model may still not reach the class: that is a separate warning)
    assert not any(isinstance(b, Note) and "did not increase" in b.text for b in sec.blocks)


def test_class_visualization_warns_when_the_class_is_not_reached(make_ctx, tiny_model, image_dir, walk_blocks,
                                                                 notes_of):
    # before: "shows what the network has learned" under every image, reached or not
    c = make_ctx(tiny_model, image_dir, class_names=CLASSES, general={"classes": [3, 1]})
    sec = run_technique(c, registry.get("class_visualization"), strict=True)
    rows = sec.results["classes"]
    unreached = [r["class"] for r in rows if not r["regularised"]["reached"]]
    assert unreached  # an untrained 4-class model never gets p >= 0.5 in 12 steps
    warn = [n.text for n in notes_of(sec) if n.kind == "warning" and "not reached" in n.text]
    assert warn and all(name in " ".join(warn) for name in unreached)
    items = next(b for b in walk_blocks(sec.blocks) if isinstance(b, Grid)).items
    assert any(it.sublabel.endswith(": not reached") and it.tone == "bad" for it in items)
    for r in rows:  # rank/p in results are those of the final images
        for v in ("L2 only", "regularised"):
            assert r[v]["reached"] == (r[v]["rank"] == 1 and r[v]["p"] >= 0.5)


def test_class_visualization_reaches_an_easy_class_and_credits_the_right_papers(make_ctx, image_dir, identity_pre,
                                                                                notes_of):
    c = make_ctx(ColourMeans(), image_dir, class_names=["red", "green", "blue"], pre=identity_pre,
                 general={"classes": [0]}, overrides={"class_visualization": {"steps": 30}})
    sec = run_technique(c, registry.get("class_visualization"), strict=True)
    row = sec.results["classes"][0]
    assert row["regularised"]["rank"] == 1 and row["regularised"]["reached"]
    assert not any("not reached" in n.text for n in notes_of(sec))
    info = registry.get("class_visualization")
    assert {r.short() for r in info.references} >= {"Mordvintsev et al. (2015)", "Olah et al. (2017)"}
    settings = dict(next(b for b in sec.blocks if hasattr(b, "pairs")).pairs)
    assert "Adam" in settings["optimiser"]
    reg = settings["regularised variant"]
    assert "L2 decay" in reg and "Yosinski" in reg and "DeepDream" in reg
    assert reg.index("Yosinski") < reg.index("L2 decay") < reg.index("DeepDream") < reg.index("jitter")
