"""reportgen.device on the CPU: out-of-memory halving and the autocast guard (no GPU needed)."""

import pytest
import torch

from reportgen.device import autocast_agrees, low_precision_dtype, run_halving


def test_batches_halve_on_out_of_memory_and_cover_everything():
    seen, halved = [], []

    def fn(a, b):
        if b - a > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        seen.append((a, b))
        return list(range(a, b))

    out = run_halving(fn, 10, 16, on_halve=halved.append)
    assert sum(out, []) == list(range(10))
    assert halved == [8, 4, 2] and all(b - a <= 2 for a, b in seen)


def test_other_errors_and_size_one_oom_propagate():
    with pytest.raises(ValueError):
        run_halving(lambda a, b: (_ for _ in ()).throw(ValueError("bad")), 4, 2)
    with pytest.raises(RuntimeError, match="out of memory"):
        run_halving(lambda a, b: (_ for _ in ()).throw(RuntimeError("out of memory")), 4, 1)


def test_no_autocast_on_the_cpu(tiny_model):
    assert low_precision_dtype(torch.device("cpu")) is None
    assert autocast_agrees(tiny_model, torch.rand(2, 3, 32, 32), None) is False


class _Close(torch.nn.Module):
    """Two logits ``margin`` apart: bf16 (8 bits of mantissa) cannot tell them apart below ~1/128 of their size."""

    def __init__(self, margin: float):
        super().__init__()
        self.fc = torch.nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0], [1.0 + margin]]))

    def forward(self, x):
        return self.fc(x.abs().mean(dim=(1, 2, 3)).reshape(-1, 1) + 1.0)


def test_autocast_guard_refuses_a_precision_that_flips_top1():
    """bf16 autocast on the CPU stands in for a GPU's: the guard must see a flipped prediction."""
    x = torch.full((4, 3, 8, 8), 0.5)
    assert autocast_agrees(_Close(0.5), x, torch.bfloat16) is True  # a clear margin survives bf16
    assert _Close(1e-4)(x).argmax(1).tolist() == [1] * 4  # float32 sees the tiny margin...
    assert autocast_agrees(_Close(1e-4), x, torch.bfloat16) is False  # ...bf16 rounds it away: refused


def test_scan_uses_autocast_only_where_top1_agrees(make_ctx, tiny_model, image_dir, monkeypatch):
    """The shared pass's GPU path, run on the CPU with bf16: same top-1 as float32, and float32 kept for a model
    whose predictions bf16 would change."""
    from reportgen.features import scan

    ref = make_ctx(tiny_model, image_dir).features().logits.argmax(1)
    monkeypatch.setattr(scan, "low_precision_dtype", lambda device: torch.bfloat16)
    used = []
    real = scan.scan_autocast
    monkeypatch.setattr(scan, "scan_autocast", lambda device, dtype: (used.append(dtype), real(device, dtype))[1])
    low = make_ctx(tiny_model, image_dir).features().logits
    assert (low.argmax(1) == ref).all()
    assert used and all(d == torch.bfloat16 for d in used)

    used.clear()
    fragile = _Close(1e-4)
    got = make_ctx(fragile, image_dir).features().logits
    assert used and all(d is None for d in used)  # refused after the probe batch: float32 throughout
    assert (got.argmax(1) == 1).all()


def test_gradient_passes_hold_a_bounded_graph(make_ctx, tiny_model, image_dir, monkeypatch):
    """graph_batch_size: budget // (bytes of every leaf output for one image); the gradient sections obey it."""
    from conftest import CLASSES

    from reportgen import device
    from reportgen.build import run_technique
    from reportgen.inspection.hooks import capture_outputs
    from reportgen.registry import get

    ctx = make_ctx(tiny_model, image_dir, class_names=CLASSES, general={"batch_size": 16})
    leaves = {n: m for n, m in tiny_model.named_modules() if n and not list(m.children())}
    with torch.inference_mode(), capture_outputs(leaves) as outs:
        ctx.pixel_model(torch.zeros(1, 3, 32, 32))
    per = sum(t.numel() * t.element_size() for t in outs.values())
    assert device.graph_batch_size(ctx, budget=3 * per) == 3
    assert device.graph_batch_size(ctx, budget=100 * per) == 16  # capped at the run's batch size
    assert device.graph_batch_size(ctx, budget=1) == 1

    monkeypatch.setattr(device, "GRAPH_BUDGET", 2 * per)
    seen: list[int] = []
    h = tiny_model.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]) if torch.is_grad_enabled()
                                             else None)
    try:
        sec = run_technique(ctx, get("saliency"))
    finally:
        h.remove()
    assert sec.error is None and seen and max(seen) <= 2, seen


