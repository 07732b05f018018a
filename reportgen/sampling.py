"""Which images, which target class and which random numbers a technique uses: one module for all three.

* **Seeds from names.** Every random stream is derived from the run's seed and a name such as
  ``"adversarial/targets"`` with :class:`numpy.random.SeedSequence` (``ctx.rng(name)``,
  ``ctx.generator(name)``, ``ctx.seed_for(name)``), so streams are independent, reproducible and
  readable, and no technique picks a magic integer offset that could collide with another's.
* **Image selection.** :func:`spread_indices` picks ``n`` images deterministically, one per class in turn.
* **Target choice.** :func:`target_classes`: the true label when known, else the prediction.
"""

from __future__ import annotations

import numpy as np
import torch
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .context import Ctx



# ----------------------------------------------------------------------------------------------
# seeds


def seed_sequence(run_seed: int, name: str) -> np.random.SeedSequence:
    """The SeedSequence of stream ``name`` (e.g. ``"adversarial/targets"``) under the run's seed."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"random streams are named by a non-empty string (e.g. 'saliency/noise'), got {name!r}")
    return np.random.SeedSequence([int(run_seed) % (1 << 64), int.from_bytes(name.encode("utf-8"), "little")])


def seed_int(run_seed: int, name: str) -> int:
    """A 32-bit integer seed for stream ``name`` (for APIs that take an int: scikit-learn wants < 2**32)."""
    return int(seed_sequence(run_seed, name).generate_state(1, np.uint32)[0])


def numpy_rng(run_seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng(seed_sequence(run_seed, name))


def torch_generator(run_seed: int, name: str) -> torch.Generator:
    """A CPU ``torch.Generator`` for stream ``name``."""
    g = torch.Generator()
    g.manual_seed(int(seed_sequence(run_seed, name).generate_state(1, np.uint64)[0] >> np.uint64(1)))
    return g


# ----------------------------------------------------------------------------------------------
# images and targets


def target_classes(ctx: Ctx, indices: list[int], preds: np.ndarray | None = None,
                   given: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(class per image, is_true_label per image): the true label when known, else the prediction;
    or the ``given`` class for every image (``is_true_label`` then says where it is the label).

    ``preds`` are the model's predictions for ``indices`` (needed only where a label is unknown).
    """
    labels = ctx.images.labels[list(indices)]
    if given is not None:
        if not 0 <= int(given) < ctx.num_classes:
            raise ValueError(f"class {given} is out of range: the model has {ctx.num_classes} classes")
        return np.full(len(labels), int(given), dtype=np.int64), labels == int(given)
    known = labels >= 0
    if not known.all():
        if preds is None:
            raise ValueError("predictions are needed for images without a label")
        labels = np.where(known, labels, np.asarray(preds))
    return labels.astype(np.int64), known


def spread_indices(ctx: Ctx, n: int, stream: str = "images", classes: np.ndarray | None = None) -> list[int]:
    """``n`` image indices chosen deterministically (seeded by ``stream``) and spread across classes.

    Classes are the labels when known (or ``classes``, e.g. predictions); images are visited in
    a seeded random order, one per class in turn, so the first ``n`` of a longer list are the
    same images (techniques that use the same ``stream`` and show fewer images share a prefix).
    """
    total = len(ctx.images)
    n = max(0, min(n, total))
    order = ctx.rng(f"{stream}/order").permutation(total)
    cls = classes
    if cls is None and ctx.images.has_labels:
        cls = ctx.images.labels
    if cls is None:
        return [int(i) for i in order[:n]]
    cls = np.asarray(cls)
    buckets: dict[int, list[int]] = {}
    for i in order:
        buckets.setdefault(int(cls[i]), []).append(int(i))
    # visit classes in order of their first appearance in the permutation
    queues = list(buckets.values())
    out: list[int] = []
    depth = 0
    while len(out) < n:
        progressed = False
        for q in queues:
            if depth < len(q):
                out.append(q[depth])
                progressed = True
                if len(out) == n:
                    break
        if not progressed:
            break
        depth += 1
    return out
