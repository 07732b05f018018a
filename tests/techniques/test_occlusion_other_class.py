"""The occlusion section reads the random-class maps of faithfulness's sanity check off its own occluded passes
(issue 28.4): they are the maps the map function computes for that class, and faithfulness then runs occlusion
only on the randomised copies."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import CLASSES
from reportgen import attribution as A
from reportgen import registry
from reportgen.build import run_technique
from reportgen.techniques._faith_maps import method_functions
from reportgen.techniques._map_store import MapKey, run_store
from reportgen.techniques._sanity_checks import protocol


@pytest.fixture()
def sections(tiny_pre, tiny_model, image_dir):
    from reportgen.build import make_context
    from reportgen.config import make_config

    cfg = make_config("minimal", technique_overrides={"occlusion": {"max_images": 2}, "sanity": {"max_images": 2}},
                      only=["occlusion", "sanity", "faithfulness"])
    return make_context(tiny_model, image_dir, class_names=CLASSES, pre=tiny_pre, config=cfg, device="cpu")


def test_random_class_maps_come_from_the_sections_passes(sections, monkeypatch):
    ctx = sections
    assert run_technique(ctx, registry.get("occlusion"), strict=True).error is None
    p = protocol(ctx, ctx.config.options("sanity"))
    occ = method_functions(ctx)[0]["occlusion"]
    store = run_store(ctx)
    for i, other, x in zip(p.batch.idx, p.other, p.batch.x):
        kept = store.maps[MapKey(occ.spec, int(i), int(other))]
        fresh = occ.fn(ctx.pixel_model, x[None].float(), np.asarray([other]), [int(i)])[0]  # the map function
        np.testing.assert_allclose(kept, fresh, atol=1e-5)
        assert np.abs(fresh).max() > 0  # a real map, not a placeholder
    calls = []
    real = A.occlusion_grid

    def spy(model, *a, **k):
        calls.append(model)
        return real(model, *a, **k)

    monkeypatch.setattr(A, "occlusion_grid", spy)
    assert run_technique(ctx, registry.get("faithfulness"), strict=True).error is None
    assert calls and all(m is not ctx.pixel_model for m in calls)  # only the randomised copies (mid, all random)
    assert len(calls) == 2
