"""reportgen.attribution against Captum and pytorch-grad-cam (the `crosscheck` extra; `.ci/run` installs it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_tiny_cnn, reference
from reportgen import attribution as A


def _x(n=3):
    return torch.rand((n, 3, 32, 32), generator=torch.Generator().manual_seed(5))


TARGETS = [0, 2, 3]


def test_saliency_equals_captum():
    captum = reference("captum.attr")
    m = make_tiny_cnn()
    x = _x()
    theirs = captum.Saliency(m).attribute(x.clone().requires_grad_(True), target=TARGETS, abs=True)
    assert torch.allclose(A.saliency(m, x, TARGETS), theirs, atol=1e-6)


def test_integrated_gradients_equals_captum():
    captum = reference("captum.attr")
    m = make_tiny_cnn()
    x = _x()
    ours = A.integrated_gradients(m, x, TARGETS, baseline=0.0, steps=64, tol=1.0)  # fixed 64 steps
    assert ours.steps == 64
    theirs, delta = captum.IntegratedGradients(m).attribute(
        x, baselines=torch.zeros_like(x), target=TARGETS, n_steps=64, method="gausslegendre",
        return_convergence_delta=True)
    assert torch.allclose(ours.attributions, theirs.float(), atol=1e-5, rtol=1e-4)
    # the same completeness gap (captum's delta is the absolute one)
    assert np.allclose(np.abs(ours.total - ours.delta), delta.abs().numpy(), atol=1e-4)


def test_smoothgrad_agrees_with_captum_noise_tunnel():
    captum = reference("captum.attr")
    m = make_tiny_cnn()
    x = _x(2)
    n = 200
    ours = A.smoothgrad(m, x, [0, 1], n_samples=n, noise=0.1, generator=torch.Generator().manual_seed(0))
    sigma = 0.1 * float(x.max() - x.min())  # captum takes an absolute stdev
    torch.manual_seed(0)
    theirs = captum.NoiseTunnel(captum.Saliency(m)).attribute(
        x.clone().requires_grad_(True), nt_type="smoothgrad", nt_samples=n, stdevs=sigma, target=[0, 1], abs=False)
    for b in range(2):  # independent noise: the two estimates agree as averages do
        r = np.corrcoef(ours[b].flatten().numpy(), theirs[b].detach().flatten().numpy())[0, 1]
        assert r > 0.9


@pytest.mark.parametrize("which", ["GradCAM", "GradCAMPlusPlus"])
def test_gradcam_equals_pytorch_grad_cam(which):
    pgc = reference("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    m = make_tiny_cnn()
    x = _x()
    with getattr(pgc, which)(model=m, target_layers=[m.features]) as cam:
        theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(k) for k in TARGETS])
    fn = A.gradcam if which == "GradCAM" else A.gradcam_plus_plus
    ours = A.normalise(fn(m, m.features, x, TARGETS, size=(32, 32))).numpy()
    for b in range(len(x)):
        assert np.corrcoef(ours[b].ravel(), theirs[b].ravel())[0, 1] > 0.99
        assert np.abs(ours[b] - theirs[b]).max() < 0.08
