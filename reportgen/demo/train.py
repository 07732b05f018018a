"""Train the embedded demo model (:class:`~reportgen.demo.model.FashionNet`).

Reproduce the shipped artefacts (CPU only, a few minutes on 2 cores)::

    python -m reportgen.demo.train \
        --data-dir /usr/share/datasets/fashion-mnist \
        --out reportgen/demo/weights.pt \
        --images-out reportgen/demo/images

The Fashion-MNIST idx files (``train-images-idx3-ubyte[.gz]`` etc., e.g. from
the Debian package ``dataset-fashion-mnist``) are read directly with numpy.
The script

1. trains FashionNet with a fixed seed (AdamW + one-cycle LR schedule, light
   augmentation: random horizontal flip and random +-2 px translation),
2. prints and reports train / test accuracy,
3. saves a plain float32 ``state_dict`` with :func:`torch.save` (loadable with
   ``torch.load(..., weights_only=True)``),
4. exports a seeded sample of test-set images (30 per class) as greyscale
   28x28 PNGs in one folder per class (``0_t-shirt_top/test_01234.png``),
5. writes ``labels.txt`` and ``TRAINING.md`` next to the weights file.

Results are reproducible up to floating-point non-determinism of the CPU
kernels (same seed, same torch version and thread count give the same run).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gzip
import platform
import re
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from reportgen.demo.model import CLASS_NAMES, MEAN, STD, FashionNet

M = TypeVar("M", bound=nn.Module)

DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
PACKAGE_DIR = Path(__file__).resolve().parent

# TRAINING.md's section about the demo transformer (reportgen/demo/train_vit.py) starts with this
VIT_SECTION_START = "## Demo transformer"

# Header lines that travel with the exported images / shipped files.
_LICENSE_NOTE = (
    "The sample images under `images/` are taken from the Fashion-MNIST test set "
    "(https://github.com/zalandoresearch/fashion-mnist), Copyright (c) 2017 Zalando SE, "
    "used under the MIT (Expat) licence; see `LICENSE.fashion-mnist`."
)


# --------------------------------------------------------------------------- data
def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _find(data_dir: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        p = data_dir / name
        if p.is_file():
            return p
    raise FileNotFoundError(f"{stem}[.gz] not found in {data_dir}")


def read_idx(path: Path) -> np.ndarray:
    """Read an (optionally gzipped) idx file of unsigned bytes into a numpy array."""
    with _open(path) as f:
        data = f.read()
    zero, dtype_code, ndim = data[0:2], data[2], data[3]
    if zero != b"\x00\x00" or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(shape)


def load_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images uint8 [N,28,28], labels int64 [N])`` for ``train`` or ``test``."""
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_find(data_dir, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(data_dir, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{split}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels


def split_tensors(data_dir: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`load_split` as torch tensors (uint8 images, int64 labels)."""
    images, labels = load_split(data_dir, split)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels)


def class_folder_name(index: int, name: str) -> str:
    """``(0, 'T-shirt/top') -> '0_t-shirt_top'``, ``(9, 'Ankle boot') -> '9_ankle_boot'``."""
    slug = re.sub(r"[^a-z0-9-]+", "_", name.lower()).strip("_")
    return f"{index}_{slug}"


def to_input(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N,H,W]`` -> normalised float ``[N,3,H,W]`` (greyscale replicated)."""
    x = images_u8.float().div_(255.0).unsqueeze(1)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x.expand(-1, 3, -1, -1) - mean) / std


def augment(batch_u8: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random horizontal flip + random translation by up to ``pad`` px (zero fill)."""
    n, h, w = batch_u8.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(n, 1, 1), batch_u8.flip(-1), batch_u8)
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy.view(n, 1) + torch.arange(h)).view(n, h, 1)
    cols = (dx.view(n, 1) + torch.arange(w)).view(n, 1, w)
    return padded[torch.arange(n).view(n, 1, 1), rows, cols]


# ---------------------------------------------------------------------- training
@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 1000) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on uint8 images."""
    model.eval()
    correct = 0
    for i in range(0, len(images), batch):
        logits = model(to_input(images[i : i + batch]))
        correct += (logits.argmax(1) == labels[i : i + batch]).sum().item()
    return correct / len(images)


def train(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    log=print,
) -> FashionNet:
    """Train a fresh :class:`FashionNet`; deterministic for a given seed."""
    model = fit(FashionNet, train_x, train_y, epochs=epochs, batch_size=batch_size, lr=lr,
                weight_decay=weight_decay, seed=seed, channels_last=True, log=log)  # channels_last: faster CPU convs
    model.tie_first_layer_channels()  # exact no-op for greyscale input
    return model.eval()


def fit(make_model: Callable[[], M], train_x: torch.Tensor, train_y: torch.Tensor, *, epochs: int, batch_size: int,
        lr: float, weight_decay: float, seed: int, pct_start: float = 0.25, channels_last: bool = False,
        clip: float | None = None, log=print) -> M:
    """The demo models' training loop: ``make_model()`` after seeding, AdamW with a one-cycle LR schedule
    (``pct_start`` warm-up), label smoothing 0.05, the flip/shift augmentation, optional gradient-norm ``clip``."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = make_model()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = (len(train_x) + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch, pct_start=pct_start
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    for epoch in range(1, epochs + 1):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(len(train_x), generator=gen)
        total_loss, correct = 0.0, 0
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            x = to_input(augment(train_x[idx], gen))
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = train_y[idx]
            logits = model(x)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            sched.step()
            total_loss += loss.item() * len(idx)
            correct += (logits.argmax(1) == y).sum().item()
        log(
            f"epoch {epoch}/{epochs}: loss {total_loss / len(perm):.4f} "
            f"train-acc(aug) {correct / len(perm):.4f} ({time.perf_counter() - t0:.0f}s)"
        )
    return model


# ------------------------------------------------------------------------ export
def sample_test_indices(test_y: np.ndarray, per_class: int, seed: int) -> dict[int, np.ndarray]:
    """Seeded choice of ``per_class`` test indices for every class (sorted)."""
    rng = np.random.default_rng(seed)
    out = {}
    for c in range(len(CLASS_NAMES)):
        pool = np.flatnonzero(test_y == c)
        out[c] = np.sort(rng.choice(pool, size=per_class, replace=False))
    return out


def export_images(test_x: np.ndarray, test_y: np.ndarray, out_dir: Path, per_class: int, seed: int) -> int:
    """Write the sampled test images as greyscale PNGs; returns how many were written."""
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    for c, indices in sample_test_indices(test_y, per_class, seed).items():
        folder = out_dir / class_folder_name(c, CLASS_NAMES[c])
        folder.mkdir(exist_ok=True)
        for old in folder.glob("*.png"):  # keep the folder an exact reflection of the sample
            old.unlink()
        for i in indices:
            Image.fromarray(test_x[i]).save(folder / f"test_{i:05d}.png", optimize=True)
            n += 1
    return n


def write_training_md(path: Path, *, command: str, args: argparse.Namespace, train_acc: float,
                      test_acc: float, seconds: float, n_params: int, weights: Path, n_images: int) -> None:
    today = _dt.date.today().isoformat()
    threads = f"{args.threads} thread{'' if args.threads == 1 else 's'}"
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    keep = old[old.index(VIT_SECTION_START):] if VIT_SECTION_START in old else ""  # written by train_vit.py
    path.write_text(
        f"""# Demo model: how `weights.pt` was made

`weights.pt` is the state dict of `reportgen.demo.model.FashionNet`, trained on
Fashion-MNIST by `reportgen/demo/train.py`. This file is written by that script.

| | |
|---|---|
| Command | `{command}` |
| Seed | {args.seed} |
| Epochs | {args.epochs} |
| Batch size / max LR / weight decay | {args.batch_size} / {args.lr} / {args.weight_decay} |
| Optimiser | AdamW, one-cycle LR, label smoothing 0.05 |
| Augmentation | random horizontal flip, random +-2 px translation |
| Final train accuracy (no augmentation) | {train_acc:.4f} |
| Final test accuracy (10,000 images) | {test_acc:.4f} |
| Training time | {seconds / 60:.1f} min wall clock incl. data loading, CPU, {threads} (shared machine) |
| Parameters | {n_params:,} |
| Weights file | `{weights.name}`, {weights.stat().st_size / 1024:.0f} KiB, float32 |
| Date | {today} |
| Environment | Python {platform.python_version()}, torch {torch.__version__} |

Input: RGB (greyscale replicated to 3 channels), 28x28 native, values in [0, 1]
normalised with mean {MEAN[0]} and std {STD[0]} per channel.

## Sample images

`images/` holds {n_images} Fashion-MNIST **test-set** images ({args.per_class} per class,
chosen with `numpy.random.default_rng({args.seed})`), as 28x28 greyscale PNGs
named after their test-set index, one folder per class.

{_LICENSE_NOTE}
""" + ("\n" + keep if keep else ""),
        encoding="utf-8",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reportgen.demo.train", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--per-class", type=int, default=30, help="sample test images per class")
    parser.add_argument("--out", type=Path, default=PACKAGE_DIR / "weights.pt")
    parser.add_argument("--images-out", type=Path, default=PACKAGE_DIR / "images")
    parser.add_argument("--no-docs", action="store_true", help="do not write labels.txt / TRAINING.md")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    (train_x, train_y), (test_x, test_y) = split_tensors(args.data_dir, "train"), split_tensors(args.data_dir, "test")
    test_np, test_y_np = test_x.numpy(), test_y.numpy()
    print(f"train {tuple(train_x.shape)}, test {tuple(test_x.shape)}; "
          f"train pixel mean {train_x.float().mean() / 255:.4f} std {train_x.float().std() / 255:.4f}")

    model = train(train_x, train_y, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                  weight_decay=args.weight_decay, seed=args.seed)
    seconds = time.perf_counter() - t_start
    train_acc = evaluate(model, train_x, train_y)
    test_acc = evaluate(model, test_x, test_y)
    print(f"train accuracy {train_acc:.4f}  test accuracy {test_acc:.4f}  "
          f"(training {seconds:.0f}s)")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    torch.save(state, args.out)
    n_images = export_images(test_np, test_y_np, args.images_out, args.per_class, args.seed)
    print(f"saved {args.out} ({args.out.stat().st_size / 1024:.0f} KiB) and {n_images} images in {args.images_out}")

    if not args.no_docs:
        out_dir = args.out.parent
        (out_dir / "labels.txt").write_text("\n".join(CLASS_NAMES) + "\n", encoding="utf-8")
        given = sys.argv[1:] if argv is None else argv
        command = "python -m reportgen.demo.train " + " ".join(shlex.quote(a) for a in given)
        write_training_md(out_dir / "TRAINING.md", command=command.strip(), args=args, train_acc=train_acc,
                          test_acc=test_acc, seconds=seconds,
                          n_params=sum(p.numel() for p in model.parameters()), weights=args.out,
                          n_images=n_images)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
