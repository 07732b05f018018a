"""reportgen.attribution.cam's layer choice and gradient reach (``choose_cam_layer``, ``gradient_reach``,
``last_spatial_block``) and its errors, on tiny models with a written-out expectation: a ViT-like model whose last
block passes only its class token, a PiT-like one whose last stage's patch map nothing reads, a model of leaves only,
a CNN, and models nothing spatial reaches. Kills the mutants the mutation run left (docs/mutation.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from reportgen.attribution import cam as CAM
from reportgen.inspection.layout import Layout
from reportgen.inspection.probe import trace_layouts

torch.set_num_threads(1)


class _Block(nn.Module):
    """A token block: its own Linear plus the token mean, so every token reads every other."""

    def __init__(self, c: int):
        super().__init__()
        self.fc = nn.Linear(c, c)

    def forward(self, x):
        return x + self.fc(x) + x.mean(1, keepdim=True)


class _PatchEmbed(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.proj = nn.Conv2d(3, c, 4, stride=4)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class _TinyViT(nn.Module):
    """16 x 16 input -> 4 x 4 patch tokens + a class token -> two blocks -> head on the class token only."""

    def __init__(self, zero_head: bool = False, c: int = 6, k: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.patch = _PatchEmbed(c)
        self.cls = nn.Parameter(torch.randn(1, 1, c))
        self.blocks = nn.Sequential(_Block(c), _Block(c))
        self.head = nn.Linear(c, k)
        if zero_head:
            nn.init.zeros_(self.head.weight)
        self.eval()

    def tokens(self, x):
        return torch.cat([self.cls.expand(len(x), -1, -1), self.patch(x)], 1)

    def forward(self, x):
        return self.head(self.blocks(self.tokens(x))[:, 0])


class _TokenStage(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.tok = nn.Linear(c, c)

    def forward(self, x):
        return self.conv(x), self.tok(x.mean((2, 3)))


class _PiTLike(nn.Module):
    """stem -> stage1 (read) -> stage2 (returns a patch map nothing reads and a class token the head reads)."""

    def __init__(self, c: int = 4):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.stage1 = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))
        self.stage2 = _TokenStage(c)
        self.head = nn.Linear(c, 3)
        self.eval()

    def forward(self, x):
        _patches, token = self.stage2(self.stage1(self.stem(x)))
        return self.head(token)


class _NothingReaches(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.branch = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
        self.head = nn.Linear(3, 3)
        self.eval()

    def forward(self, x):
        self.branch(x)
        return self.head(x.mean((2, 3)))


class _Leaves(nn.Module):
    """Leaves only: stem conv -> conv2 (read by the head) -> conv3 (runs last, nothing reads it)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv3 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)
        self.eval()

    def forward(self, x):
        a = self.conv2(self.conv1(x))
        self.conv3(a)
        return self.head(a.mean((2, 3)))


