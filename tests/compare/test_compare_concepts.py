"""compare: concepts of A and B matched by the correlation of their coefficients over the same crops."""

from __future__ import annotations

import numpy as np
from conftest import CLASSES, make_tiny_cnn

from reportgen.compare.concepts import (
    coefficient_correlation,
    concepts_section,
    match_concepts,
)


def test_matching_recovers_a_permutation():
    rng = np.random.default_rng(0)
    ua = rng.random((200, 5))
    perm = np.array([3, 0, 4, 1, 2])
    ub = ua[:, perm] + 0.05 * rng.random((200, 5))
    pairs, _ = match_concepts(ua, ub)
    assert {(i, j) for i, j, _ in pairs} == {(int(perm[j]), j) for j in range(5)}
    assert all(r > 0.9 for _, _, r in pairs)
    assert np.allclose(coefficient_correlation(ua, ua).diagonal(), 1.0)


def test_section_on_two_models(make_ctx, image_dir):
    ca = make_ctx(make_tiny_cnn(seed=0), image_dir, class_names=CLASSES)
    cb = make_ctx(make_tiny_cnn(seed=1), image_dir, class_names=CLASSES)
    sec = concepts_section(ca, cb, ("A", "B"), n_images=6, k=3)
    assert len(sec.results["matches"]) == 3 and sec.blocks
    same = concepts_section(ca, ca, ("A", "A"), n_images=6, k=3)
    assert all(m["a"] == m["b"] and m["correlation"] > 0.99 for m in same.results["matches"])
