"""neighbors, embedding, patches, occlusion, saliency, segmentation together: each runs on the minimal preset and
leaves no hook, and the six share one feature pass (each technique's own tests are in test_<id>.py)."""

from __future__ import annotations


import pytest

from reportgen import registry
from reportgen.build import run_technique
from reportgen.inspection.hooks import count_hooks, module_signature
from reportgen.report import Section, iter_images


IDS = ["neighbors", "embedding", "patches", "occlusion", "saliency", "segmentation"]


# ------------------------------------------------------------------------------------------------
# every technique: registered, runs strictly, leaves the model as it was


@pytest.mark.parametrize("tid", IDS)
def test_runs_minimal_and_leaves_no_hook(ctx, tid):
    info = registry.get(tid)
    assert set(info.presets) >= {"minimal", "full"} and info.summary.count(". ") >= 1
    assert info.references
    sig = module_signature(ctx.model)
    sec = run_technique(ctx, info, strict=True)
    assert isinstance(sec, Section) and sec.error is None and sec.blocks
    assert count_hooks(ctx.model) == 0 and module_signature(ctx.model) == sig
    assert all(p.requires_grad for p in ctx.model.parameters())
    assert list(iter_images(sec.blocks))


def test_all_six_share_one_pass(ctx):
    for tid in IDS:
        run_technique(ctx, registry.get(tid), strict=True)
    assert ctx.feature_store.passes == 1


# ------------------------------------------------------------------------------------------------
# saliency


# ------------------------------------------------------------------------------------------------
# a model whose class score depends on one image region only


# ------------------------------------------------------------------------------------------------
# neighbours


# ------------------------------------------------------------------------------------------------
# embedding


# ------------------------------------------------------------------------------------------------
# patches


# ------------------------------------------------------------------------------------------------
# segmentation
