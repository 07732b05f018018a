"""VarGrad, the method added in one module: its formula against a written-out loop, its peak on planted evidence,
and faithfulness and sanity scoring it as soon as it runs (no edit to either)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from conftest import CLASSES, make_tiny_cnn
from reportgen import registry
from reportgen.build import make_context, run_technique
from reportgen.config import make_config
from reportgen.techniques.vargrad import gradient_variance

torch.set_num_threads(1)


def _reference(model, x, targets, samples, noise, seed):
    """max_c (1/n) sum_k (g_k - mean g)^2, g_k = dS/dx at x + sigma eps_k, one copy and one backward at a time."""
    out = []
    for b in range(len(x)):
        g = torch.Generator().manual_seed(seed)
        sigma = noise * float(x[b].max() - x[b].min())
        eps = torch.randn((samples, *x.shape[1:]), generator=g)
        grads = []
        for k in range(samples):
            xk = (x[b] + sigma * eps[k]).clone().requires_grad_(True)
            (gk,) = torch.autograd.grad(model(xk[None])[0, int(targets[b])], xk)
            grads.append(gk)
        mean = sum(grads) / samples
        var = sum((gk - mean) ** 2 for gk in grads) / samples
        out.append(torch.stack([var[c] for c in range(var.shape[0])]).max(0).values)
    return torch.stack(out)


def test_vargrad_equals_the_written_out_variance_of_noisy_gradients():
    model = make_tiny_cnn()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    targets = np.array([1, 3])
    got = torch.cat([gradient_variance(model, x[b:b + 1], targets[b:b + 1], 6, 0.2,
                                       torch.Generator().manual_seed(7), chunk=6).amax(1) for b in range(2)])
    want = _reference(model, x, targets, 6, 0.2, 7)
    assert float(want.max()) > 0
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-9)
    # not the mean (SmoothGrad) nor the unbiased variance
    assert not torch.allclose(got, want * 6 / 5)


class Planted(nn.Module):
    """Class 0's score is the sum of squared pixels in a 6x6 patch: its gradient varies with the noise only there."""

    def forward(self, x):
        s = (x[:, :, 8:14, 4:10] ** 2).flatten(1).sum(1)
        return torch.stack([s, -s, torch.zeros_like(s)], 1)


def test_vargrad_peaks_on_the_planted_evidence_and_is_zero_elsewhere():
    x = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    m = gradient_variance(Planted(), x, [0], 8, 0.15, torch.Generator().manual_seed(3)).amax(1)[0]
    inside = torch.zeros_like(m, dtype=torch.bool)
    inside[8:14, 4:10] = True
    assert float(m[~inside].abs().max()) == 0.0 and float(m[inside].min()) > 0
    # Var of 2(x + sigma eps) is 4 sigma^2 Var(eps): about 4 sigma^2 inside the patch
    sigma = 0.15 * float(x.max() - x.min())
    assert 0.5 * 4 * sigma ** 2 < float(m[inside].mean()) < 2.5 * 4 * sigma ** 2


def _run(tiny_model, image_dir, tiny_pre, only):
    cfg = make_config("minimal", only=only)
    ctx = make_context(tiny_model, image_dir, class_names=CLASSES, pre=tiny_pre, config=cfg, device="cpu")
    return {t: run_technique(ctx, registry.get(t), strict=True) for t in only}


def test_faithfulness_and_sanity_score_vargrad_when_it_runs(tiny_model, image_dir, tiny_pre):
    assert "VarGrad" in [m.name for m in registry.attribution_methods()]
    on = _run(tiny_model, image_dir, tiny_pre, ["vargrad", "sanity", "faithfulness"])
    assert all(s.error is None for s in on.values())
    rows = {r["method"]: r for r in on["faithfulness"].results["methods"]}
    assert set(rows) == {"VarGrad", "random map (baseline)", "centre Gaussian (baseline)"}
    assert on["faithfulness"].results["maps_reused"] == {"VarGrad": len(on["faithfulness"].results["images"])}
    assert rows["VarGrad"]["sanity"]  # its randomisation checks, beside its scores
    sanity = on["sanity"].results
    assert list(sanity["verdict"]) == ["gradient", "guided backprop", "Grad-CAM", "Integrated Gradients", "VarGrad"]
    assert len(sanity["cascade_rank_corr"]["VarGrad"]) == len(sanity["stages"])
    assert sanity["checks"]["VarGrad"]["weights"] in ("passes", "fails", "insensitive to top layers")
    img = on["vargrad"].results["images"]
    assert len(img) == 2 and all(0.05 <= r["top5pct_mass"] <= 1 for r in img)


def test_vargrad_runs_only_in_the_full_preset():
    info = registry.get("vargrad")
    assert info.runs_in == ("full",)
    assert "vargrad" not in [t.id for t in make_config("standard").enabled()]
