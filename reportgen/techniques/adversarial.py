"""Fooling images / adversarial examples (Szegedy et al. 2014; Goodfellow et al. 2015; Madry et al. 2018).

Targeted: start from a real image ``I``, pick a target class ``t``, and take gradient steps on the pixels,
``I <- Proj_{||I - I0||_inf <= eps}(clip(I + alpha * g / max|g|))`` with ``g = d log p_t(I) / dI``, until the
network predicts ``t`` or the step budget runs out; the perturbation never leaves the L-inf ball of radius
``eps`` (default 8/255). Whether it is fooled within that budget, and how large the change is, are
measured and reported per image (also after rounding to 8 bits, as a saved PNG would be). Untargeted FGSM,
``I + eps * sign(d CE / dI)``, and PGD (iterated FGSM projected on the L-inf ball of radius ``eps``)
show how often a perturbation of a stated size changes the prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
import torch

from .. import optvis
from ..optvis import objectives as O, regularizers as R
from ..papers import GOODFELLOW_2015, MADRY_2018, SZEGEDY_2014
from ..pictures import symmetric_to_uint8, unit_to_uint8
from ..registry import Range, technique
from ..report import Block, Figure, Group, ImageData, Note, Row, Section, Table
from ..results_schema import local, result_type, to_json
from ..sampling import spread_indices
from ..device import graph_batch_size

if TYPE_CHECKING:
    from ..context import Ctx

# report.json "results" of this section: key -> meaning (docs/results.md is generated from it)


@result_type
class AdversarialTarget:
    image: str
    """image name"""
    predicted: str
    """prediction before the attack"""
    p_predicted_before: float
    """its probability"""
    target: str
    """target class"""
    target_index: int
    """target index"""
    p_target_before: float
    """target probability before"""
    p_target_after: float
    """target probability after (float image)"""
    p_target_8bit: float
    """target probability after 8-bit rounding"""
    steps: int
    """steps taken"""
    linf_255: float
    """L-inf size of the perturbation in /255 (never above epsilon_255)"""
    l2_255: float
    """L2 size in 0-255 units"""
    fooled: bool
    """predicted as the target, top-1 with p >= min_target_prob (float image)"""
    fooled_8bit: bool
    """the same after 8-bit rounding"""
    index: int = local()  # the image's index in the set
    delta: np.ndarray = local()  # H x W x 3 perturbation, pixel units
    attacked: np.ndarray = local()  # H x W x 3 attacked image in [0, 1]
    probs: tuple[torch.Tensor, ...] = local()  # softmax before, after (float image), after 8-bit rounding


@result_type
class AdversarialUntargeted:
    attack: str
    """FGSM or PGD-n"""
    epsilon_255: float
    """L-inf budget in /255"""
    images: int
    """images attacked (spread across classes)"""
    changed: int
    """images whose prediction changed"""
    success_rate: float
    """changed / images"""
    changed_8bit: int
    """images whose prediction changed after 8-bit rounding of the attacked image"""
    success_rate_8bit: float
    """changed_8bit / images"""
    p_label_before: float
    """mean probability of the attacked label before"""
    p_label_after: float
    """mean probability of the attacked label after"""
    p_label_means: tuple[float, float] = local()  # the two means unrounded (the table rounds them to 3 places)


@result_type
class AdversarialResults:
    epsilon_255: float | None
    """L-inf budget of the targeted attack in /255 (null: unbounded)"""
    targeted: list[AdversarialTarget]
    fooled: int
    """of those, predicted as their target (top-1 with p >= min_target_prob) at the end (float images)"""
    fooled_8bit: int
    """the same after rounding the attacked images to 8 bits"""
    images: int
    """images attacked with a target"""
    untargeted: list[AdversarialUntargeted]
    untargeted_against: str
    """which label the untargeted attacks work against"""
    untargeted_images: int = local()  # images the untargeted attacks ran on


RESULTS = AdversarialResults  # report.json "results" of this section (docs/results.md is generated from it)


@dataclass
class AdversarialOptions:
    max_images: Annotated[int, Range(ge=1)] = 3
    """Images attacked with a target class (shown one row each)."""
    target: Literal["random", "least_likely"] | Annotated[int, Range(ge=0)] = "random"
    """Target class: random (seeded, not the predicted class), least_likely, or a class index."""
    max_steps: Annotated[int, Range(ge=1)] = 100
    """Cap on the targeted attack's steps."""
    step_size: Annotated[float, Range(gt=0)] = 1.0
    """Targeted attack: largest pixel change per step, in /255 units."""
    min_target_prob: Annotated[float, Range(ge=0, le=1)] = 0.5
    """Targeted attack: stop once the target is predicted with at least this probability (0: once it is top)."""
    epsilon: Annotated[float, Range(gt=0)] = 8.0
    """Targeted attack: L-inf budget in /255 units; the perturbation is projected onto this ball every step."""
    epsilons: list[Annotated[float, Range(gt=0)]] = field(default_factory=lambda: [1.0, 2.0, 8.0])
    """Untargeted FGSM / PGD budgets (L-inf, in /255 units; success is also measured after 8-bit rounding)."""
    pgd_steps: Annotated[int, Range(ge=1)] = 10
    """PGD iterations (step eps/4, random start)."""
    attack_images: Annotated[int, Range(ge=1)] = 16
    """Images used for the FGSM / PGD success rates (seeded, spread across classes)."""


