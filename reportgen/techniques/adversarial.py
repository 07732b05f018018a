"""Fooling images / adversarial examples (Szegedy et al. 2014; Goodfellow et al. 2015; Madry et al. 2018).

Targeted: start from a real image ``I``, pick a target class ``t``, and take gradient steps on the pixels,
``I <- clip(I + alpha * g / max|g|)`` with ``g = d log p_t(I) / dI``, until the network predicts ``t``.
The perturbation that does it is small (a few /255 per pixel) and looks like structured noise: the
model's decision depends on directions in pixel space a person does not see. Untargeted FGSM,
``I + eps * sign(d CE / dI)``, and PGD (iterated FGSM projected on the L-inf ball of radius ``eps``)
show how often a perturbation of a stated size changes the prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .. import optvis
from ..imaging import symmetric_to_uint8, unit_to_uint8
from ..optvis import objectives as O
from ..optvis import regularizers as R
from ..papers import GOODFELLOW_2015, MADRY_2018, SZEGEDY_2014
from ..features import spread_indices
from ..registry import technique
from ..report import Figure, Group, ImageData, Note, Row, Section, Table


@dataclass
class AdversarialOptions:
    max_images: int = 3
    """Images attacked with a target class (shown one row each)."""
    target: str = "random"
    """Target class: random (seeded, not the predicted class), least_likely, or a class index."""
    max_steps: int = 100
    """Cap on the targeted attack's steps."""
    step_size: float = 1.0
    """Targeted attack: largest pixel change per step, in /255 units."""
    min_target_prob: float = 0.5
    """Targeted attack: stop once the target is predicted with at least this probability (0: once it is top)."""
    epsilons: list[float] = field(default_factory=lambda: [0.5, 2.0, 8.0])
    """Untargeted FGSM / PGD budgets (L-inf, in /255 units)."""
    pgd_steps: int = 10
    """PGD iterations (step eps/4, random start)."""
    attack_images: int = 16
    """Images used for the FGSM / PGD success rates."""


def targeted_attack(pixel_model, x: torch.Tensor, targets: list[int] | torch.Tensor, *, max_steps: int = 100,
                    step: float = 1 / 255, min_prob: float = 0.0, generator: torch.Generator | None = None,
                    layer_root=None, progress=None) -> optvis.OptResult:
    """Gradient ascent on ``log p_target`` (steps of at most ``step`` per pixel) until each image is
    classified as its target (with probability >= ``min_prob``); images in [0, 1].
    ``result.done``/``steps_taken`` say who flipped when."""
    t = torch.as_tensor(targets, dtype=torch.long, device=x.device).flatten()
    if t.numel() == 1:
        t = t.expand(x.shape[0])
    param = optvis.pixel_image(init=x.detach().clone())
    return optvis.render(
        pixel_model, O.class_log_prob(t), param, optimizer="sgd", lr=step, grad_norm="linf", steps=max_steps,
        generator=generator, layer_root=layer_root, evaluate_final=True,
        stop=lambda acts: _fooled(acts[O.LOGITS], t, min_prob), progress=progress, desc="Targeted attack")


def _fooled(logits: torch.Tensor, t: torch.Tensor, min_prob: float) -> torch.Tensor:
    hit = logits.argmax(1) == t
    if min_prob > 0:
        hit = hit & (torch.softmax(logits.float(), 1).gather(1, t[:, None])[:, 0] >= min_prob)
    return hit


