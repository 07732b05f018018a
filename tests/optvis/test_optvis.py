"""The shared image-optimisation loop: objectives improve, pixels stay valid, runs are deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from reportgen import optvis
from reportgen.inspection.hooks import count_hooks, module_signature
from reportgen.optvis import objectives as O
from reportgen.optvis import regularizers as R
from reportgen.optvis import transforms as T
from reportgen.preprocess import PixelModel, Preprocessing

from conftest import make_tiny_cnn

PRE = Preprocessing(resize=None, input_size=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), source="test")


@pytest.fixture()
def pm():
    model = make_tiny_cnn()
    return PixelModel(model, PRE).eval()


def assert_gradient_ascent(res: optvis.OptResult) -> None:
    """lucent's assert_gradient_descent, for ascent: every image's objective went up."""
    assert res.history.shape[0] == res.steps > 0
    assert np.isfinite(res.history).all()
    assert res.improved(window=2).all(), res.history[[0, -1]]


def assert_valid_pixels(res: optvis.OptResult) -> None:
    assert res.images.min() >= 0.0 and res.images.max() <= 1.0


def _run(pm, seed: int = 0, **kw):
    g = torch.Generator().manual_seed(seed)
    p = optvis.pixel_image(2, 16, "noise", sd=0.05, generator=g)
    defaults = dict(transforms=[T.jitter(2), T.random_scale([0.9, 1.0, 1.1]), T.random_rotate([-5, 0, 5])],
                    regularizers=[R.BlurEvery(3, 0.5), R.ClipSmallNorm(5), R.ClipSmallContribution(5),
                                  R.ClipSmallGradient(5), R.L2Decay(0.001)],
                    steps=15, lr=0.05, generator=g, evaluate_final=True)
    defaults.update(kw)
    return optvis.render(pm, O.class_logit([1, 2]) - 1e-3 * O.l2(), p, **defaults)


def test_class_objective_improves_valid_and_deterministic(pm):
    model = pm.model
    hooks, sig = count_hooks(model), module_signature(model)
    a = _run(pm)
    assert_gradient_ascent(a)
    assert_valid_pixels(a)
    assert a.final is not None and a.final_logits.shape == (2, 4)
    b = _run(pm)
    assert torch.equal(a.images, b.images) and np.array_equal(a.history, b.history)
    c = _run(pm, seed=1)
    assert not torch.equal(a.images, c.images)
    assert count_hooks(model) == hooks and module_signature(model) == sig


def test_layer_objectives_stop_the_forward_early_and_improve(pm):
    model = pm.model
    calls = []
    h = model.classifier.register_forward_hook(lambda *a: calls.append(1))
    try:
        p = optvis.pixel_image(1, 16, "noise", generator=torch.Generator().manual_seed(0))
        res = optvis.render(pm, O.channel("features.3", 5), p, steps=10, lr=0.05, layer_root=model)
    finally:
        h.remove()
    assert not calls, "the classifier ran although only features.3 was needed"
    assert_gradient_ascent(res)
    assert_valid_pixels(res)
    for obj in (O.neuron("features.3", 2), O.layer_l2("features.0")):
        p = optvis.pixel_image(1, 16, "noise", generator=torch.Generator().manual_seed(0))
        assert_gradient_ascent(optvis.render(pm, obj, p, steps=10, lr=0.05, layer_root=model,
                                             optimizer="sgd", grad_norm="mean_abs"))
    assert count_hooks(model) == 0


def test_sigmoid_parameterisation_and_flags_restored(pm):
    model = pm.model
    model.train()
    for q in model.parameters():
        q.requires_grad_(True)
    p = optvis.pixel_image(1, 16, "uniform", generator=torch.Generator().manual_seed(0), mode="sigmoid")
    res = optvis.render(pm, O.class_log_prob(0), p, steps=8, lr=0.1)
    assert_gradient_ascent(res)
    assert_valid_pixels(res)
    assert model.training and all(q.requires_grad for q in model.parameters())
    model.eval()


def test_objective_algebra():
    img = torch.full((2, 3, 4, 4), 0.75)
    acts = {O.LOGITS: torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
            "layer": torch.arange(2 * 2 * 2 * 2, dtype=torch.float32).view(2, 2, 2, 2)}
    l2 = O.l2(0.5)(acts, img)
    assert torch.allclose(l2, torch.full((2,), 48 * 0.0625))
    obj = 2 * O.class_logit([0, 2]) - 0.5 * O.l2(0.5) + 1
    assert torch.allclose(obj(acts, img), torch.tensor([2 - 1.5 + 1, 12 - 1.5 + 1]))
    assert obj.needs_logits and obj.layers == ()
    ch = O.channel("layer", 1)
    assert torch.allclose(ch(acts, img), torch.tensor([5.5, 13.5]))
    dd = O.layer_l2("layer")
    assert torch.allclose(dd(acts, img), 0.5 * acts["layer"].pow(2).flatten(1).sum(1))
    both = O.per_image([O.class_logit(1), O.channel("layer", 0)])
    assert torch.allclose(both(acts, img), torch.tensor([2.0, 9.5]))
    assert set(both.layers) == {"layer"} and both.needs_logits
    assert torch.allclose(sum([O.class_logit(0), O.class_logit(1)])(acts, img), torch.tensor([3.0, 9.0]))
    assert torch.allclose((-O.class_logit(0) / 2)(acts, img), torch.tensor([-0.5, -2.0]))
    assert float(O.total_variation()(acts, img)[0]) < 1e-4
    with pytest.raises(TypeError):
        _ = O.class_logit(0) + "x"


def test_stop_freezes_done_images_and_counts_steps(pm):
    g = torch.Generator().manual_seed(0)
    p = optvis.pixel_image(2, 16, "noise", generator=g)
    seen = {"n": 0}

    def stop(acts):
        seen["n"] += 1
        # image 0 is done from step 3 on, image 1 never
        return torch.tensor([seen["n"] > 3, False])

    res = optvis.render(pm, O.class_logit(1), p, steps=10, lr=0.05, stop=stop, optimizer="sgd", grad_norm="sign")
    assert res.done.tolist() == [True, False]
    assert res.steps_taken.tolist() == [3, 10]
    assert res.steps == 10


def test_transforms_are_seeded_and_differentiable():
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    t = T.compose(T.standard_transforms(16))
    a = t(x, torch.Generator().manual_seed(3))
    b = t(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    a.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    y = T.jitter(3)(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape


def test_regularisers_do_what_they_say():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 20, 20, generator=g)
    p = optvis.pixel_image(init=img.clone())
    tv0 = float(O.total_variation()({}, p.image().detach()))
    R.BlurEvery(1, 1.0).after_step(0, p, None)
    assert float(O.total_variation()({}, p.image().detach())) < 0.5 * tv0
    p = optvis.pixel_image(init=img.clone())
    R.ClipSmallNorm(25, 0.5).after_step(0, p, None)
    at_center = (p.image() - 0.5).abs().sum(1) < 1e-6
    assert abs(float(at_center.float().mean()) - 0.25) < 0.02
    p = optvis.pixel_image(init=img.clone())
    grad = torch.randn(1, 3, 20, 20, generator=g)
    R.ClipSmallContribution(50, 0.5).after_step(0, p, grad)
    assert abs(float(((p.image() - 0.5).abs().sum(1) < 1e-6).float().mean()) - 0.5) < 0.02
    p = optvis.pixel_image(init=torch.rand(1, 3, 8, 8, generator=g))
    origin = torch.full((1, 3, 8, 8), 0.5)
    R.ProjectLinf(origin, 0.1).after_step(0, p, None)
    assert float((p.image().detach() - origin).abs().max()) <= 0.1 + 1e-6
    z = optvis.normalize_gradient(torch.tensor([[1.0, -3.0]]), "mean_abs")
    assert torch.allclose(z, torch.tensor([[0.5, -1.5]]))


def test_a_broken_objective_leaves_nothing_behind(pm):
    model = pm.model
    hooks, sig = count_hooks(model), module_signature(model)

    def bad(acts, img):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        optvis.render(pm, optvis.Objective(bad, ["features.0"]), optvis.pixel_image(1, 16), steps=2,
                      layer_root=model)
    assert count_hooks(model) == hooks and module_signature(model) == sig
    assert all(q.requires_grad for q in model.parameters())


def test_plot_history():
    from reportgen.optvis.plotting import history_plot

    img = history_plot({"a": np.arange(5.0), "b": np.ones(5)}, title="t", boundaries=[2])
    assert img.data[:8] == b"\x89PNG\r\n\x1a\n"


def test_linear_model_matches_hand_gradient():
    """One SGD step on a linear 'model' moves the pixels by lr * the weight (checks the loop's sign)."""

    class Lin(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor([1.0, -1.0, 0.0]).view(1, 3, 1, 1))

        def forward(self, x):
            s = (x * self.w).flatten(1).sum(1)
            return torch.stack([s, -s], 1)

    p = optvis.pixel_image(init=torch.full((1, 3, 2, 2), 0.5))
    res = optvis.render(Lin(), O.class_logit(0), p, optimizer="sgd", lr=0.1, steps=1)
    expect = torch.tensor([0.6, 0.4, 0.5]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.allclose(res.images, expect)