def targeted_attack(pixel_model, x: torch.Tensor, targets: list[int] | torch.Tensor, *, max_steps: int = 100,
                    step: float = 1 / 255, min_prob: float = 0.0, eps: float | None = 8 / 255,
                    generator: torch.Generator | None = None, layer_root=None, progress=None) -> optvis.OptResult:
    """Gradient ascent on ``log p_target`` (steps of at most ``step`` per pixel), projected onto the L-inf
    ball of radius ``eps`` around ``x`` (None: unbounded), until each image is classified as its target
    (with probability >= ``min_prob``); images in [0, 1]. ``result.done``/``steps_taken`` say who flipped when."""
    t = torch.as_tensor(targets, dtype=torch.long, device=x.device).flatten()
    if t.numel() == 1:
        t = t.expand(x.shape[0])
    param = optvis.pixel_image(init=x.detach().clone())
    return optvis.render(
        pixel_model, O.class_log_prob(t), param, optimizer="sgd", lr=step, grad_norm="linf", steps=max_steps,
        regularizers=[R.ProjectLinf(x, eps)] if eps is not None else [],
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


def _pick_targets(ctx: Ctx, opts: AdversarialOptions, probs: torch.Tensor) -> list[int]:
    n, c = probs.shape
    preds = probs.argmax(1)
    rng = ctx.rng("adversarial/targets")
    out = []
    for b in range(n):
        if opts.target == "least_likely":
            out.append(int(probs[b].argmin()))
        elif str(opts.target).strip().lstrip("-").isdigit():
            out.append(int(opts.target) % c)
        elif opts.target == "random":
            choices = [k for k in range(c) if k != int(preds[b]) and ctx.class_name(k).lower() != "background"]
            out.append(int(rng.choice(choices)))
        else:
            raise ValueError(f"adversarial.target must be random, least_likely or a class index, got {opts.target!r}")
    return out


def _fmt_p(ctx: Ctx, probs_row: torch.Tensor, k: int) -> str:
    return f"{ctx.class_name(k)} ({float(probs_row[k]):.3f})"


def size_text(linf255: float) -> str:
    """What an L-inf change of ``linf255`` grey levels amounts to, in words driven by the number."""
    if linf255 < 0.5:
        return f"{linf255:.2f}/255: below one 8-bit grey level, so it does not survive saving as a PNG"
    if linf255 <= 4:
        return f"{linf255:.1f}/255: at most {linf255:.1f} of 255 grey levels per pixel, small"
    return f"{linf255:.1f}/255: up to {linf255:.0f} of 255 grey levels per pixel, visible on close inspection"


def _against(ctx: Ctx, idx: list[int], preds: torch.Tensor) -> torch.Tensor:
    """True labels where known (and in range), else the model's predictions."""
    labels = torch.as_tensor(np.asarray(ctx.images.labels)[list(idx)], dtype=torch.long)
    ok = (labels >= 0) & (labels < ctx.num_classes)
    return torch.where(ok, labels, preds.cpu())


def untargeted_rates(ctx: Ctx, opts: AdversarialOptions) -> tuple[list[AdversarialUntargeted], str, int]:
    """FGSM / PGD success over ``attack_images`` images spread across classes, as float and as 8-bit images; the
    label attacked (in words) and the number of images."""
    pm = ctx.pixel_model
    m = min(max(1, opts.attack_images), len(ctx.images))
    idx = spread_indices(ctx, m, "adversarial/universal_images")
    g = ctx.generator("adversarial/universal")
    pgd = f"PGD-{opts.pgd_steps}"
    out = []
    n_true = 0
    for eps255 in opts.epsilons:
        eps = float(eps255) / 255.0
        stats = {name: [0, 0, 0, 0.0, 0.0] for name in ("FGSM", pgd)}
        n_true = 0
        for pos, xb in ctx.images.batches(graph_batch_size(ctx), idx):
            xb = ctx.to_device(xb)
            with torch.inference_mode():
                pb = torch.softmax(pm(xb).float(), 1)
            yb = ctx.to_device(_against(ctx, pos, pb.argmax(1)))
            n_true += int((np.asarray(ctx.images.labels)[list(pos)] >= 0).sum())
            for name, kw in (("FGSM", dict(steps=1)), (pgd, dict(steps=opts.pgd_steps, random_start=True,
                                                                  generator=g))):
                adv = untargeted_attack(pm, xb, yb, eps, **kw)
                with torch.inference_mode():
                    pa = torch.softmax(pm(adv).float(), 1)
                    pa8 = torch.softmax(pm(torch.round(adv * 255) / 255).float(), 1)
                    p_before = pb.argmax(1)
                s = stats[name]
                s[0] += int((pa.argmax(1) != p_before).sum())
                s[1] += int((pa8.argmax(1) != p_before).sum())
                s[2] += len(pos)
                s[3] += float(pb.gather(1, yb[:, None]).sum())
                s[4] += float(pa.gather(1, yb[:, None]).sum())
        for name, (flipped, flipped8, total, pb_sum, pa_sum) in stats.items():
            t = max(total, 1)
            out.append(AdversarialUntargeted(
                attack=name, epsilon_255=float(eps255), images=int(total), changed=int(flipped),
                success_rate=round(flipped / t, 4), changed_8bit=int(flipped8),
                success_rate_8bit=round(flipped8 / t, 4), p_label_before=round(pb_sum / t, 4),
                p_label_after=round(pa_sum / t, 4), p_label_means=(pb_sum / t, pa_sum / t)))
    against = ("the true label" if n_true == m else
               f"the true label where known ({n_true} of {m}), else the predicted class" if n_true else
               "the predicted class (no labels)")
    return out, against, m


def untargeted_table(res: AdversarialResults, opts: AdversarialOptions) -> Table:
    """The untargeted attacks' success rates as a table."""
    rows = [[r.attack, f"{r.epsilon_255:g}/255", f"{r.changed}/{r.images}", round(r.changed / max(r.images, 1), 3),
             f"{r.changed_8bit}/{r.images}", round(r.p_label_means[0], 3), round(r.p_label_means[1], 3)]
            for r in res.untargeted]
    m, against = res.untargeted_images, res.untargeted_against
    return Table(["attack", "ε (L∞)", "changed", "success rate", "changed as 8-bit", "p(label) before",
                  "p(label) after"], rows, title="Untargeted attacks",
                 caption=f"Over {m} images spread across classes; each attack raises the cross-entropy of {against}; "
                         "success = the predicted class changed, also after rounding the attacked image to 8 bits "
                         f"(what a saved PNG holds). PGD: {opts.pgd_steps} steps of ε/4 from a random start in "
                         "the ε-ball; both stay in [0, 1].", numeric=[3, 5, 6])


@technique(
    "adversarial", "Fooling images (adversarial examples)", options=AdversarialOptions, order=90,
    needs_autograd=True,
    references=[SZEGEDY_2014, GOODFELLOW_2015, MADRY_2018],
    presets={
        "minimal": {"max_images": 1, "max_steps": 40, "step_size": 2.0, "min_target_prob": 0.0, "attack_images": 4,
                    "pgd_steps": 3, "epsilons": [2.0, 8.0]},
        "full": {"max_images": 6, "max_steps": 200, "attack_images": 64, "epsilons": [1.0, 2.0, 4.0, 8.0]},
    },
)
def adversarial(ctx: Ctx, opts: AdversarialOptions) -> Section:
    """Each row starts from a real image and adds a perturbation, bounded by an L∞ budget ε, found by gradient
    ascent on a chosen target class; it shows the perturbation magnified and the attacked image with the class the
    network now gives it, or says the target was not reached within ε. The table shows how often untargeted
    perturbations of a stated size (FGSM, PGD) change the prediction."""
    res = compute_adversarial(ctx, opts)
    sec = Section(id="adversarial", title="Fooling images (adversarial examples)")
    sec.add(*present_adversarial(ctx, opts, res))
    sec.params["targets"] = [r.target_index for r in res.targeted]
    sec.results = to_json(res)
    return sec


def compute_adversarial(ctx: Ctx, opts: AdversarialOptions) -> AdversarialResults:
    """The targeted attack on a spread of images, then the untargeted FGSM / PGD rates: numbers and arrays only."""
    pm = ctx.pixel_model
    n = min(max(1, opts.max_images), len(ctx.images))
    idx = spread_indices(ctx, n, "adversarial/images")  # one image per class, seeded
    x = ctx.to_device(ctx.images.batch(idx))
    with torch.inference_mode():
        p0 = torch.softmax(pm(x).float(), 1).cpu()
    pred0 = p0.argmax(1)
    targets = _pick_targets(ctx, opts, p0)
    eps = float(opts.epsilon) / 255.0 if opts.epsilon and opts.epsilon > 0 else None
    res = targeted_attack(pm, x, targets, max_steps=opts.max_steps, step=opts.step_size / 255.0,
                          min_prob=opts.min_target_prob, eps=eps,
                          generator=ctx.generator("adversarial/fooling"), layer_root=ctx.model, progress=ctx.progress)
    fooled = res.images
    assert res.final_logits is not None  # evaluate_final=True fills it
    with torch.inference_mode():
        p1 = torch.softmax(res.final_logits.float(), 1).cpu()
        q = torch.round(fooled * 255) / 255  # what a saved 8-bit PNG of the fooled image would give
        pq = torch.softmax(pm(ctx.to_device(q)).float(), 1).cpu()
    rows: list[AdversarialTarget] = []
    for b, i in enumerate(idx):
        delta = (fooled[b] - x[b].cpu()).permute(1, 2, 0).numpy()
        linf, l2 = float(np.abs(delta).max()), float(np.sqrt((delta ** 2).sum()))
        tgt = targets[b]
        # one criterion for the float and the 8-bit image: the attack's own (top-1, and p >= min_target_prob)
        ok = bool(_fooled(p1[b:b + 1].clamp_min(1e-30).log(), torch.tensor([tgt]), opts.min_target_prob)[0])
        ok8 = bool(_fooled(pq[b:b + 1].clamp_min(1e-30).log(), torch.tensor([tgt]), opts.min_target_prob)[0])
        rows.append(AdversarialTarget(
            image=ctx.images.name(i), predicted=ctx.class_name(int(pred0[b])),
            p_predicted_before=round(float(p0[b, pred0[b]]), 4), target=ctx.class_name(tgt), target_index=tgt,
            p_target_before=round(float(p0[b, tgt]), 4), p_target_after=round(float(p1[b, tgt]), 4),
            p_target_8bit=round(float(pq[b, tgt]), 4), steps=int(res.steps_taken[b]), linf_255=round(linf * 255, 3),
            l2_255=round(l2 * 255, 3), fooled=ok, fooled_8bit=ok8,
            index=i, delta=delta, attacked=fooled[b].permute(1, 2, 0).numpy(), probs=(p0[b], p1[b], pq[b])))
    untargeted, against, m = untargeted_rates(ctx, opts)
    return AdversarialResults(
        epsilon_255=float(opts.epsilon) if eps is not None else None, targeted=rows,
        fooled=sum(r.fooled for r in rows), fooled_8bit=sum(r.fooled_8bit for r in rows), images=n,
        untargeted=untargeted, untargeted_against=against, untargeted_images=m)


def present_adversarial(ctx: Ctx, opts: AdversarialOptions, res: AdversarialResults) -> list[Block]:
    """A row per attacked image (original, magnified perturbation, attacked image), the untargeted table, a note."""
    budget = f"ε = {opts.epsilon:g}/255" if res.epsilon_255 is not None else "no ε budget"
    blocks: list[Block] = []
    for r in res.targeted:
        (p0, p1, pq), i, tgt, steps = r.probs, r.index, r.target_index, r.steps
        linf, l2 = float(np.abs(r.delta).max()), float(np.sqrt((r.delta ** 2).sum()))
        orig = Figure(ImageData(ctx.images.display(i), display_width=224),
                      caption=f"original — {_fmt_p(ctx, p0, int(p0.argmax()))}", alt=f"original {ctx.images.name(i)}")
        mag = 0.5 / max(linf, 1e-12)
        pert = Figure(ImageData(symmetric_to_uint8(r.delta, linf if linf > 0 else None), display_width=224),
                      caption=f"perturbation ×{mag:.0f} (grey = 0): L∞ = {size_text(linf * 255)}; "
                              f"L2 = {l2 * 255:.1f} (0–255 units)",
                      alt="the perturbation, magnified")
        if r.fooled:
            state = f"fooled within {budget} after {steps} steps: {_fmt_p(ctx, p1, int(p1.argmax()))}"
        else:
            state = (f"NOT fooled within {budget} in {steps} steps: "
                     f"predicted {_fmt_p(ctx, p1, int(p1.argmax()))}, "
                     f"target p = {float(p1[tgt]):.3f}")
        state8 = (f"still the target (p = {float(pq[tgt]):.3f})" if r.fooled_8bit else
                  f"{_fmt_p(ctx, pq, int(pq.argmax()))}; target p = {float(pq[tgt]):.3f}, not reached")
        fool = Figure(ImageData(unit_to_uint8(r.attacked), display_width=224),
                      caption=f"attacked — target {ctx.class_name(tgt)}: {state}; as 8-bit PNG: {state8}",
                      alt=f"adversarial image targeting {ctx.class_name(tgt)}")
        title = f"{ctx.images.name(i)} → {ctx.class_name(tgt)}" + ("" if r.fooled else " (not reached)")
        blocks.append(Group(title, [Row([orig, pert, fool])]))
    blocks.append(untargeted_table(res, opts))
    n, n_ok, n_ok8 = res.images, res.fooled, res.fooled_8bit
    worst = max((r.linf_255 for r in res.targeted), default=0.0)
    blocks.append(Note(f"Targeted attack: steps of at most {opts.step_size:g}/255 per pixel along ∇ log p_target "
                       f"(scaled so the largest pixel change is the step), projected onto the L∞ ball ({budget}) "
                       "and [0, 1], until the target is predicted"
                       + (f" with p ≥ {opts.min_target_prob:g}" if opts.min_target_prob > 0 else "") + " or "
                       f"{opts.max_steps} steps. Fooled {n_ok} of {n} within {budget} ({n_ok8} of {n} after 8-bit "
                       f"rounding); the largest change used was {worst:.1f}/255.",
                       kind="info" if n_ok == n else "warning"))
    return blocks
