"""Data issues: copies found as duplicates (exact and near), leakage from a reference folder, and swapped labels
ranked first by confident learning (which equals a written-out version of the paper's formulas)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reportgen.build import run_technique
from reportgen.errors import ReportgenError
from reportgen.failures.labelnoise import confident_learning
from reportgen.registry import get


def smooth_image(rng, size: int = 64) -> np.ndarray:
    """A random smooth colour image (upsampled noise): distinct images are uncorrelated in pixels."""
    small = rng.random((8, 8, 3)) * 255
    return np.asarray(Image.fromarray(small.astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC))


def write_set(root: Path, n: int = 16, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    names = []
    for k in range(n):
        d = root / ("red" if k % 2 else "green")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(smooth_image(rng)).save(d / f"img_{k}.png")
        names.append(f"{d.name}/img_{k}.png")
    return names


def add_copies(root: Path, src: Path, names: list[str]) -> dict[str, tuple[str, str]]:
    """copy name -> (original, kind): a re-saved PNG (same pixels, other bytes), a resized JPEG, an enlarged JPEG."""
    out = {}
    for k, (name, kind) in enumerate(zip(names, ("exact", "small_jpeg", "big_jpeg"))):
        im = Image.open(src / name).convert("RGB")
        stem = Path(name).parent / f"copy_{k}"
        dst = root / stem
        dst.parent.mkdir(parents=True, exist_ok=True)
        if kind == "exact":
            im.save(dst.with_suffix(".png"), compress_level=1)
            out[str(stem.with_suffix(".png"))] = (name, kind)
        else:
            size = (48, 48) if kind == "small_jpeg" else (128, 128)
            im.resize(size, Image.Resampling.BICUBIC).save(dst.with_suffix(".jpg"), quality=70)
            out[str(stem.with_suffix(".jpg"))] = (name, kind)
    return out


def resized_pre():
    """Resize the short side to the input size (the whole image is seen, whatever its size)."""
    from reportgen.preprocess import Preprocessing

    return Preprocessing(resize=32, input_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), source="test")


def test_copies_are_found_as_exact_and_near_duplicates(make_ctx, tiny_model, tmp_path):
    names = write_set(tmp_path / "set")
    copies = add_copies(tmp_path / "set", tmp_path / "set", names[:3])
    ctx = make_ctx(tiny_model, tmp_path / "set", general={"max_images": 100}, pre=resized_pre())
    sec = run_technique(ctx, get("data_issues"))
    assert sec.error is None, sec.error
    res = sec.results
    exact = [set(g) for g in res["exact_duplicates"]]
    near = {frozenset((p["a"], p["b"])) for p in res["near_duplicates"]}
    for copy, (orig, kind) in copies.items():
        if kind == "exact":
            assert {copy, orig} in exact
            assert frozenset((copy, orig)) not in near  # listed once, as exact
        else:
            assert frozenset((copy, orig)) in near, (copy, res["near_duplicates"])
    assert len(exact) == 1 and len(near) == 2  # no distinct pair of the set is flagged
    assert res["counts"]["near_duplicates"] == 2


def test_reference_copies_are_leakage_and_a_missing_folder_is_bad_input(make_ctx, tiny_model, tmp_path):
    names = write_set(tmp_path / "set", n=10, seed=1)
    write_set(tmp_path / "train", n=10, seed=2)
    copies = add_copies(tmp_path / "train", tmp_path / "set", names[:3])
    ctx = make_ctx(tiny_model, tmp_path / "set", general={"reference_images": str(tmp_path / "train")},
                   pre=resized_pre())
    sec = run_technique(ctx, get("data_issues"))
    assert sec.error is None, sec.error
    found = {(d["image"], d["reference"]) for d in sec.results["reference_duplicates"]}
    assert found == {(orig, copy) for copy, (orig, _) in copies.items()}
    assert sec.results["reference_images"] == 13
    from reportgen.build import run_config
    from reportgen.options import RunOptions

    with pytest.raises(ReportgenError, match="reference-images"):
        run_config(RunOptions(reference_images=tmp_path / "missing"))


def written_out(probs: np.ndarray, labels: np.ndarray):
    """Confident learning as the paper writes it (Northcutt et al. 2021, eq. 1-2), loops only."""
    n, m = probs.shape
    t = []
    for j in range(m):
        rows = [i for i in range(n) if labels[i] == j]
        t.append(sum(probs[i, j] for i in rows) / len(rows) if rows else None)
    joint = {}
    issues = []
    for i in range(n):
        above = [j for j in range(m) if t[j] is not None and probs[i, j] >= t[j]]
        if not above:
            continue
        j = max(above, key=lambda c: probs[i, c])
        joint[(int(labels[i]), j)] = joint.get((int(labels[i]), j), 0) + 1
        if j != labels[i]:
            issues.append((probs[i, labels[i]], i, j))
    issues.sort()
    return t, joint, [i for _, i, _ in issues], [j for _, _, j in issues]


def test_confident_learning_equals_the_written_out_formulas():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, (40, 5))
    labels = rng.integers(0, 4, 40)  # class 4 has no labelled image: no threshold
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    t, joint, rows, likely = written_out(probs, labels)
    li = confident_learning(logits, labels)
    assert np.allclose(li.thresholds[:4], t[:4]) and np.isnan(li.thresholds[4])
    assert li.joint == joint
    assert li.images.tolist() == rows and li.likely.tolist() == likely
    assert np.allclose(li.self_confidence, probs[rows, labels[rows]])


def test_swapped_labels_rank_above_every_correctly_labelled_image():
    rng = np.random.default_rng(0)
    n, k = 300, 6
    truth = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), truth] += rng.uniform(3.0, 5.0, n)  # a good model: right on most images
    given = truth.copy()
    swapped = rng.choice(n, 6, replace=False)
    given[swapped] = (truth[swapped] + 1 + rng.integers(0, k - 1, 6)) % k
    li = confident_learning(logits, given)
    flagged = li.images.tolist()
    bad = [r for r, i in enumerate(flagged) if i in set(swapped.tolist())]
    # at least 5 of the 6 (one whose true class probability is below that class's threshold is not counted by
    # the confident joint), and every one above every correctly labelled image
    assert len(bad) >= 5 and bad == list(range(len(bad)))
    assert (li.likely[:len(bad)] == truth[li.images[:len(bad)]]).all()


def test_end_to_end_swapped_labels_on_the_demo_model(make_ctx, tmp_path):
    """The demo Fashion-MNIST model on up to 40 of its own images the model gets right; three moved to a wrong class
    folder come first among the suspected label errors."""
    from reportgen.demo import DEMO_ARCHS, images_dir
    from reportgen.loading import load_model

    lm = load_model(DEMO_ARCHS["cnn"][0])
    src = images_dir()
    ctx = make_ctx(lm.model, src, pre=lm.preprocessing, class_names=lm.class_names, general={"max_images": 80})
    f = ctx.features()
    right = [i for i in range(len(ctx.images)) if f.preds[i] == ctx.images.labels[i]]
    picks = right[:40]
    # the three most confident go to the next class's folder (a less confident one may fall below its class's
    # threshold t_j, and confident learning then rightly does not count it)
    sure = set(sorted(picks, key=lambda i: -f.probs[i, f.preds[i]])[:3])
    folders = sorted(p.name for p in src.iterdir() if p.is_dir())
    moved = []
    for i in picks:
        rel = Path(ctx.images.name(i))
        folder = rel.parent.name
        if i in sure:
            folder = folders[(folders.index(folder) + 1) % len(folders)]
            moved.append(f"{folder}/{rel.name}")
        (tmp_path / "set" / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(src / rel, tmp_path / "set" / folder / rel.name)
    ctx2 = make_ctx(lm.model, tmp_path / "set", pre=lm.preprocessing, class_names=lm.class_names,
                    general={"max_images": 1000})
    sec = run_technique(ctx2, get("data_issues"))
    assert sec.error is None, sec.error
    issues = [d["image"] for d in sec.results["label_issues"]]
    assert len(moved) == 3 and set(issues[:3]) == set(moved)


def test_cli_refuses_a_missing_reference_folder_before_any_work(tmp_path):
    from click.testing import CliRunner

    from reportgen.cli import main

    r = CliRunner().invoke(main, ["build", "--model", "nowhere.py:build", "--images", str(tmp_path), "--out",
                                  str(tmp_path / "out"), "--reference-images", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "reference-images" in r.output
    assert not (tmp_path / "out").exists()


def test_section_cache_key_follows_the_reference_folder_content(make_ctx, tiny_model, image_dir, tmp_path):
    """Same path, other files: another section key (a cached data_issues must not answer for an old folder)."""
    from reportgen.build import _section_key

    ref = tmp_path / "train"
    write_set(ref, n=2)
    info = get("data_issues")

    def key():
        ctx = make_ctx(tiny_model, image_dir, general={"reference_images": str(ref)})
        return _section_key(ctx, info, ctx.config.options("data_issues"))
    before = key()
    assert key() == before
    write_set(ref, n=3, seed=5)
    assert key() != before
