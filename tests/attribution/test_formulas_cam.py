"""reportgen.attribution.cam beyond the Grad-CAM formulas of test_formulas.py: the bilinear upsampling against OpenCV's
half-pixel INTER_LINEAR (= align_corners=False), the per-image min-max normalisation, Guided Grad-CAM as the product
of its two factors, and the errors that name what is wrong (kills the mutants left by the mutation run,
docs/mutation.md)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from reportgen import attribution as A


def test_upsample_is_half_pixel_bilinear():
    rng = np.random.default_rng(0)
    cam = rng.random((2, 3, 5)).astype(np.float32)
    got = A.upsample(torch.from_numpy(cam), (9, 13)).numpy()
    want = np.stack([cv2.resize(c, (13, 9), interpolation=cv2.INTER_LINEAR) for c in cam])
    assert got.shape == (2, 9, 13)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_normalise_is_per_image_min_max_and_a_flat_map_is_zero():
    m = torch.tensor([[[1.0, 3.0], [5.0, 9.0]], [[-2.0, -2.0], [-2.0, -2.0]], [[0.0, 0.0], [0.0, 4e-13]]])
    got = A.normalise(m)
    torch.testing.assert_close(got[0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    assert torch.equal(got[1], torch.zeros(2, 2))
    # a range below the 1e-12 floor is divided by the floor, not by a larger one
    assert float(got[2, 1, 1]) == pytest.approx(0.4, rel=1e-5)
    torch.testing.assert_close(A.normalise(torch.tensor([[2.0, 6.0, 4.0]])), torch.tensor([[0.0, 1.0, 0.5]]))


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Linear(4 * 8 * 8, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):
        return self.head(self.relu(self.conv(x)).flatten(1))


def test_guided_gradcam_is_guided_backprop_times_the_upsampled_cam():
    m = _Net()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    t = [0, 2]
    cam = A.gradcam(m, m.conv, x, t)
    want = A.guided_backprop(m, x, t) * A.upsample(cam, (8, 8))[:, None]
    torch.testing.assert_close(A.guided_gradcam(m, m.conv, x, t), want)
    other = torch.rand_like(cam)  # a given cam is used as given
    torch.testing.assert_close(A.guided_gradcam(m, m.conv, x, t, cam=other),
                               A.guided_backprop(m, x, t) * A.upsample(other, (8, 8))[:, None])


def test_activation_and_gradient_are_the_layer_output_and_its_class_gradient():
    m = _Net()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    a, g = A.activation_and_gradient(m, m.relu, x, [1, 0])
    want_a = m.relu(m.conv(x)).detach()
    torch.testing.assert_close(a, want_a)
    want_g = torch.stack([m.head.weight[k].view(4, 8, 8) for k in (1, 0)]).detach()
    torch.testing.assert_close(g, want_g)


def test_errors_name_the_problem():
    flat = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    with pytest.raises(ValueError, match=r"^The model has no layer with a spatial \(B x C x h x w, B x h x w x C "
                                         r"or token grid\) output for Grad-CAM to weight; pass the layer's name"):
        A.last_spatial_block(flat, torch.rand(1, 3, 2, 2))
    with pytest.raises(ValueError, match=r"^Grad-CAM needs a spatial layer \(B x C x h x w output\), got shape"):
        A.gradcam(flat, flat[1], torch.rand(1, 3, 2, 2), 0)
    unused = nn.Conv2d(3, 3, 1)
    with pytest.raises(RuntimeError, match="^the layer was not called during the forward pass$"):
        A.gradcam(flat, unused, torch.rand(1, 3, 2, 2), 0)


class _ChannelsLast(nn.Module):
    """4 x 4 patches of a 16 x 16 input -> B x 4 x 4 x 4 channels-last -> ``proj`` (Linear over C) -> mean -> head.
    Four channels on a 4 x 4 grid: the shape alone cannot tell NHWC from NCHW, the Linear module tells it."""

    def __init__(self, tokens: bool = False):
        super().__init__()
        torch.manual_seed(5)
        self.patch = nn.Conv2d(3, 4, 4, stride=4)
        self.proj = nn.Linear(4, 4)
        self.head = nn.Linear(4, 3)
        self.tokens = tokens

    def act(self, x):
        p = self.patch(x).permute(0, 2, 3, 1)  # B x 4 x 4 x C
        return self.proj(p.flatten(1, 2) if self.tokens else p)

    def forward(self, x):
        a = self.act(x)
        return self.head(a.flatten(1, -2).mean(1))


def _cam_by_hand(m, x, k, grid):
    xr = x.clone().requires_grad_(True)
    a = m.act(xr)
    (g,) = torch.autograd.grad(m.head(a.flatten(1, -2).mean(1))[:, k].sum(), a)
    a, g = (t.reshape(len(x), *grid, -1).permute(0, 3, 1, 2) for t in (a.detach(), g))
    return torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1))


@pytest.mark.parametrize("tokens,width", [(False, 16), (True, 16), (False, 32), (True, 32)])
def test_gradcam_at_a_channels_last_or_token_layer_uses_its_grid_view(tokens, width):
    """The layer's grid comes from the input's H x W (16 x 16 or 16 x 32 -> 4 x 4 or 4 x 8 patches)."""
    m = _ChannelsLast(tokens).eval()
    x = torch.rand(2, 3, 16, width, generator=torch.Generator().manual_seed(6))
    got = A.gradcam(m, m.proj, x, 1)
    want = _cam_by_hand(m, x, 1, (4, width // 4))
    assert got.shape == (2, 4, width // 4) and (want > 0).any()
    torch.testing.assert_close(got, want)


def test_a_layer_that_does_not_depend_on_the_input_is_named():
    class Cut(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Conv2d(3, 2, 1)
            self.head = nn.Linear(3, 2)

        def forward(self, x):
            self.layer(x.detach())
            return self.head(x.mean((2, 3)))

    m = Cut()
    with pytest.raises(RuntimeError, match="^the layer's output does not depend on the input$"):
        A.gradcam(m, m.layer, torch.rand(1, 3, 4, 4), 0)
