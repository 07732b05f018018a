"""Train the embedded demo transformer (:func:`~reportgen.demo.vit.tiny_vit`) on Fashion-MNIST.

Reproduce the shipped ``vit_weights.pt`` (CPU only, 1 thread; the time is in ``TRAINING.md``)::

    python -m reportgen.demo.train_vit --data-dir /usr/share/datasets/fashion-mnist

Data reading, input normalisation and augmentation (random horizontal flip, random +-2 px
translation) are the CNN's (:mod:`reportgen.demo.train`); the sample images under ``images/`` are
shared with the CNN and not rewritten. The script trains with a fixed seed (AdamW, one-cycle LR,
label smoothing 0.05), reports train / test accuracy, saves a float32 ``state_dict`` (loadable with
``torch.load(..., weights_only=True)``) and writes the "Demo transformer" section of ``TRAINING.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import platform
import shlex
import sys
import time
from pathlib import Path

import torch
from torch import nn

from reportgen.demo import vit as _vit
from reportgen.demo.train import (
    DEFAULT_DATA_DIR,
    PACKAGE_DIR,
    VIT_SECTION_START,
    evaluate,
    fit,
    split_tensors,
)

VIT_SECTION = VIT_SECTION_START + ": how `vit_weights.pt` was made"


def train_vit(train_x: torch.Tensor, train_y: torch.Tensor, *, epochs: int, batch_size: int, lr: float,
              weight_decay: float, seed: int, log=print) -> nn.Module:
    """Train a fresh tiny ViT (20% warm-up, gradient norm clipped at 1); deterministic for a seed and thread count."""
    return fit(_vit.tiny_vit, train_x, train_y, epochs=epochs, batch_size=batch_size, lr=lr,
               weight_decay=weight_decay, seed=seed, pct_start=0.2, clip=1.0, log=log).eval()


def write_section(path: Path, text: str) -> None:
    """Replace (or append) the demo-transformer section at the end of ``TRAINING.md``."""
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    head = old.split(VIT_SECTION)[0].rstrip() + "\n\n" if old.strip() else ""
    path.write_text(head + text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reportgen.demo.train_vit", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=_vit.VIT_WEIGHTS_PATH)
    p.add_argument("--no-docs", action="store_true", help="do not write the TRAINING.md section")
    p.add_argument("--note", default="", help="a sentence for TRAINING.md (e.g. the machine's load)")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    (train_x, train_y), (test_x, test_y) = split_tensors(args.data_dir, "train"), split_tensors(args.data_dir, "test")
    model = train_vit(train_x, train_y, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      weight_decay=args.weight_decay, seed=args.seed)
    _vit.tie_patch_channels(model)  # exact no-op for greyscale input; the filter grid then reads as greyscale
    seconds = time.perf_counter() - t_start
    state = {k: v.float().contiguous() for k, v in model.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.out)
    model = _vit.tiny_vit()
    model.load_state_dict(torch.load(args.out, weights_only=True))  # accuracy of the file as shipped
    train_acc, test_acc = evaluate(model, train_x, train_y), evaluate(model, test_x, test_y)
    print(f"train accuracy {train_acc:.4f}  test accuracy {test_acc:.4f}  (training {seconds:.0f}s)")
    if args.no_docs:
        return 0
    command = "python -m reportgen.demo.train_vit " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    n_params = sum(t.numel() for t in model.parameters())
    threads = f"{args.threads} thread{'' if args.threads == 1 else 's'}"
    write_section(PACKAGE_DIR / "TRAINING.md", f"""{VIT_SECTION}

`vit_weights.pt` is the state dict of `reportgen.demo.vit.tiny_vit()`: torchvision's
`VisionTransformer` with image size 28, patch {_vit.PATCH_SIZE} (a 7x7 token grid plus the class token),
hidden size {_vit.HIDDEN_DIM}, {_vit.NUM_LAYERS} layers, {_vit.NUM_HEADS} heads, MLP {_vit.MLP_DIM}, no dropout.
Trained by `reportgen/demo/train_vit.py`, which writes this section; same data, input normalisation
and augmentation as the CNN above. `reportgen demo --arch vit` builds the report on it.

| | |
|---|---|
| Command | `{command.strip()}` |
| Seed | {args.seed} |
| Epochs | {args.epochs} |
| Batch size / max LR / weight decay | {args.batch_size} / {args.lr} / {args.weight_decay} |
| Optimiser | AdamW, one-cycle LR (20% warm-up), label smoothing 0.05, gradient norm clipped at 1 |
| Augmentation | random horizontal flip, random +-2 px translation |
| Final train accuracy (no augmentation) | {train_acc:.4f} |
| Final test accuracy (10,000 images) | {test_acc:.4f} |
| Training time | {seconds / 60:.1f} min wall clock incl. data loading, CPU, {threads} (shared machine) |
| Parameters | {n_params:,} |
| Weights file | `{args.out.name}`, {args.out.stat().st_size / 1024:.0f} KiB, float32; patch-embedding input channels \
tied after training (their mean: an exact no-op for greyscale input) |
| Date | {_dt.date.today().isoformat()} |
| Environment | Python {platform.python_version()}, torch {torch.__version__} |

{args.note}
""".rstrip() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
