"""The corruptions section: a stripe reader breaks under blur where a model that ignores the stripes holds; every
corruption's identity leaves the image alone and its severities grow; the maths equals written-out references; the
batched passes equal a one-image-at-a-time loop; the section on the demo model is complete and deterministic."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
from _planted import SIZE, train
from PIL import Image

from reportgen import registry
from reportgen.build import run_technique
from reportgen.results_schema import missing, undeclared
from reportgen.robustness import corruptions as C
from reportgen.robustness import evaluate as E


# ----------------------------------------------------------------------------------------------
# planted: fine stripes carry the class for one model and nothing for the other


def _stripes(a: np.ndarray, orient: int) -> None:
    """Period-2 stripes (the highest frequency the grid holds): rows (0) or columns (1)."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    a += 0.25 * (((yy if orient == 0 else xx) % 2) - 0.5)


def _stripe_data(n: int, label_from: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Grey images with stripes of a random orientation and a bright 10x10 blob in a random half; the label is the
    stripes' orientation ("stripes") or the blob's half ("blob"), the other cue is noise."""
    rng = np.random.default_rng(seed)
    a = np.full((n, SIZE, SIZE), 0.4, np.float32) + (rng.random((n, SIZE, SIZE)) * 0.05).astype(np.float32)
    s, b = rng.integers(0, 2, n), rng.integers(0, 2, n)
    for i in range(n):
        _stripes(a[i], int(s[i]))
        y, x = int(rng.integers(4, SIZE - 14)), int(rng.integers(1, 6)) + 16 * int(b[i])
        a[i, y:y + 10, x:x + 10] += 0.4
    return np.clip(a, 0, 1), (s if label_from == "stripes" else b)


def test_stripe_reader_breaks_under_blur_where_the_stripe_ignorer_holds(make_ctx, tmp_path):
    reader = train(*_stripe_data(200, "stripes", 0), classes=2, steps=60)
    ignorer = train(*_stripe_data(200, "blob", 1), classes=2, steps=60)
    test, _ = _stripe_data(40, "stripes", 2)
    for i, a in enumerate(test):  # no class folders: the flip rates need no labels
        Image.fromarray((a * 255).round().astype(np.uint8)).convert("RGB").save(tmp_path / f"img_{i:03d}.png")
    info, res = registry.get("corruptions"), {}
    for name, model in (("reader", reader), ("ignorer", ignorer)):
        ctx = make_ctx(model, tmp_path)
        sec = run_technique(ctx, info, strict=True)
        res[name] = sec.results
        assert sec.results["parameters"] == "cifar_10_c" and sec.results["labelled"] is False
        assert all(r["accuracy"] is None for r in sec.results["per_corruption"])
    blur = {k: v["fragility"]["gaussian_blur"] for k, v in res.items()}
    assert blur["reader"] > blur["ignorer"] + 0.1, blur
    worst = {k: next(r["flip_rate"] for r in v["per_corruption"]
                     if r["corruption"] == "gaussian_blur" and r["severity"] == 5) for k, v in res.items()}
    assert worst["reader"] >= 0.25 and worst["ignorer"] <= 0.1, worst


# ----------------------------------------------------------------------------------------------
# the maths


def _image(seed: int = 0, side: int = 32) -> torch.Tensor:
    """A textured RGB batch of 2 in (0.1, 0.9): smooth gradients, edges and noise, so nothing clips at identity."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    base = torch.stack([yy, xx, (yy + xx) / 2])[None].repeat(2, 1, 1, 1)
    base[:, :, side // 4: side // 2, side // 4: side // 2] = 0.8
    return (0.1 + 0.8 * (0.7 * base + 0.3 * torch.rand(2, 3, side, side, generator=g))).clamp(0.1, 0.9)


@pytest.mark.parametrize("name", C.CORRUPTIONS)
def test_severity_zero_is_the_identity(name):
    x = _image()
    for table in C.TABLES:
        lv = C.level(name, 0, 32, table)
        assert torch.equal(C.corrupt(x, lv, generator=torch.Generator().manual_seed(0)), x)


def _hf_energy(y: torch.Tensor) -> float:
    """Energy of the discrete Laplacian: what blur removes first."""
    lap = 4 * y[..., 1:-1, 1:-1] - y[..., :-2, 1:-1] - y[..., 2:, 1:-1] - y[..., 1:-1, :-2] - y[..., 1:-1, 2:]
    return float((lap ** 2).mean())


def test_severities_grow_in_a_measurable_way():
    mid = torch.full((1, 3, 64, 64), 0.5)
    for table in C.TABLES:  # each table at the side it was made for
        side = C.TABLE_SIDE[table]
        x = _image(side=side)
        lv = {c: [C.level(c, s, side, table) for s in range(1, 6)] for c in C.CORRUPTIONS}
        stds = [float((C.corrupt(mid, v, generator=torch.Generator().manual_seed(1)) - mid).std())
                for v in lv["gaussian_noise"]]
        want = [v.parameter for v in lv["gaussian_noise"]]
        assert np.allclose(stds[:3], want[:3], rtol=0.05) and np.all(np.diff(stds) > 0)  # clipping shrinks the rest
        hf = [_hf_energy(C.corrupt(x, v)) for v in lv["gaussian_blur"]]
        assert hf[0] < _hf_energy(x) and np.all(np.diff(hf) < 0), hf
        err = [float(((C.corrupt(x, v) - x) ** 2).mean()) for v in lv["jpeg"]]
        assert err[0] > 0 and err[-1] > err[0], err
        bright = [float(C.corrupt(x, v).amax(1).mean()) for v in lv["brightness"]]
        assert np.all(np.diff([float(x.amax(1).mean())] + bright) > 0)
        spread = [float(C.corrupt(x, v).std(dim=(2, 3)).mean()) for v in lv["contrast"]]
        assert np.all(np.diff([float(x.std(dim=(2, 3)).mean())] + spread) < 0)
        blocks = [len(torch.unique(C.corrupt(x, v)[0, 0])) for v in lv["pixelate"]]
        assert np.all(np.diff(blocks) <= 0) and blocks[-1] < len(torch.unique(x[0, 0]))
    # the blur's sigma follows the input side; nothing else does
    assert C.level("gaussian_blur", 3, 112, "imagenet_c").parameter == pytest.approx(1.5)
    assert C.level("gaussian_noise", 3, 112, "imagenet_c").parameter == pytest.approx(0.18)
    assert C.choose_table(28) == "cifar_10_c" and C.choose_table(224) == "imagenet_c"


def test_blur_and_brightness_equal_written_out_references():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = _image(3)
    y = C.gaussian_blur(x, 1.3)
    ref = np.stack([[ndimage.gaussian_filter(x[n, c].double().numpy(), 1.3, mode="nearest", truncate=4.0)
                     for c in range(3)] for n in range(2)])
    assert np.abs(y.numpy() - ref).max() < 1e-5
    z = C.brightness(x[:1, :, :6, :6], 0.2)[0].permute(1, 2, 0).reshape(-1, 3).numpy()
    for px, out in zip(x[0, :, :6, :6].permute(1, 2, 0).reshape(-1, 3).tolist(), z):  # the paper: rgb->hsv->rgb
        h, s, v = colorsys.rgb_to_hsv(*px)
        assert np.allclose(colorsys.hsv_to_rgb(h, s, min(1.0, v + 0.2)), out, atol=1e-5)
    m = x.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(C.contrast(x, 0.3), ((x - m) * 0.3 + m).clamp(0, 1))


def test_batched_passes_equal_one_image_at_a_time(tiny_model):
    x = torch.cat([_image(s) for s in range(3)])[:5]
    levels = [C.level(c, s, 32, "cifar_10_c") for c in C.CORRUPTIONS for s in (1, 5)]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        clean = tiny_model(x).argmax(1).numpy()
    batches = [([0, 1, 2], x[:3]), ([3, 4], x[3:])]
    preds, pcls, _ = E.run_levels(tiny_model, batches, levels, clean, lambda pos, shape: noise[pos])
    ref_preds, ref_pcls = E.naive_levels(tiny_model, x, levels, clean, noise)
    assert np.array_equal(preds, ref_preds) and np.allclose(pcls, ref_pcls, atol=1e-5)


def test_wilson_interval_and_tie_test(monkeypatch):
    lo, hi = E.wilson(0, 24)
    assert lo == 0 and hi == pytest.approx(0.138, abs=1e-3)  # the rule of three's neighbour: 3.84 / (24 + 3.84)
    lv = [C.level(c, 1, 32, "cifar_10_c") for c in ("gaussian_noise", "gaussian_blur", "jpeg")]
    n = 200
    clean = np.zeros(n, dtype=np.int64)
    preds = np.zeros((3, n), dtype=np.int64)
    preds[0, :100] = 1  # noise flips half
    preds[1, 50:146] = 1  # blur flips nearly as many, half of them others: a tie
    preds[2, :10] = 1  # jpeg: clearly fewer
    run = E.CorruptionRun(lv, preds, np.ones((3, n), np.float32), clean, np.ones(n, np.float32), -np.ones(n, np.int64))
    f = E.fragility(run, np.random.default_rng(0), 500)
    assert f.most_fragile == "gaussian_noise" and f.tied == ["gaussian_blur"]
    monkeypatch.setattr(E, "BOOTSTRAP_CELLS", 1000)  # resamples drawn 5 at a time (the bound for 100k images)
    g = E.fragility(run, np.random.default_rng(0), 500)
    assert g.tied == f.tied and abs(g.diff_ci95["jpeg"][0] - f.diff_ci95["jpeg"][0]) < 0.03
    assert E.mildest(run) == (1, 146)
    preds[1, 50:146], preds[1, :96] = 0, 1  # the same count, but a subset of noise's flips: noise is surely worse
    assert E.fragility(run, np.random.default_rng(0), 500).tied == []


# ----------------------------------------------------------------------------------------------
# the section on the demo model


@pytest.fixture()
def demo_ctx(make_ctx):
    from reportgen import demo
    from reportgen.preprocess import Preprocessing

    pre = Preprocessing(resize=None, input_size=demo.INPUT_SIZE, mean=demo.MEAN, std=demo.STD, source="demo")
    return lambda: make_ctx(demo.build_model(), demo.images_dir(), class_names=demo.labels(), pre=pre)


def test_demo_section_fills_its_results_and_repeats_exactly(demo_ctx):
    info = registry.get("corruptions")
    a = run_technique(demo_ctx(), info, strict=True)
    b = run_technique(demo_ctx(), info, strict=True)
    r = a.results
    assert not undeclared("corruptions", r) and not missing("corruptions", r)
    assert r == b.results
    assert r["labelled"] is True and r["images"] > 0 and r["most_fragile"] in C.CORRUPTIONS
    assert len(r["per_corruption"]) == len(C.CORRUPTIONS) * 3
    assert all(row["accuracy"] is not None and 0 <= row["flip_rate"] <= 1 for row in r["per_corruption"])
    assert 0 <= r["mildest_flips"] <= r["images"] and r["mildest_severity"] == 1
    top = max(r["fragility"].values())
    assert r["fragility"][r["most_fragile"]] == top
    # the examples really flip at the lowest severity
    rows = {(row["corruption"], row["severity"]): row for row in r["per_corruption"]}
    assert all(rows[(e["corruption"], 1)]["flip_rate"] > 0 and e["clean"] != e["corrupted"] for e in r["examples"])
