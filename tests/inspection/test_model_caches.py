"""A model that builds a cache in ``forward`` (timm's ConViT: ``rel_indices`` for the token count it first sees)
builds it during reportgen's first inference pass; the cache must not stay an inference tensor, which the policy's
version check and every later gradient pass refuse ("Inference tensors do not track version counter")."""

from __future__ import annotations

import torch
from torch import nn

from reportgen.build import build_report
from reportgen.inspection.hooks import ordinary_buffers


class LazyCache(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.register_buffer("cache", torch.zeros(1), persistent=False)
        self.head = nn.Linear(4, 4)

    def forward(self, x):
        if self.cache.numel() != x.shape[-1]:  # built for the size it first sees, in whichever mode that call ran
            self.cache = torch.linspace(0, 1, x.shape[-1])
        f = self.act(self.conv(x) * self.cache)  # the cache is saved for backward here
        return self.head(f.mean((2, 3)))


def test_ordinary_buffers_replaces_inference_tensors():
    m = LazyCache().eval()
    with torch.inference_mode():
        m(torch.rand(1, 3, 8, 8))
    assert m.cache.is_inference()
    assert ordinary_buffers(m) == 1 and not m.cache.is_inference()
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    m(x).sum().backward()  # refused while the cache was an inference tensor
    assert x.grad is not None


def test_a_model_with_a_lazy_cache_builds(tmp_path, image_dir):
    torch.manual_seed(0)
    res = build_report(LazyCache().eval(), image_dir, tmp_path / "out", preset="minimal", resize=None,
                       input_size=32, only=["card", "saliency", "gradcam"], use_cache=False)
    assert [s.error for s in res.report.sections] == [None, None, None]
