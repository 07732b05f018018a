"""Concepts on an image set where no class has enough images (unlabelled photos: one prediction each) say what
they would need in one line and mark the section ``unsupported`` (issue 31, item 13), instead of an empty page."""

from __future__ import annotations

from reportgen import registry
from reportgen.build import run_technique


def test_concepts_without_enough_images_per_class_are_unsupported(make_ctx, tiny_model, image_dir):
    ctx = make_ctx(tiny_model, image_dir, overrides={"concepts": {"min_images": 50}})
    sec = run_technique(ctx, registry.get("concepts"), strict=True)
    why = sec.results.get("unsupported", "")
    assert set(sec.results) == {"unsupported"}, sec.results
    assert "at least 50 images of one class" in why and "the largest class here has 3" in why
    assert len(sec.blocks) == 1 and sec.blocks[0].text == why
