"""The class_visualization technique (reportgen/techniques/class_visualization.py): its own tests."""

from __future__ import annotations

from conftest import CLASSES

from reportgen import registry
from reportgen.build import run_technique
from reportgen.report import Note


def test_class_visualization_uses_given_classes(make_ctx, tiny_model, image_dir):
    c = make_ctx(tiny_model, image_dir, class_names=CLASSES, general={"classes": [3, 1]})
    sec = run_technique(c, registry.get("class_visualization"), strict=True)
    assert sec.params["classes"] == [3, 1]
    grid = sec.blocks[0].blocks[0]
    assert len(grid.items) == 4 and "white" in grid.items[0].label and "green" in grid.items[2].label
    # objective improved (the tiny untrained model may still not reach the class: that is a separate warning)
    assert not any(isinstance(b, Note) and "did not increase" in b.text for b in sec.blocks)
