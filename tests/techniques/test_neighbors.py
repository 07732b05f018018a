"""The neighbors technique (reportgen/techniques/neighbors.py): its own tests."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import CLASSES, write_image_folder
from PIL import Image

from reportgen import registry
from reportgen.build import run_technique
from reportgen.report import Grid, Group, Table


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


def test_neighbors_without_labels_hides_the_circular_table(make_ctx, tiny_model, tmp_path, walk_blocks, notes_of):
    # before: agreement with the model's own predictions was shown as evidence
    rng = np.random.default_rng(0)
    for k in range(8):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / f"img_{k}.png")
    c = make_ctx(tiny_model, tmp_path, class_names=CLASSES)
    sec = run_technique(c, registry.get("neighbors"), strict=True)
    assert not any(isinstance(b, Table) for b in walk_blocks(sec.blocks))
    assert any("circular" in n.text for n in notes_of(sec))
    assert sec.results["feature_agreement"] is None and sec.results["labelled_images"] == 0
    labels = [it.label for b in walk_blocks(sec.blocks) if isinstance(b, Grid) for it in b.items]
    assert labels and all(lab.endswith("(predicted)") for lab in labels)


def test_neighbors_with_labels_marks_labels(ctx, walk_blocks):
    sec = run_technique(ctx, registry.get("neighbors"), strict=True)
    labels = [it.label for b in walk_blocks(sec.blocks) if isinstance(b, Grid) for it in b.items]
    assert all(lab.endswith("(label)") for lab in labels)
    assert sec.results["feature_agreement"] is not None
