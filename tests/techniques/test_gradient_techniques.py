"""guided_backprop, class_visualization, adversarial and deepdream together: each runs and leaves nothing behind
(each technique's own tests are in test_<id>.py)."""

from __future__ import annotations

import pytest

from reportgen import registry
from reportgen.build import run_technique
from reportgen.inspection.hooks import count_hooks, module_signature
from reportgen.report import Grid, Group, Note, Row, Table, iter_images


IDS = ["guided_backprop", "class_visualization", "adversarial", "deepdream"]


def _assert_blocks(blocks):
    from reportgen.report import Figure, KeyValues

    for b in blocks:
        assert isinstance(b, (Figure, Grid, Table, Note, KeyValues, Row, Group)), type(b)
        if isinstance(b, (Row, Group)):
            _assert_blocks(b.blocks)


@pytest.mark.parametrize("tid", IDS)
def test_technique_runs_minimal_and_leaves_no_trace(ctx, tid):
    model = ctx.model
    model.train()  # run_technique must give the flags back as they were
    hooks, sig = count_hooks(model), module_signature(model)
    grads = [p.requires_grad for p in model.parameters()]
    sec = run_technique(ctx, registry.get(tid), strict=True)
    assert sec.error is None and sec.blocks
    assert count_hooks(model) == hooks and module_signature(model) == sig
    assert [p.requires_grad for p in model.parameters()] == grads
    assert all("forward" not in m.__dict__ for m in model.modules())
    _assert_blocks(sec.blocks)
    images = list(iter_images(sec.blocks))
    assert images and all(im.array is not None or im.data for im in images)
    model.eval()
