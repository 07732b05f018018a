"""The adversarial technique (reportgen/techniques/adversarial.py): its own tests."""

from __future__ import annotations

import numpy as np
import torch
from conftest import CLASSES, ColourMeans

from reportgen import registry
from reportgen.build import run_technique
from reportgen.preprocess import PixelModel, Preprocessing
from reportgen.report import Figure, Note, Table


def test_targeted_attack_flips_the_label():
    from reportgen.techniques.adversarial import targeted_attack

    pm = PixelModel(ColourMeans(), Preprocessing(None, 16, (0.0,) * 3, (1.0,) * 3)).eval()
    x = torch.full((2, 3, 16, 16), 0.2)  # (not 0: the ReLU's gradient is 0 there)
    x[0, 0] = 0.8  # red
    x[1, 2] = 0.6  # blue
    with torch.no_grad():
        assert pm(x).argmax(1).tolist() == [0, 2]
    res = targeted_attack(pm, x, [1, 0], max_steps=200, step=2 / 255, min_prob=0.9, eps=None)
    assert res.done.all()
    with torch.no_grad():
        z = pm(res.images)
    assert z.argmax(1).tolist() == [1, 0]
    assert (torch.softmax(z, 1).max(1).values >= 0.9).all()
    assert res.images.min() >= 0 and res.images.max() <= 1
    assert (res.steps_taken > 0).all() and (res.steps_taken < 200).all()
    # the objective (log p_target) went up while attacking
    assert (res.history[-1] > res.history[0]).all()
    # deterministic
    again = targeted_attack(pm, x, [1, 0], max_steps=200, step=2 / 255, min_prob=0.9, eps=None)
    assert torch.equal(again.images, res.images) and np.array_equal(again.steps_taken, res.steps_taken)


def test_adversarial_section_reports_a_flip(make_ctx, image_dir):
    c = make_ctx(ColourMeans(), image_dir, class_names=["red", "green", "blue"],
                 pre=Preprocessing(None, 32, (0.0,) * 3, (1.0,) * 3),
                 overrides={"adversarial": {"max_steps": 150, "step_size": 2.0, "epsilon": 128.0}})
    sec = run_technique(c, registry.get("adversarial"), strict=True)
    note = next(b.text for b in sec.blocks if isinstance(b, Note))
    assert "Fooled 1 of 1 within ε = 128/255" in note
    assert sec.results["fooled"] == 1 and sec.results["targeted"][0]["linf_255"] <= 128 + 1e-3
    table = next(b for b in sec.blocks if isinstance(b, Table))
    assert len(table.rows) == 2 * len(c.config.options("adversarial").epsilons)


def test_fgsm_and_pgd_respect_the_budget(tiny_model):
    from reportgen.techniques.adversarial import untargeted_attack

    pm = PixelModel(tiny_model, Preprocessing(None, 16, (0.5,) * 3, (0.25,) * 3)).eval()
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2])
    eps = 8 / 255
    for kw in (dict(steps=1), dict(steps=5, random_start=True, generator=torch.Generator().manual_seed(1))):
        adv = untargeted_attack(pm, x, y, eps, **kw)
        assert float((adv - x).abs().max()) <= eps + 1e-6
        assert adv.min() >= 0 and adv.max() <= 1
        with torch.no_grad():
            before = torch.nn.functional.cross_entropy(pm(x), y)
            after = torch.nn.functional.cross_entropy(pm(adv), y)
        assert after > before


def test_targeted_attack_never_leaves_the_epsilon_ball_and_says_so(make_ctx, image_dir, tmp_path, identity_pre,
                                                                   walk_blocks):
    # before: no budget (the demo used 41/255) and "the two images look the same to a person"
    from reportgen.techniques.adversarial import targeted_attack

    pm = PixelModel(ColourMeans(), Preprocessing(None, 16, (0.0,) * 3, (1.0,) * 3)).eval()
    x = torch.full((2, 3, 16, 16), 0.2)
    x[0, 0] = 0.8
    x[1, 2] = 0.6
    for eps in (2 / 255, 8 / 255):
        res = targeted_attack(pm, x, [1, 0], max_steps=60, step=1 / 255, min_prob=0.9, eps=eps)
        assert float((res.images - x).abs().max()) <= eps + 1e-6
    import shutil

    rgb = tmp_path / "rgb"  # the three classes the model knows (a white image is a near-tie, fooled at 1/255)
    for name in ("red", "green", "blue"):
        shutil.copytree(image_dir / name, rgb / name)
    c = make_ctx(ColourMeans(), rgb, class_names=["red", "green", "blue"], pre=identity_pre,
                 overrides={"adversarial": {"max_steps": 60, "step_size": 2.0, "epsilon": 2.0}})
    sec = run_technique(c, registry.get("adversarial"), strict=True)
    t = sec.results["targeted"][0]
    assert t["linf_255"] <= 2.0 + 1e-3 and not t["fooled"]
    captions = [b.caption for b in walk_blocks(sec.blocks) if isinstance(b, Figure)]
    assert any("NOT fooled within ε = 2/255" in cap for cap in captions)
    assert "look the same" not in registry.get("adversarial").summary
    table = next(b for b in sec.blocks if isinstance(b, Table))
    assert "changed as 8-bit" in table.columns
    assert all("changed_8bit" in row for row in sec.results["untargeted"])
    assert sec.results["untargeted_against"] == "the true label"
    c = make_ctx(ColourMeans(), image_dir, class_names=["red", "green", "blue"], pre=identity_pre,
                 overrides={"adversarial": {"max_steps": 4}})
    sec = run_technique(c, registry.get("adversarial"), strict=True)
    assert sec.results["untargeted_against"].startswith("the true label where known")  # "white" is not a class
    assert min(c.config.options("adversarial").epsilons) >= 1.0  # below 1/255 does not survive 8 bits


def test_untargeted_images_are_spread_across_classes(make_ctx, tiny_model, image_dir, monkeypatch):
    # before: the first 16 images of the folder (one class in a class-sorted folder)
    from reportgen.techniques import adversarial as adv

    seen = []
    real = adv.untargeted_attack

    def spy(pm, x, labels, eps, **kw):
        seen.extend(labels.tolist())
        return real(pm, x, labels, eps, **kw)

    monkeypatch.setattr(adv, "untargeted_attack", spy)
    c = make_ctx(tiny_model, image_dir, class_names=CLASSES,
                 overrides={"adversarial": {"attack_images": 4, "epsilons": [2.0], "max_steps": 2}})
    sec = run_technique(c, registry.get("adversarial"), strict=True)
    assert sec.results["untargeted_against"] == "the true label"
    assert set(seen) == {0, 1, 2, 3}  # true labels of four different classes
