"""Sanity checks (Adebayo et al. 2018): randomised copies, and the real finding on the demo model."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import make_tiny_cnn
from reportgen.attribution import randomization as R
from reportgen import registry
from reportgen.inspection.hooks import count_hooks
from reportgen.report import Note


def test_randomized_copy_changes_only_the_named_layers():
    m = make_tiny_cnn()
    before = copy.deepcopy(m.state_dict())
    names = R.param_layers(m, torch.rand(1, 3, 32, 32))
    assert names == ["features.0", "features.3", "features.6", "classifier"]  # forward order
    twin = R.randomized_copy(m, ["classifier", "features.6"], seed=3)
    again = R.randomized_copy(m, ["classifier"], seed=3)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k])  # the user's model is untouched
        changed = not torch.equal(twin.state_dict()[k], v)
        assert changed == (k.startswith("classifier") or k.startswith("features.6")), k
    assert torch.equal(again.classifier.weight, twin.classifier.weight)  # same seed per layer
    assert R.cascade_stages(7, 3) == [2, 5, 7] and R.cascade_stages(2, 5) == [1, 2]


def test_norm_layers_reset():
    bn = torch.nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.fill_(3.0)
        bn.running_var.fill_(9.0)
    R.reinit_(bn, 0)
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0) and torch.all(bn.running_var == 1)


@pytest.fixture()
def demo_ctx(make_ctx, tmp_path):
    from reportgen import demo
    from reportgen.preprocess import Preprocessing

    pre = Preprocessing(resize=None, input_size=demo.INPUT_SIZE, mean=demo.MEAN, std=demo.STD, source="demo")
    return make_ctx(demo.build_model(), demo.images_dir(), class_names=demo.labels(), pre=pre)


def test_sanity_on_the_demo_model_finds_what_adebayo_found(demo_ctx):
    model = demo_ctx.model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    info = registry.get("sanity")
    opts = info.default_options("minimal")
    opts.max_images, opts.stages, opts.ig_steps = 2, 7, 8
    sec = info.fn(demo_ctx, opts)
    r = sec.results
    cas = r["cascade_rank_corr"]
    assert r["layers"][-1] == "classifier" and len(r["stages"]) == 7  # every layer, top down
    # the plain gradient depends on the weights: with every layer random it no longer resembles the original
    assert cas["gradient"][-1] < 0.3 and r["verdict"]["gradient"] == "passes"
    # gradient x input style maps (IG, black baseline) still look the same with every layer random
    assert cas["Integrated Gradients"][-1] > 0.8 and r["verdict"]["Integrated Gradients"] == "fails"
    # guided backprop stays high while the top layers are random (the classifier does not matter to it)
    assert cas["guided backprop"][0] > 0.7 > cas["gradient"][0] + 0.3
    assert r["verdict"]["guided backprop"] != "passes"
    text = " ".join(b.text for b in sec.blocks if isinstance(b, Note))
    assert "Integrated Gradients: this map does not depend on the learned weights" in text
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert count_hooks(model) == 0


def test_sanity_draws_the_maps_of_the_first_images_only(demo_ctx):
    """The numbers use max_images; the stage grids draw shown_images of them (184 maps for 3 images before)."""
    from reportgen.report import Grid, Group

    info = registry.get("sanity")
    opts = info.default_options("minimal")
    opts.max_images, opts.stages, opts.ig_steps, opts.shown_images = 2, 3, 4, 1
    sec = info.fn(demo_ctx, opts)
    grids = [g for b in sec.blocks if isinstance(b, Group) for g in b.blocks if isinstance(g, Grid)]
    assert grids and all(len(g.items) == 2 + 3 for g in grids)  # one image: input, trained map, 3 stages
    assert all("first 1 of the 2 images" in g.caption for g in grids)
    assert "over 2 images" in sec.blocks[0].caption


def test_random_logit_flags_guided_backprop_on_the_demo_model(demo_ctx):
    info = registry.get("sanity")
    opts = info.default_options("minimal")
    opts.max_images, opts.stages = 2, 2
    rl = info.fn(demo_ctx, opts).results["random_logit"]
    assert len(rl["classes"]) == 2 and set(rl["methods"]) == {"gradient", "guided backprop", "Grad-CAM",
                                                              "Integrated Gradients"}
    # Sixt et al. 2020: guided backprop barely depends on the class; the plain gradient does
    assert rl["methods"]["guided backprop"]["verdict"] == "fails"
    assert rl["methods"]["gradient"]["rank_corr"] < rl["methods"]["guided backprop"]["rank_corr"]