class _LinearCNN(nn.Module):
    """conv (stem) -> body (Sequential conv) -> head Linear over the flattened 4 x 4 x 4 map: dS_k/dA = W_k."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 4, 3, padding=1, stride=2)
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, stride=2))
        self.head = nn.Linear(4 * 4 * 4, 3)
        self.eval()

    def forward(self, x):
        return self.head(self.body(self.conv(x)).flatten(1))


def _x(n=1, seed=0, side=16):
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


def _choose(m, x, named=None):
    return CAM.choose_cam_layer(m, trace_layouts(m, x), x[:1], named)


def test_vit_like_last_block_passing_only_its_class_token_yields_to_the_block_before():
    """blocks.1's patch tokens get zero gradient (the head reads the class token), blocks.0's reach the score."""
    m = _TinyViT()
    got = _choose(m, _x())
    assert got == CAM.CamChoice(
        "blocks.0",
        "The last block, blocks.1, passes only its class token to the classifier, so its patch tokens get no "
        "gradient and Grad-CAM there is zero everywhere; the maps use blocks.0, the last spatial layer before it "
        "whose patch tokens reach the class score.")
    assert CAM.last_spatial_block(m, _x(2)) == "blocks.0"


def test_a_zero_classifier_keeps_the_last_block_and_says_the_maps_are_zero():
    m = _TinyViT(zero_head=True)
    got = _choose(m, _x())
    assert got == CAM.CamChoice(
        "blocks.1",
        "The class score's gradient is zero at every spatial layer on the probe image (a zero-initialised "
        "classifier does this), so Grad-CAM's maps are zero; they use blocks.1, the last spatial block the score "
        "depends on.")
    assert CAM.last_spatial_block(m, _x()) == "blocks.1"


def test_pit_like_last_stage_not_reaching_the_score_yields_with_the_reason():
    m = _PiTLike()
    got = _choose(m, _x())
    assert got == CAM.CamChoice(
        "stage1",
        "The output of stage2, the last block with a spatial output, does not reach the class score (the classifier "
        "reads another path, such as a class token kept apart from the patch grid), so Grad-CAM has no gradient "
        "there; the maps use stage1, the last spatial layer before it whose output does.")
    assert CAM.last_spatial_block(m, _x()) == "stage1"


def test_a_named_layer_is_taken_as_given_when_reached_and_refused_with_the_automatic_choice_otherwise():
    m = _PiTLike()
    assert _choose(m, _x(), {"stage1.0": m.stage1[0]}) == CAM.CamChoice("stage1.0")
    assert _choose(m, _x(), {"stem": m.stem}) == CAM.CamChoice("stem")  # the stem too, when the user names it
    assert _choose(m, _x(), {"stage2": m.stage2}) == CAM.CamChoice(
        None,
        "The class score's gradient does not reach the output of stage2, the layer given for Grad-CAM (the "
        "classifier reads another path), so Grad-CAM is not defined there; the automatic choice is stage1.")
    n = _NothingReaches()
    assert _choose(n, _x(), {"branch.2": n.branch[2]}) == CAM.CamChoice(
        None,
        "The class score's gradient does not reach the output of branch.2, the layer given for Grad-CAM (the "
        "classifier reads another path), so Grad-CAM is not defined there.")
    # a named layer of a model without any spatial block is still checked
    flat = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()
    assert CAM.choose_cam_layer(flat, trace_layouts(flat, _x(side=2)), _x(side=2), {"1": flat[1]}) == \
        CAM.CamChoice("1")


def test_nothing_spatial_reaching_the_score_says_so():
    m = _NothingReaches()
    got = _choose(m, _x())
    assert got == CAM.CamChoice(
        None,
        "No layer with a spatial output reaches the class score (the last one, branch, and every spatial layer "
        "before it are not used by the logits), so Grad-CAM has nothing to weight.")
    with pytest.raises(CAM.NoCamLayer) as e:
        CAM.last_spatial_block(m, _x())
    assert str(e.value) == got.why


def test_no_spatial_layer_at_all():
    flat = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()
    x = _x(side=2)
    want = ("The model has no layer with a spatial (B x C x h x w, B x h x w x C or token grid) output for "
            "Grad-CAM to weight; pass the layer's name if one exists.")
    assert CAM.choose_cam_layer(flat, trace_layouts(flat, x), x) == CAM.CamChoice(None, want)
    with pytest.raises(CAM.NoCamLayer) as e:
        CAM.last_spatial_block(flat, x)
    assert str(e.value) == want


def test_a_model_of_leaves_falls_back_to_an_earlier_leaf_but_never_the_stem():
    m = _Leaves()
    p = trace_layouts(m, _x())
    assert p.default_block() == "conv3" and p.stem() == {"conv1"}
    assert CAM._candidates(p, "conv3") == ["conv3", "conv2"]
    assert _choose(m, _x()) == CAM.CamChoice(
        "conv2",
        "The output of conv3, the last block with a spatial output, does not reach the class score (the classifier "
        "reads another path, such as a class token kept apart from the patch grid), so Grad-CAM has no gradient "
        "there; the maps use conv2, the last spatial layer before it whose output does.")


def test_candidates_skip_leaves_after_a_block_and_list_latest_first():
    m = _PiTLike()
    p = trace_layouts(m, _x())
    assert CAM._candidates(p, "stage2") == ["stage2", "stage1"]
    v = _TinyViT()
    assert CAM._candidates(trace_layouts(v, _x()), "blocks.1") == ["blocks.1", "blocks.0"]


def test_a_cnn_keeps_its_default_block_without_a_reason():
    m = _LinearCNN()
    assert trace_layouts(m, _x()).default_block() == "body"
    assert _choose(m, _x()) == CAM.CamChoice("body")
    assert CAM.last_spatial_block(m, _x(3)) == "body"


def test_fits_reads_a_zero_gradient_only_at_a_token_grid_as_unfit():
    tok, conv = Layout("tokens", (4, 4), 6, 1), Layout("nchw", (4, 4), 6)
    assert CAM._fits(0.5, tok) and CAM._fits(0.5, conv) and CAM._fits(0.5, None)
    assert not CAM._fits(0.0, tok)
    assert CAM._fits(0.0, conv) and CAM._fits(0.0, None) and CAM._fits(0.0, Layout("nhwc", (4, 4), 6))
    assert not CAM._fits(None, conv) and not CAM._fits(None, None) and not CAM._fits(None, tok)
    assert CAM._fits(1e-30, tok)


def test_gradient_reach_is_the_largest_gradient_magnitude_at_the_grid_cells():
    """Closed form: the head is Linear over the flattened body map, so dS_k/dA = W_k; reach = max_k-over-batch |W_k|;
    ``target`` None: each image's predicted class; a module that did not run or is not read: None."""
    m = _LinearCNN()
    x = _x(2, seed=3)
    w = m.head.weight.detach().abs()
    unused = nn.Conv2d(3, 3, 1)
    got = CAM.gradient_reach(m, {"body": m.body, "unused": unused}, x, [2, 0])
    assert got["unused"] is None
    assert got["body"] == pytest.approx(float(torch.maximum(w[2], w[0]).max()), rel=1e-6)
    x0 = _x(2, seed=0)
    pred = m(x0).argmax(1).tolist()
    assert pred == [0, 2]  # one predicted class per image, not one for the batch
    auto = CAM.gradient_reach(m, {"body": m.body}, x0)
    assert auto["body"] == pytest.approx(float(w[pred].max()), rel=1e-6)
    one = CAM.gradient_reach(m, {"body": m.body}, x[1:], 1)
    assert one["body"] == pytest.approx(float(w[1].max()), rel=1e-6)
    # the conv before the body: the chain rule written out with autograd on the pieces
    xr = x.clone().requires_grad_(True)
    a = m.conv(xr)
    (g,) = torch.autograd.grad(m.head(m.body(a).flatten(1)).gather(1, torch.tensor([[2], [0]])).sum(), a)
    assert CAM.gradient_reach(m, {"conv": m.conv}, x, [2, 0])["conv"] == pytest.approx(float(g.abs().max()),
                                                                                        rel=1e-6)