def test_forward_cost_counts_the_multiply_accumulates_and_scales_occlusion(make_ctx, tiny_model, image_dir,
                                                                           monkeypatch):
    """count_macs equals the hand count of every convolution and linear layer; above REFERENCE_MACS occlusion's
    window and stride grow by sqrt(cost / reference), the positions fall by about that factor, and the section
    says so; with scale_with_cost off they stay as configured."""
    from conftest import CLASSES

    from reportgen import device
    from reportgen.build import run_technique
    from reportgen.registry import get
    from reportgen.techniques import _explain

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.fc = torch.nn.Linear(8, 5)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)))

    net = Net().eval()
    assert device.count_macs(net, 32) == 32 * 32 * 8 * 3 * 9 + 8 * 5

    ctx = make_ctx(tiny_model, image_dir, class_names=CLASSES)
    macs = device.forward_macs(ctx)
    assert macs and macs > 0
    assert device.cost_factor(ctx) == 1.0 or macs > device.REFERENCE_MACS
    monkeypatch.setattr(device, "REFERENCE_MACS", macs / 16)
    monkeypatch.setattr(_explain, "REFERENCE_MACS", macs / 16)
    assert device.cost_factor(ctx) == pytest.approx(16)
    cs = _explain.cost_scaled_window(ctx, 2, 2)
    assert (cs.window, cs.stride) == (8, 8)  # x sqrt(16)
    assert cs.scaled["positions"] == [256, 16] and "occlusion.scale_with_cost" in cs.note("occlusion")
    assert _explain.cost_scaled_window(ctx, 2, 2, scale=False).scaled is None

    ctx = make_ctx(tiny_model, image_dir, class_names=CLASSES,
                   overrides={"occlusion": {"window": 2, "stride": 2, "max_images": 1}})
    sec = run_technique(ctx, get("occlusion"))
    assert sec.error is None and sec.results["window_px"] == 8 and sec.results["cost_scaled"]["factor"] == 16
    ctx = make_ctx(tiny_model, image_dir, class_names=CLASSES,
                   overrides={"occlusion": {"window": 2, "stride": 2, "max_images": 1, "scale_with_cost": False}})
    sec = run_technique(ctx, get("occlusion"))
    assert sec.results["window_px"] == 2 and sec.results["cost_scaled"] is None


def test_the_frozen_inference_copy_gives_the_models_logits_or_is_refused():
    """device.inference_copy: the demo CNN's frozen copy returns its logits (to 1e-5) at any batch size; a model
    whose trace would bake in a value-dependent branch or a batch size is refused, and so is a slower copy."""
    from reportgen import demo
    from reportgen.device import FrozenForward, inference_copy
    from reportgen.preprocess import PixelModel, Preprocessing

    torch.manual_seed(0)
    pre = Preprocessing(resize=None, input_size=demo.INPUT_SIZE, mean=demo.MEAN, std=demo.STD, source="demo")
    pm = PixelModel(demo.build_model(), pre).eval()
    x = torch.rand(6, 3, demo.INPUT_SIZE, demo.INPUT_SIZE)
    fast, why = inference_copy(pm, x, min_gain=0.0)
    assert isinstance(fast, FrozenForward) and why == "", why
    with torch.inference_mode():
        for batch in (x, x[:1], torch.rand(9, 3, demo.INPUT_SIZE, demo.INPUT_SIZE)):
            torch.testing.assert_close(fast(batch), pm(batch), atol=1e-5, rtol=1e-5)
    assert inference_copy(pm, x, min_gain=1e9)[0] is None  # never used when it is not faster

    class Branchy(torch.nn.Module):
        def forward(self, x):
            z = x.mean((2, 3))
            return z if float(x.mean()) > 0.5 else -z  # the trace keeps the example's branch only

    mixed = torch.cat([torch.zeros(2, 3, 8, 8), torch.ones(4, 3, 8, 8)])
    got, why = inference_copy(Branchy(), mixed, min_gain=0.0)
    assert got is None and "logits" in why

    class FixedBatch(torch.nn.Module):
        def forward(self, x):
            return x.reshape(int(x.shape[0]), -1)[:, :5]

    got, why = inference_copy(FixedBatch(), torch.rand(4, 3, 8, 8), min_gain=0.0)
    assert got is None and why
