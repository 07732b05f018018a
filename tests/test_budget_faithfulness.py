"""The budget's estimate of the faithfulness section (issue 28.4) counts what the section runs: one stream of
perturbed copies with the shared copies once per image, ROAD's imputations, and the maps it computes itself (images
a method's section does not show, sanity checks of the methods the sanity section does not run)."""

from __future__ import annotations

import dataclasses

import pytest

from reportgen import registry
from reportgen.config import make_config
from reportgen.planning.cost import (BATCH_EFFICIENCY, IMPUTE_S_224, SECTION_OVERHEAD_S, Measure, estimate,
                                     faith_sources)

M = Measure(fwd=0.1, grad=0.3, n=10, size=224, macs=4_000_000_000)
FAITH = registry.get("faithfulness")


def test_the_stream_is_counted_copy_by_copy():
    o = make_config("standard").options("faithfulness")
    # the methods of the one list (8 of the standard attribution sections, VarGrad of the full preset), 2 baselines
    assert sum(faith_sources("standard").values()) == 8 and faith_sources()["vargrad"] == 1
    n, k = o.max_images, sum(faith_sources().values()) + 2
    copies = n * (3 + 2 * k * (o.steps - 1) + o.mufidelity_runs)  # image, fill, start once; inner steps; subsets
    road = o.road_images * 2 * k * len(o.road_fractions)  # MoRF and LeRF
    want = SECTION_OVERHEAD_S + (copies + road) * M.fwd * BATCH_EFFICIENCY + road * IMPUTE_S_224
    assert estimate(FAITH, o, M) == pytest.approx(want)
    assert estimate(FAITH, o, dataclasses.replace(M, attends=True)) > want  # attention rollout is scored too


def test_maps_faithfulness_computes_itself_are_counted():
    cfg = make_config("standard")
    o = cfg.options("faithfulness")
    base = estimate(FAITH, o, M, cfg)
    assert base > estimate(FAITH, o, M)  # the sanity checks of SmoothGrad, Grad-CAM++, ..., occlusion
    off = estimate(FAITH, dataclasses.replace(o, sanity=False), M, cfg)
    assert off < base
    fewer = make_config("standard", technique_overrides={"occlusion": {"max_images": 1}})
    occ = registry.get("occlusion")
    per_image = (estimate(occ, cfg.options("occlusion"), M) - SECTION_OVERHEAD_S) / cfg.options("occlusion").max_images
    # occlusion now shows 1 of the 4 images faithfulness scores: the other 3 maps are faithfulness's
    assert estimate(FAITH, fewer.options("faithfulness"), M, fewer) == pytest.approx(base + 3 * per_image, rel=1e-6)
