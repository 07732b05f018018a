"""The neighbors technique (reportgen/techniques/neighbors.py): its own tests."""

from __future__ import annotations

import shutil

import pytest
from conftest import CLASSES, write_image_folder

from reportgen import registry
from reportgen.build import run_technique
from reportgen.report import Group


def test_exact_duplicate_is_the_first_feature_neighbour(make_ctx, tiny_model, tmp_path):
    from reportgen.techniques.neighbors import nearest

    root = write_image_folder(tmp_path / "dup", per_class=3)
    src = root / "green" / "green_1.png"
    shutil.copy(src, root / "green" / "zz_copy_of_green_1.png")
    ctx = make_ctx(tiny_model, root, class_names=CLASSES)
    names = [ctx.images.name(i) for i in range(len(ctx.images))]
    q, d = names.index("green/green_1.png"), names.index("green/zz_copy_of_green_1.png")
    st = ctx.features()
    for data, metric in [(st.penultimate, "cosine"), (st.penultimate, "l2"), (st.pixels, "l2")]:
        idx, dist = nearest([q, d], data, 3, metric)
        assert idx[0, 0] == d and idx[1, 0] == q  # each is the other's nearest, the query itself excluded
        assert dist[0, 0] == pytest.approx(0, abs=1e-3)
        assert q not in idx[0]


def test_neighbors_section_rows(ctx):
    sec = run_technique(ctx, registry.get("neighbors"), strict=True)
    groups = [b for b in sec.blocks if isinstance(b, Group)]
    assert len(groups) == 2  # minimal: two queries
    for g in groups:
        feat_row, pix_row = g.blocks
        assert feat_row.items[0].sublabel == "query" and len(feat_row.items) == 4
        d = [float(it.sublabel.split("=")[1]) for it in feat_row.items[1:]]
        assert d == sorted(d)
