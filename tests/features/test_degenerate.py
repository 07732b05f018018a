"""Degenerate feature matrices (constant, NaN/Inf, rank 1) are named in words, never crash PCA / t-SNE / CKA."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from conftest import CLASSES, make_tiny_cnn, write_image_folder

from reportgen.features.degenerate import check_features, check_gram


def constant_model() -> nn.Module:
    """The tiny CNN with its last convolution's weights zeroed: every image gets the same penultimate vector
    (ReLU of the bias), as a randomly initialised efficientnet_b0 does. (NaN features cannot be planted the same
    way: build refuses a model whose logits are NaN before any section runs.)"""
    m = make_tiny_cnn(seed=1)
    with torch.no_grad():
        m.features[6].weight.zero_()
        m.features[6].bias.fill_(0.5)
    return m


# ----- the detector ------------------------------------------------------------------------------------
def test_usable_features_pass_and_each_degeneracy_is_named():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 12))
    assert check_features(x) is None
    assert check_features(x.astype(np.float16)) is None
    const = check_features(np.tile(rng.normal(size=(1, 12)), (30, 1)))
    assert const.kind == "constant" and const.blocking and "the 30 images give identical features" in const.message
    tiny = check_features(rng.normal(size=(8, 1280)) * 1e-14)  # the random-init efficientnet_b0 scale
    assert tiny.kind == "constant" and "about zero" in tiny.message
    bad = x.copy()
    bad[3, 2] = np.nan
    bad[7, 0] = np.inf
    nf = check_features(bad)
    assert nf.kind == "non_finite" and nf.bad_images == 2 and "2 of the 30 images" in nf.message
    line = np.outer(rng.normal(size=30), rng.normal(size=12)) + 3.0
    r1 = check_features(line.astype(np.float16))
    assert r1.kind == "rank_one" and not r1.blocking
    assert check_features(line + 1e-2 * rng.normal(size=line.shape)) is None  # a second direction, however weak
    json.dumps(r1.results())


def test_gram_check_for_cka():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 6))
    assert check_gram(x @ x.T) is None
    c = np.tile(x[:1], (20, 1)) * 100
    assert check_gram(c @ c.T) == "constant"
    k = x @ x.T
    k[0, 1] = np.nan
    assert check_gram(k) == "non_finite"


def test_embed_2d_refuses_constant_features_instead_of_dividing_by_zero():
    from reportgen.techniques.embedding import embed_2d

    with pytest.raises(ValueError, match="identical features"):
        embed_2d(np.ones((10, 5), np.float32), seed=0)


# ----- through build_report ----------------------------------------------------------------------------
def test_constant_features_through_build_report(tmp_path, image_dir):
    from reportgen import build_report

    res = build_report(constant_model(), image_dir, tmp_path / "out", labels=CLASSES, preset="minimal",
                       only=["embedding", "neighbors"], input_size=32, use_cache=False)
    assert res.ok
    by = {s.id: s for s in res.report.sections}
    for sid in ("embedding", "neighbors"):
        deg = by[sid].results["degenerate"]
        assert deg["kind"] == "constant" and deg["images"] == 12, sid
        notes = " ".join(getattr(b, "text", "") for b in by[sid].blocks)
        assert "the 12 images give identical features" in notes and "does not depend on the input" in notes, sid
    assert by["embedding"].results["tsne"] is False and by["embedding"].results["pca_explained"] is None
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {s["id"]: s["results"]["degenerate"]["kind"] for s in report["sections"]} == \
        {"embedding": "constant", "neighbors": "constant"}
    html = (tmp_path / "out" / "sections" / "embedding.html").read_text()
    assert "give identical features" in html


def test_usable_features_record_no_degeneracy(make_ctx, tiny_model, image_dir):
    from reportgen import registry
    from reportgen.build import run_technique

    c = make_ctx(tiny_model, image_dir, class_names=CLASSES)
    for sid in ("embedding", "neighbors"):
        assert run_technique(c, registry.get(sid), strict=True).results["degenerate"] is None


def test_cka_section_blanks_a_constant_layer(make_ctx, tiny_model, image_dir):
    from reportgen.compare.cka_section import cka_section

    ca = make_ctx(tiny_model, image_dir, class_names=CLASSES)
    cb = make_ctx(constant_model(), image_dir, class_names=CLASSES)
    sec = cka_section(ca, cb, ("A", "B"), n_images=12, n_layers=4)
    layers = {(r["model"], r["layer"]) for r in sec.results["degenerate"]["layers"]}
    assert ("B", "features.6") in layers and not any(m == "A" for m, _ in layers)
    j = sec.results["layers_b"].index("features.6")
    assert all(row[j] is None for row in sec.results["cka_ab"])
    assert all(v is not None for v in sec.results["cka_aa"][0])  # A's own layers are fine
    assert "CKA is undefined" in " ".join(getattr(b, "text", "") for b in sec.blocks)
    json.dumps(sec.results, allow_nan=False)


@pytest.mark.slow
def test_random_init_efficientnet_b0_gives_a_report_not_a_segfault(tmp_path):
    """The issue's case: a randomly initialised torchvision efficientnet_b0 (penultimate features ~1e-14, zero
    in float16). Run in a subprocess so a crash of scikit-learn shows as an exit code, not a dead test run; on
    24 images the code before the check died with exit 139 (segfault in t-SNE)."""
    image_dir = write_image_folder(tmp_path / "images", per_class=6)
    code = textwrap.dedent(f"""
        import torch, torchvision
        torch.set_num_threads(1)
        from reportgen import build_report
        torch.manual_seed(0)
        m = torchvision.models.efficientnet_b0(weights=None, num_classes=4).eval()
        res = build_report(m, {str(image_dir)!r}, {str(tmp_path / 'out')!r}, preset='minimal',
                           only=['embedding', 'neighbors'], input_size=64, use_cache=False)
        print({{s.id: (s.results.get('degenerate') or {{}}).get('kind') for s in res.report.sections}})
        assert res.ok
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "'embedding': 'constant'" in r.stdout and "'neighbors': 'constant'" in r.stdout, r.stdout
