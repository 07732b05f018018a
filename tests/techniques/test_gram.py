"""The gram technique (reportgen/techniques/gram.py): its own tests."""

from __future__ import annotations

import numpy as np

from reportgen.techniques.gram import cluster_order


def test_cluster_order_puts_correlated_channels_next_to_each_other():
    """Two groups of channels, each driven by its own signal and interleaved in the input order: the heatmap's
    clustered order shows each group as one contiguous block."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=200), rng.normal(size=200)
    rows = [(a if k % 2 == 0 else b) + 0.05 * rng.normal(size=200) for k in range(8)]  # 0,2,4,6 | 1,3,5,7
    f = np.stack(rows)
    g = f @ f.T / f.shape[1]
    order = list(cluster_order(g))
    assert sorted(order) == list(range(8))
    groups = [k % 2 for k in order]
    assert groups in ([0] * 4 + [1] * 4, [1] * 4 + [0] * 4), order


def test_gram_section_reports_the_error_its_synthesis_reached(make_ctx, tiny_model, image_dir, run_minimal):
    """Per texture and layer, the relative Gram error of the synthesis: lower after more steps, and the warning
    about loosely matched layers appears exactly when some error is above 0.1."""
    from reportgen.report import Note

    def errors(steps):
        ctx = make_ctx(tiny_model, image_dir, overrides={"texture": {"steps": steps, "image_size": 16}})
        sec = run_minimal(ctx, "gram")
        layers, errs = sec.results["layers"], sec.results["gram_error"]
        assert layers and errs and all(set(e) == set(layers) for e in errs.values())
        vals = [v for e in errs.values() for v in e.values()]
        assert all(np.isfinite(v) and v >= 0 for v in vals)
        warned = any(isinstance(b, Note) and "matched only loosely" in b.text for b in sec.blocks)
        assert warned == (max(vals) > 0.1)
        return np.mean(vals)

    assert errors(8) < errors(1)