def test_gradient_reach_reads_only_patch_tokens_and_none_for_layers_without_graph():
    v = _TinyViT()
    x = _x(1, seed=4)
    r = CAM.gradient_reach(v, {"b0": v.blocks[0], "b1": v.blocks[1]}, x, 2)
    assert r["b1"] == 0.0  # only the class token is read
    t = v.tokens(x).detach().requires_grad_(True)
    a = v.blocks[0](t)
    (g,) = torch.autograd.grad(v.head(v.blocks[1](a)[:, 0])[0, 2], a)
    assert float(g[:, 0].abs().max()) > float(g[:, 1:].abs().max())  # the class token's own gradient is left out
    assert r["b0"] == pytest.approx(float(g[:, 1:].abs().max()), rel=1e-5)

    class Cut(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Conv2d(3, 2, 1)
            self.head = nn.Linear(3, 2)

        def forward(self, x):
            self.layer(x.detach())
            return self.head(x.mean((2, 3)))

    # the token grid comes from the input's H x W: 2 x 2 or 2 x 4 patches after one class token (another size could
    # read the class token as a patch and count its gradient)
    for shape in ((8, 8), (8, 16)):
        assert CAM.gradient_reach(v, {"b1": v.blocks[1]}, torch.rand(1, 3, *shape), 0) == {"b1": 0.0}

    c = Cut().eval()
    assert CAM.gradient_reach(c, {"layer": c.layer}, _x(), 0) == {"layer": None}
    assert CAM.gradient_reach(c, {"layer": c.layer, "no": nn.ReLU()}, _x()) == {"layer": None, "no": None}


def test_gradcam_at_a_layer_the_score_does_not_read_names_the_problem():
    m = _PiTLike()
    with pytest.raises(CAM.NoCamLayer) as e:
        CAM.gradcam(m, m.stage2, _x(), 0)
    assert str(e.value) == ("the class score's gradient does not reach the layer's output (the classifier reads "
                            "another path), so Grad-CAM is not defined there; choose a layer the classifier reads")


def test_gradcam_plus_plus_against_the_written_out_closed_form():
    """Chattopadhay et al.'s alpha = g^2 / (2 g^2 + sum_ij A g^3), zero denominators set to 1; w = sum alpha relu(g)."""
    m = _LinearCNN()
    x = _x(2, seed=5)
    a = m.body(m.conv(x)).detach().double().numpy()
    wt = m.head.weight.detach().double().numpy().reshape(3, 4, 4, 4)
    g = np.stack([wt[1], wt[2]])
    want = np.zeros((2, 4, 4))
    for b in range(2):
        for c in range(4):
            s = a[b, c].sum()
            wc = 0.0
            for i in range(4):
                for j in range(4):
                    gg = g[b, c, i, j]
                    den = 2 * gg ** 2 + s * gg ** 3
                    den = den if den != 0 else 1.0
                    wc += gg ** 2 / den * max(gg, 0.0)
            want[b] += wc * a[b, c]
    want = np.maximum(want, 0)
    got = CAM.gradcam_plus_plus(m, m.body, x, [1, 2])
    assert (want > 0).any()
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-6)
    up = CAM.gradcam_plus_plus(m, m.body, x, [1, 2], size=(8, 8))
    torch.testing.assert_close(up, CAM.upsample(got, (8, 8)))


