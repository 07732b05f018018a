"""shortcuts (SpRAy): a planted corner mark that predicts one class for part of its images gets its own cluster."""

from __future__ import annotations

import numpy as np
import pytest
from _planted import shortcut_data, train, write_folder

from reportgen import registry
from reportgen.build import run_technique
from reportgen.concepts.spray import candidate, eigengap, mass, spray
from reportgen.inspection.hooks import count_hooks, module_signature
from reportgen.preprocess import Preprocessing
from reportgen.results_schema import undeclared

PRE = Preprocessing(resize=None, input_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, source="test")


def test_eigengap_counts_separated_groups():
    rng = np.random.default_rng(0)
    centres = rng.random((3, 16)) * 4
    x = np.concatenate([c + 0.05 * rng.standard_normal((10, 16)) for c in centres])
    from reportgen.concepts.spray import affinity

    k, _ = eigengap(affinity(x), 6)
    assert k == 3
    cl = spray(x, 6, seed=0)
    assert cl.k == 3 and sorted(np.bincount(cl.labels)) == [10, 10, 10]
    assert all(len(set(cl.labels[i * 10:(i + 1) * 10])) == 1 for i in range(3))


def test_mass_and_candidate_rules():
    m = np.zeros((16, 16))
    m[:4, :4] = 1
    got = mass(m)
    assert got["corners"]["top-left"] == pytest.approx(1.0)
    assert got["border_fraction"] == pytest.approx(0.75)  # 12 of its 16 cells in the 2-cell band
    assert got["centre_of_mass"] == pytest.approx((0.125, 0.125))
    centre = np.zeros((16, 16))
    centre[6:10, 6:10] = 1
    assert "top-left" in candidate(got, mass(centre))
    assert candidate(mass(centre), mass(centre)) is None


def test_corner_shortcut_gets_its_own_cluster(make_ctx, tmp_path):
    a, y, marked = shortcut_data(per_class=24)
    model = train(a, y, 2)
    names = write_folder(tmp_path, a, y, ["h", "v"])
    ctx = make_ctx(model, tmp_path, preset="standard", class_names=["h", "v"], pre=PRE,
                   overrides={"shortcuts": {"max_classes": 2, "min_images": 4, "exemplars": 2}})
    sig = module_signature(model)
    sec = run_technique(ctx, registry.get("shortcuts"), strict=True)
    assert count_hooks(model) == 0 and module_signature(model) == sig
    r = sec.results
    assert not undeclared("shortcuts", r)
    marked_names = {n for n, m in zip(names, marked) if m}
    v = next(c for c in r["classes"] if c["class"] == "v")
    assert v["clusters"] >= 2
    # the cluster holding the marked images holds (almost) only them, and its mean map peaks at the corner
    best = max(v["groups"], key=lambda g: len(marked_names & set(g["images"])))
    inside = marked_names & set(best["images"])
    assert len(inside) >= len(marked_names) - 1 and len(best["images"]) <= len(inside) + 1
    assert best["corner"] == "top-left" and best["corner_fraction"] > 0.4
    assert best["centre_of_mass"][0] < 0.3 and best["centre_of_mass"][1] < 0.3
    assert best["candidate_shortcut"] and "corner" in best["candidate_shortcut"]
    # the unmarked images of "v" and all of "h" are not flagged
    others = [g for c in r["classes"] for g in c["groups"] if g is not best]
    assert not any(g["candidate_shortcut"] and not (marked_names & set(g["images"])) for g in others)
