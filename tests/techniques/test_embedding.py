"""The embedding technique (reportgen/techniques/embedding.py): its own tests."""

from __future__ import annotations

import numpy as np
from conftest import CLASSES

from reportgen import registry
from reportgen.build import run_technique


def test_embedding_deterministic_and_small_sets():
    from reportgen.techniques.embedding import embed_2d, grid_assign, tsne_perplexity

    x = np.random.default_rng(0).normal(size=(40, 20)).astype(np.float32)
    a = embed_2d(x, seed=3, max_iter=250)
    b = embed_2d(x, seed=3, max_iter=250)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert tsne_perplexity(1000) == 30 and tsne_perplexity(10) == 3 and tsne_perplexity(4) == 2
    p2, t2, info = embed_2d(x[:5], seed=0, max_iter=250)
    assert t2.shape == (5, 2) and info["perplexity"] < 5
    rc = grid_assign(a[1], 7, np.random.default_rng(0))
    assert len({tuple(r) for r in rc}) == 40  # one image per cell


def test_embedding_subsamples_with_a_note(make_ctx, tiny_model, image_dir):
    c = make_ctx(tiny_model, image_dir, class_names=CLASSES, overrides={"embedding": {"max_points": 8}})
    sec = run_technique(c, registry.get("embedding"), strict=True)
    assert sec.params["points"] == 8 and sec.params["subsampled"]
    assert any("subsample" in getattr(b, "text", "") for b in sec.blocks)


def test_the_fewest_tsne_iterations_still_leave_exaggeration():
    """``tsne_iter = 250`` (the minimal preset) once stopped scikit-learn right at the end of early exaggeration:
    on features without clusters (the 500 one-per-class ImageNet images) the cloud stayed 0.03 units wide with one
    point 13x further out than the 99th percentile, and the explorer drew a dot. 100 free steps always follow."""
    from reportgen.techniques._layout import sklearn_tsne, total_iterations

    assert total_iterations(250) == 350 and total_iterations(1000) == 1000
    x = np.random.default_rng(0).normal(0, 1, (500, 50)).astype(np.float32)
    y = sklearn_tsne(x, 30.0, 0, 250)
    r = np.linalg.norm(y - np.median(y, 0), axis=1)
    assert np.median(r) > 1.0 and r.max() < 2 * np.percentile(r, 99), (np.median(r), r.max() / np.percentile(r, 99))


def _trustworthiness_by_the_formula(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """Venna & Kaski (2001), written out: ranks in feature space of the 2-D neighbours that are not true ones."""
    n = len(x)
    dx = ((x[:, None] - x[None]) ** 2).sum(-1)
    dy = ((y[:, None] - y[None]) ** 2).sum(-1)
    np.fill_diagonal(dx, np.inf)
    np.fill_diagonal(dy, np.inf)
    rank = np.argsort(np.argsort(dx, 1), 1) + 1  # rank[i, j]: j is i's rank-th nearest in feature space
    total = 0.0
    for i in range(n):
        for j in np.argsort(dy[i])[:k]:
            total += max(0, rank[i, j] - k)
    return 1 - 2 / (n * k * (2 * n - 3 * k - 1)) * total


def test_trustworthiness_is_the_papers_and_separates_structure_from_noise():
    from reportgen.techniques._layout import sklearn_tsne, trustworthiness_scores
    from reportgen.techniques.embedding import WEAK_TRUST_MARGIN, trust_sentence

    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (60, 8)).astype(np.float32)
    y = x[:, :2] + rng.normal(0, 0.3, (60, 2)).astype(np.float32)
    got = trustworthiness_scores(x, {"pca": y}, np.random.default_rng(1))
    assert got["k"] == 10 and abs(got["pca"] - _trustworthiness_by_the_formula(x, y, 10)) < 1e-4
    # planted clusters: t-SNE keeps them (near 1); the same positions shuffled among the images: as random, weak
    clusters = (np.repeat(rng.normal(0, 4, (20, 64)), 20, 0) + rng.normal(0, 1, (400, 64))).astype(np.float32)
    xy = sklearn_tsne(clusters, 30.0, 0, 350)
    t_c = trustworthiness_scores(clusters, {"tsne": xy}, np.random.default_rng(1))
    t_s = trustworthiness_scores(clusters, {"tsne": xy[rng.permutation(400)]}, np.random.default_rng(1))
    assert t_c["tsne"] > 0.95 and t_c["tsne"] - t_c["random"] > 0.3
    assert t_s["tsne"] - t_s["random"] < WEAK_TRUST_MARGIN < t_c["tsne"] - t_c["random"]
    assert "t-SNE 0.99" in trust_sentence(t_c) and "random positions score 0.5" in trust_sentence(t_c)


def test_embedding_keeps_well_separated_clusters_apart():
    from reportgen.techniques.embedding import embed_2d

    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (20, 16)) + 10
    b = rng.normal(0, 1, (20, 16)) - 10
    x = np.concatenate([a, b]).astype(np.float32)
    lab = np.array([0] * 20 + [1] * 20)
    p2, t2, _ = embed_2d(x, seed=0, max_iter=300)
    for pts in (p2, t2):
        cent = np.stack([pts[lab == k].mean(0) for k in (0, 1)])
        nearest = np.argmin(((pts[:, None] - cent[None]) ** 2).sum(-1), 1)
        assert (nearest == lab).all()