def test_gradcam_against_the_written_out_closed_form():
    m = _LinearCNN()
    x = _x(2, seed=6)
    a = m.body(m.conv(x)).detach().double().numpy()
    g = m.head.weight.detach().double().numpy().reshape(3, 4, 4, 4)[[0, 2]]
    want = np.maximum(np.einsum("bc,bcij->bij", g.mean((2, 3)), a), 0)
    got = CAM.gradcam(m, m.body, x, [0, 2])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(CAM.gradcam(m, m.body, x, [0, 2], size=(16, 16)), CAM.upsample(got, (16, 16)))


class _GatedViT(_TinyViT):
    """_TinyViT plus ``relu(+-(mean of blocks.1's patch tokens - thr))``: a dark image leaves the gate shut (blocks.1's
    patch tokens get no gradient), a bright one opens it."""

    def __init__(self):
        super().__init__()
        with torch.no_grad():
            dark, bright = (self.blocks(self.tokens(torch.full((1, 3, 16, 16), v)))[:, 1:].mean() for v in (0., 1.))
        self.thr, self.sign = float(dark + bright) / 2, float(torch.sign(bright - dark))

    def forward(self, x):
        b = self.blocks(self.tokens(x))
        return self.head(b[:, 0]) + torch.relu(self.sign * (b[:, 1:].mean((1, 2)) - self.thr))[:, None]


def test_last_spatial_block_chooses_on_the_first_image_only():
    """``choose_cam_layer`` is checked on one image: the example's first (a second image that opens the gate does
    not change the choice made for a dark first image)."""
    m = _GatedViT()
    dark, bright = torch.zeros(1, 3, 16, 16), torch.ones(1, 3, 16, 16)
    assert CAM.last_spatial_block(m, dark) == "blocks.0"
    assert CAM.last_spatial_block(m, bright) == "blocks.1"
    assert CAM.last_spatial_block(m, torch.cat([dark, bright])) == "blocks.0"
    assert CAM.last_spatial_block(m, torch.cat([bright, dark])) == "blocks.1"