def untargeted_attack(pixel_model, x: torch.Tensor, labels: torch.Tensor, eps: float, steps: int = 1,
                      random_start: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """FGSM (``steps=1``, no random start) or PGD: maximise the cross-entropy of ``labels`` within the
    L-inf ball of radius ``eps`` around ``x`` (pixel units), staying in [0, 1]. Returns the images."""
    start = x.detach().clone()
    if random_start:
        noise = (torch.rand(x.shape, generator=generator) * 2 - 1).to(x) * eps
        start = (start + noise).clamp(0, 1)
    alpha = eps if steps == 1 else eps / 4
    res = optvis.render(
        pixel_model, -O.class_log_prob(labels), optvis.pixel_image(init=start), optimizer="sgd", lr=alpha,
        grad_norm="sign", steps=steps, regularizers=[R.ProjectLinf(x, eps)], generator=generator)
    return res.images.to(x.device)


def _pick_targets(ctx, opts: AdversarialOptions, probs: torch.Tensor) -> list[int]:
    n, c = probs.shape
    preds = probs.argmax(1)
    rng = ctx.rng(9001)
    out = []
    for b in range(n):
        if opts.target == "least_likely":
            out.append(int(probs[b].argmin()))
        elif opts.target.strip().lstrip("-").isdigit():
            out.append(int(opts.target) % c)
        elif opts.target == "random":
            choices = [k for k in range(c) if k != int(preds[b]) and ctx.class_name(k).lower() != "background"]
            out.append(int(rng.choice(choices)))
        else:
            raise ValueError(f"adversarial.target must be random, least_likely or a class index, got {opts.target!r}")
    return out


def _fmt_p(ctx, probs_row: torch.Tensor, k: int) -> str:
    return f"{ctx.class_name(k)} ({float(probs_row[k]):.3f})"


@technique(
    "adversarial",
    "Fooling images (adversarial examples)",
    options=AdversarialOptions,
    presets={
        "minimal": {"max_images": 1, "max_steps": 40, "step_size": 4.0, "min_target_prob": 0.0, "attack_images": 4,
                    "pgd_steps": 3, "epsilons": [2.0, 8.0]},
        "full": {"max_images": 6, "max_steps": 200, "attack_images": 64, "epsilons": [0.5, 1.0, 2.0, 4.0, 8.0]},
    },
    references=[SZEGEDY_2014, GOODFELLOW_2015, MADRY_2018],
    order=90,
    summary=(
        "Each row starts from a real image, adds a small perturbation found by gradient ascent on a chosen target "
        "class, and shows the perturbation magnified and the fooled image the network now assigns to the target. "
        "The two images look the same to a person; the table shows how often perturbations of a stated size "
        "(FGSM, PGD) change the prediction."
    ),
    needs_autograd=True,
)
def adversarial(ctx, opts: AdversarialOptions) -> Section:
    pm = ctx.pixel_model
    n = min(max(1, opts.max_images), len(ctx.images))
    idx = spread_indices(ctx, n, offset=37)  # one image per class, seeded
    x = ctx.to_device(ctx.images.batch(idx))
    with torch.inference_mode():
        p0 = torch.softmax(pm(x).float(), 1).cpu()
    pred0 = p0.argmax(1)
    targets = _pick_targets(ctx, opts, p0)
    res = targeted_attack(pm, x, targets, max_steps=opts.max_steps, step=opts.step_size / 255.0,
                          min_prob=opts.min_target_prob,
                          generator=ctx.generator(9002), layer_root=ctx.model, progress=ctx.progress)
    fooled = res.images
    with torch.inference_mode():
        p1 = torch.softmax(res.final_logits, 1)
        q = torch.round(fooled * 255) / 255  # what a saved 8-bit PNG of the fooled image would give
        pq = torch.softmax(pm(ctx.to_device(q)).float(), 1).cpu()

    sec = Section(id="adversarial", title="Fooling images (adversarial examples)")
    for b, i in enumerate(idx):
        delta = (fooled[b] - x[b].cpu()).permute(1, 2, 0).numpy()
        linf, l2 = float(np.abs(delta).max()), float(np.sqrt((delta ** 2).sum()))
        ok = bool(res.done[b])
        steps = int(res.steps_taken[b])
        tgt = targets[b]
        orig = Figure(ImageData(ctx.images.display(i), display_width=224),
                      caption=f"original — {_fmt_p(ctx, p0[b], int(pred0[b]))}", alt=f"original {ctx.images.name(i)}")
        mag = 0.5 / max(linf, 1e-12)
        pert = Figure(ImageData(symmetric_to_uint8(delta, linf if linf > 0 else None), display_width=224),
                      caption=f"perturbation ×{mag:.0f} (grey = 0): L∞ = {linf * 255:.2f}/255, "
                              f"L2 = {l2 * 255:.1f} (0–255 units) = {l2:.3f} ([0,1] units)",
                      alt="the perturbation, magnified")
        state = (f"predicted {_fmt_p(ctx, p1[b], int(p1[b].argmax()))} after {steps} steps" if ok else
                 f"NOT fooled within {steps} steps: {_fmt_p(ctx, p1[b], int(p1[b].argmax()))}")
        fool = Figure(ImageData(unit_to_uint8(fooled[b].permute(1, 2, 0).numpy()), display_width=224),
                      caption=f"fooled — target {ctx.class_name(tgt)}: {state}; as 8-bit PNG: "
                              f"{_fmt_p(ctx, pq[b], int(pq[b].argmax()))}",
                      alt=f"adversarial image targeting {ctx.class_name(tgt)}")
        sec.add(Group(f"{ctx.images.name(i)} → {ctx.class_name(tgt)}", [Row([orig, pert, fool])]))

    # untargeted FGSM / PGD success rates
    m = min(max(1, opts.attack_images), len(ctx.images))
    rows = []
    g = ctx.generator(9003)
    for eps255 in opts.epsilons:
        eps = float(eps255) / 255.0
        stats = {"FGSM": [0, 0, 0.0, 0.0], f"PGD-{opts.pgd_steps}": [0, 0, 0.0, 0.0]}
        for chunk, xb in ctx.images.batches(ctx.batch_size, list(range(m))):
            xb = ctx.to_device(xb)
            with torch.inference_mode():
                pb = torch.softmax(pm(xb).float(), 1)
            yb = pb.argmax(1)
            for name, kw in (("FGSM", dict(steps=1)),
                             (f"PGD-{opts.pgd_steps}", dict(steps=opts.pgd_steps, random_start=True, generator=g))):
                adv = untargeted_attack(pm, xb, yb, eps, **kw)
                with torch.inference_mode():
                    pa = torch.softmax(pm(adv).float(), 1)
                s = stats[name]
                s[0] += int((pa.argmax(1) != yb).sum())
                s[1] += len(chunk)
                s[2] += float(pb.gather(1, yb[:, None]).sum())
                s[3] += float(pa.gather(1, yb[:, None]).sum())
        for name, (flipped, total, pb_sum, pa_sum) in stats.items():
            rows.append([name, f"{eps255:g}/255", f"{flipped}/{total}", round(flipped / max(total, 1), 3),
                         round(pb_sum / max(total, 1), 3), round(pa_sum / max(total, 1), 3)])
    sec.add(Table(["attack", "ε (L∞)", "changed", "success rate", "p(original) before", "p(original) after"],
                  rows, title="Untargeted attacks",
                  caption=f"Over the first {m} images; success = the predicted class changed. PGD: {opts.pgd_steps} "
                          "steps of ε/4 from a random start in the ε-ball; both stay in [0, 1].",
                  numeric=[3, 4, 5]))
    sec.add(Note(f"Targeted attack: steps of at most {opts.step_size:g}/255 per pixel along ∇ log p_target "
                 f"(scaled so the largest pixel change is the step), until the target is predicted"
                 + (f" with p ≥ {opts.min_target_prob:g}" if opts.min_target_prob > 0 else "") + " or "
                 f"{opts.max_steps} steps; pixels stay in [0, 1]. Fooled {int(res.done.sum())} of {n}."))
    sec.params["targets"] = targets
    return sec
