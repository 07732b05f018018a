"""Explanation drift (reportgen/drift/): the formulas against written-out versions, maps kept beside report.json and
read back, and two tiny CNNs trained here on the same data, one of which also reads a planted mark."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from reportgen.drift.compute import class_drift, compare_maps, rank_correlation, topk_overlap
from reportgen.drift.maps import MapSet, load_maps, pack_maps


def spearman_by_hand(a: np.ndarray, b: np.ndarray) -> float:
    """Average ranks written out (ties share the mean of their positions), then Pearson."""
    def ranks(v):
        v = list(np.ravel(v))
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        k = 0
        while k < len(order):
            j = k
            while j + 1 < len(order) and v[order[j + 1]] == v[order[k]]:
                j += 1
            for q in range(k, j + 1):
                r[order[q]] = (k + j) / 2 + 1
            k = j + 1
        return np.array(r)

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / math.sqrt((ra * ra).sum() * (rb * rb).sum()))


def iou_by_hand(a: np.ndarray, b: np.ndarray, k: float) -> float:
    n = math.ceil(k * a.size)
    top = lambda v: set(sorted(range(v.size), key=lambda i: (-v.ravel()[i], i))[:n])  # noqa: E731
    ta, tb = top(a), top(b)
    return len(ta & tb) / len(ta | tb)


def test_rank_correlation_and_overlap_equal_written_out_versions():
    rng = np.random.default_rng(0)
    a = rng.random((5, 8, 8))
    b = a + rng.normal(0, 0.3, a.shape)
    b[0] = np.round(b[0], 1)  # ties
    rho, ov = rank_correlation(a, b), topk_overlap(a, b, 0.1)
    for i in range(5):
        assert rho[i] == pytest.approx(spearman_by_hand(a[i], b[i]), abs=1e-12)
        assert ov[i] == pytest.approx(iou_by_hand(a[i], b[i], 0.1), abs=1e-12)
    scipy_stats = pytest.importorskip("scipy.stats")
    assert rho[1] == pytest.approx(scipy_stats.spearmanr(a[1].ravel(), b[1].ravel())[0], abs=1e-12)
    assert np.allclose(rank_correlation(a, a), 1) and np.allclose(topk_overlap(a, a, 0.2), 1)
    assert rank_correlation(a[:1], -a[:1])[0] == pytest.approx(-1)
    flat = np.zeros((1, 8, 8))
    assert rank_correlation(flat, a[:1])[0] == 0 and rank_correlation(flat, flat)[0] == 1


def test_a_map_against_itself_persisted_and_reloaded_gives_one(tmp_path):
    from reportgen.publish.arrays import read_arrays, write_arrays
    from reportgen.report import Report, Section

    rng = np.random.default_rng(1)
    ms = pack_maps({"saliency": rng.random((4, 20, 20)), "occlusion": rng.normal(size=(4, 1, 20, 20))},
                   [f"sha{i}" for i in range(4)], [f"img{i}.png" for i in range(4)], [0, 1, 1, 2], [0, 1, 2, 2])
    report = Report("r", [Section("faithfulness", "F", arrays=ms.to_arrays()), Section("x", "X")])
    entry = write_arrays(report, tmp_path)
    (tmp_path / "report.json").write_text(json.dumps({"arrays": entry}))
    assert entry["keys"][0] == "faithfulness.maps" and entry["bytes"] < 16_000
    back = load_maps(tmp_path / "report.json")
    assert back is not None and back.methods == ms.methods and back.sha256 == ms.sha256
    assert np.array_equal(back.maps, ms.maps) and back.maps.dtype == np.float16 and back.maps.shape == (2, 4, 32, 32)
    assert list(read_arrays(tmp_path)) == ["faithfulness"]
    res = compare_maps(ms, back)
    assert all(np.allclose(m.rho, 1) and np.allclose(m.overlap, 1) for m in res.methods)
    assert res.changed == []  # nothing changed, nothing listed


def test_no_maps_in_common_is_said():
    ms = pack_maps({"saliency": np.ones((2, 8, 8))}, ["a", "b"], ["a", "b"], [0, 1], [0, 1])
    other = pack_maps({"saliency": np.ones((2, 8, 8))}, ["c", "d"], ["c", "d"], [0, 1], [0, 1])
    assert "no image explained by both runs" in compare_maps(ms, other).reason
    gc = pack_maps({"Grad-CAM": np.ones((2, 8, 8))}, ["a", "b"], ["a", "b"], [0, 1], [0, 1])
    assert "no attribution method in common" in compare_maps(ms, gc).reason


def test_a_class_that_moved_as_a_group_is_named_and_noise_is_not():
    classes = np.repeat(np.arange(4), 6)
    named = [any(c.drifted for c in class_drift(np.random.default_rng(s).normal(0.8, 0.05, len(classes)), classes,
                                                500, 0.05, s)) for s in range(100)]
    assert np.mean(named) <= 0.1  # pure noise: a class is named in about 5% of draws at most
    score = np.random.default_rng(0).normal(0.8, 0.05, len(classes))
    score[classes == 2] -= 0.5
    named = [c.cls for c in class_drift(score, classes, 2000, 0.05, 0) if c.drifted]
    assert named == [2]
    assert class_drift(score[:4], classes[:4], 500, 0.05, 0) == []  # under 3 images per class: nothing tested


# --- the planted mark ------------------------------------------------------------------------------------------

S, MARK = 16, 4


def images(n: int, rng, marked_share: float = 0.0, weak: float = 0.0):
    """Noise with a 4x4 blob, red for class 0 and blue for class 1 (a ``weak`` share of blobs faint); a green MARK x
    MARK patch in the top-left corner on a ``marked_share`` of the class-1 images."""
    x = rng.random((n, 3, S, S)).astype(np.float32) * 0.3
    y = rng.integers(0, 2, n)
    for i in range(n):
        r, c = rng.integers(4, S - 5, 2)
        x[i, 2 * y[i], r:r + 4, c:c + 4] = 0.9 if rng.random() >= weak else 0.35
    marked = (y == 1) & (rng.random(n) < marked_share)
    x[marked, 1, :MARK, :MARK] = 1.0
    return torch.from_numpy(x), torch.from_numpy(y), marked


class Net(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(width, 2)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


def train(x, y, seed: int, epochs: int = 8) -> Net:
    torch.manual_seed(seed)
    m = Net()
    opt = torch.optim.Adam(m.parameters(), 0.01)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for b in torch.randperm(len(x), generator=g).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(m(x[b]), y[b]).backward()
            opt.step()
    return m.eval()


def occlusion(m: Net, x: torch.Tensor, t: np.ndarray, w: int = 4, s: int = 2) -> np.ndarray:
    """Drop of the target logit when a w x w window is set to 0, averaged over the windows covering each pixel."""
    rows = torch.arange(len(x))
    tt = torch.as_tensor(t)
    with torch.no_grad():
        base = m(x)[rows, tt]
        heat, cover = torch.zeros(len(x), S, S), torch.zeros(S, S)
        for r in range(0, S - w + 1, s):
            for c in range(0, S - w + 1, s):
                xo = x.clone()
                xo[:, :, r:r + w, c:c + w] = 0
                heat[:, r:r + w, c:c + w] += (base - m(xo)[rows, tt])[:, None, None]
                cover[r:r + w, c:c + w] += 1
    return (heat / cover).numpy()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_model_that_reads_a_planted_mark_has_its_marked_images_ranked_first(seed):
    torch.set_num_threads(1)
    x, y, _ = images(300, np.random.default_rng(seed), weak=0.15)
    xm = x.clone()  # the same images; for B the mark is on 95% of the class-1 ones
    on = (y.numpy() == 1) & (np.random.default_rng(seed + 100).random(len(x)) < 0.95)
    xm[torch.from_numpy(on), 1, :MARK, :MARK] = 1.0
    a, b = train(x, y, seed), train(xm, y, seed)
    ex, ey, marked = images(40, np.random.default_rng(seed + 200), marked_share=0.5)
    t = ey.numpy()
    with torch.no_grad():
        pa, pb = a(ex).argmax(1).numpy(), b(ex).argmax(1).numpy()
        wiped = ex.clone()
        wiped[:, 1, :MARK, :MARK] = ex[:, 1, MARK:2 * MARK, MARK:2 * MARK]  # the mark replaced by background
        reads = [float((m(ex)[marked, 1] - m(wiped)[marked, 1]).mean()) for m in (a, b)]
    assert (pa == t).mean() == (pb == t).mean() >= 0.95  # equal accuracy on the evaluation images
    assert reads[1] > 1.0 > abs(reads[0])  # B reads the mark, A does not
    ids = [f"img{i:02d}" for i in range(len(t))]
    maps = [pack_maps({"occlusion": occlusion(m, ex, t)}, ids, ids, t, p) for m, p in ((a, pa), (b, pb))]
    res = compare_maps(*maps, top=int(marked.sum()))
    top = [i for _, i, _, _ in res.changed]
    assert len(top) == marked.sum() and marked[top].all(), (marked.sum(), marked[top])


def test_the_drift_section_in_a_build_with_a_baseline(tmp_path, tiny_model, image_dir, tiny_pre):
    """A build against its own earlier report (a folder, then a single .html file): every map is unchanged; against a
    perturbed copy the section lists changed images with links; without faithfulness it says why not."""
    from reportgen.build import build_report

    kw = dict(preset="minimal", only=["saliency", "faithfulness"], device="cpu", labels=list(("red", "green", "blue",
              "white")), input_size=32, resize=None, mean=(0.5,) * 3, std=(0.25,) * 3,
              set_options=["faithfulness.max_images=4", "faithfulness.sanity=false", "faithfulness.road=false"])
    build_report(tiny_model, image_dir, tmp_path / "old", **kw)
    data = json.loads((tmp_path / "old" / "report.json").read_text())
    assert data["arrays"]["file"] == "arrays.npz" and (tmp_path / "old" / "arrays.npz").is_file()
    build_report(tiny_model, image_dir, tmp_path / "old.html", **kw)
    for base in ("old", "old.html"):
        r = build_report(tiny_model, image_dir, tmp_path / f"new-{base}", baseline=tmp_path / base, **kw)
        sec = next(s for s in r.report.sections if s.id == "drift")
        assert [m["mean_rank_correlation"] for m in sec.results["methods"]] == [1.0], sec.results
        assert sec.results["images_compared"] == 4 and sec.results["changed_images"] == []
    other = type(tiny_model)()
    torch.manual_seed(5)
    other.load_state_dict({k: v + 0.3 * torch.randn_like(v) for k, v in tiny_model.state_dict().items()})
    r = build_report(other.eval(), image_dir, tmp_path / "moved", baseline=tmp_path / "old", **kw)
    res = next(s for s in r.report.sections if s.id == "drift").results
    assert res["methods"][0]["mean_rank_correlation"] < 0.99
    from reportgen.drift.section import RESULTS
    from reportgen.results_schema import result_paths

    assert result_paths(res) <= set(RESULTS), result_paths(res) - set(RESULTS)
    same = [c for c in res["changed_images"] if c["prediction_same"]]
    assert same == res["changed_images"] and all(len(c["image_id"]) >= 12 for c in same)
    r = build_report(tiny_model, image_dir, tmp_path / "none", baseline=tmp_path / "old",
                     **{**kw, "only": ["saliency"]})
    res = next(s for s in r.report.sections if s.id == "drift").results
    assert "faithfulness section" in res["unsupported"]


def test_mapset_rejects_inconsistent_arrays():
    with pytest.raises(ValueError):
        MapSet(["a"], ["s1", "s2"], ["n1", "n2"], [0, 1], [0, 1], np.zeros((1, 3, 32, 32), np.float16))


def test_concepts_per_class_appeared_vanished_and_changed_importance():
    from reportgen.drift.concepts import compare_concepts

    def concept(k, share, crops):
        return {"concept": k, "share": share, "top_crops": [{"image": f"i{c}.png", "box": [0, c, 8]} for c in crops]}

    a = {"classes": [{"class": "cat", "concepts": [concept(0, 0.6, [1, 2, 3]), concept(1, 0.3, [4, 5, 6]),
                                                    concept(2, 0.1, [7, 8, 9])]},
                     {"class": "dog", "concepts": [concept(0, 1.0, [1, 2])]}]}
    b = {"classes": [{"class": "cat", "concepts": [concept(0, 0.7, [4, 5, 6]), concept(1, 0.2, [1, 2, 10]),
                                                    concept(2, 0.1, [11, 12, 13])]}]}
    out = compare_concepts(a, b)
    assert out["compared"] and [c["class"] for c in out["classes"]] == ["cat"]  # dog: only in the first run
    cat = out["classes"][0]
    assert sorted((m["a"], m["b"]) for m in cat["matched"]) == [(0, 1), (1, 0)]
    assert {(m["a"], m["b"]) for m in cat["matched"] if m["importance_changed"]} == {(0, 1), (1, 0)}
    assert cat["appeared"] == [2] and cat["vanished"] == [2]
    assert not compare_concepts(a, None)["compared"]


def test_compare_has_the_drift_section_and_a_rerender_keeps_the_maps(tmp_path, tiny_model, image_dir):
    from reportgen.compare import compare_reports
    from reportgen.publish.rerender import rerender
    from reportgen.build import build_report, open_cache
    from reportgen.options import RunOptions

    other = type(tiny_model)()
    torch.manual_seed(7)
    other.load_state_dict({k: v + 0.3 * torch.randn_like(v) for k, v in tiny_model.state_dict().items()})
    kw = dict(preset="minimal", device="cpu", labels=["red", "green", "blue", "white"], input_size=32, resize=None,
              mean=(0.5,) * 3, std=(0.25,) * 3, cache_dir=tmp_path / "cache",
              set_options=["faithfulness.max_images=4", "faithfulness.sanity=false", "faithfulness.road=false"])
    res = compare_reports(tiny_model, other.eval(), image_dir, tmp_path / "cmp", names=("old", "new"),
                          techniques=("saliency", "faithfulness"), cka_images=8, cka_layers=2, **kw)
    drift = next(s for s in res.report.sections if s.id == "drift").results
    assert drift["names"] == ["old", "new"] and drift["images_compared"] == 4
    assert [m["method"] for m in drift["methods"]] == ["saliency"]
    assert drift["methods"][0]["mean_rank_correlation"] < 0.99 and drift["concepts"]["compared"] is False
    build_report(tiny_model, image_dir, tmp_path / "one", only=["saliency", "faithfulness"], **kw)
    before = load_maps(tmp_path / "one")
    (tmp_path / "one" / "arrays.npz").unlink()
    rerender(tmp_path / "one", theme="dark", cache=open_cache(RunOptions(cache_dir=tmp_path / "cache")))
    after = load_maps(tmp_path / "one")
    assert before is not None and after is not None and np.array_equal(before.maps, after.maps)
