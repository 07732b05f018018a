"""Benchmark: what attention rollout and gradient rollout cost, counted in forward and backward passes.

    python benchmarks/bench_attention.py                    # the shipped demo ViT (reportgen/demo/vit.py)
    python benchmarks/bench_attention.py --model vit_b_16   # a torchvision ViT, random init (nothing downloaded)

The model is wrapped in a counter (a plain module around it and an identity autograd function on its output,
no hooks), then the section's compute runs on ``--images`` random images in batches of ``--batch``: rollout and
gradient rollout from one forward and one backward pass per batch (``attention_with_grads``), the mean attention
distance from one inference forward per batch. Printed: passes per image and wall time per batch, and, for
scale, the passes a perturbation map of the same token grid (one occluded copy per patch) would take.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reportgen.attribution import attention as AT


class _Tick(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, box):
        ctx.box = box
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        ctx.box["backward"] += 1
        return g, None


class Counted(nn.Module):
    """Counts its forward passes and the backward passes through its output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.box = {"forward": 0, "backward": 0}

    def forward(self, x):
        self.box["forward"] += 1
        return _Tick.apply(self.model(x), self.box)


def build(spec: str) -> tuple[nn.Module, int]:
    if spec == "demo-vit":
        from reportgen.demo import vit

        return vit.build_model(), 28
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.get_model(spec, weights=None).eval(), 224


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="demo-vit")
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    model, size = build(a.model)
    counted = Counted(model).eval()
    for prm in counted.parameters():
        prm.requires_grad_(False)
    sites = AT.find_attention(model)
    x = torch.randn(a.images, 3, size, size, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    for s in range(0, a.images, a.batch):
        xb = x[s: s + a.batch]
        attns, grads, _ = AT.attention_with_grads(counted, sites, xb, torch.zeros(len(xb), dtype=torch.long))
        AT.rollout(attns), AT.gradient_rollout(attns, grads)
    t_maps = time.perf_counter() - t0
    maps = dict(counted.box)
    t0 = time.perf_counter()
    for s in range(0, a.images, a.batch):
        attns, _ = AT.attention_weights(counted, sites, x[s: s + a.batch])
    t_dist = time.perf_counter() - t0
    n_batches = -(-a.images // a.batch)
    prefix, grid = AT.token_layout(attns[0].shape[-1], (size, size))
    print(f"{a.model}: {len(sites)} attention modules, {grid[0]}x{grid[1]} tokens (+{prefix}), "
          f"{a.images} images in batches of {a.batch}, {a.threads} thread(s)")
    print(f"rollout + gradient rollout: {maps['forward']} forward + {maps['backward']} backward passes "
          f"({maps['forward'] / n_batches:g} + {maps['backward'] / n_batches:g} per batch), {t_maps:.2f} s "
          f"({t_maps / a.images * 1e3:.1f} ms/image)")
    print(f"attention distance: {counted.box['forward'] - maps['forward']} forward passes, {t_dist:.2f} s")
    print(f"for scale: an occlusion map with one window per patch needs {grid[0] * grid[1]} forward image-passes "
          "per image (batched)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
