"""The feature pass over a reference image set (``--reference-images DIR``, e.g. the training folder): the same
machinery as the main pass (:mod:`reportgen.features.compute`: batched, memory-mapped rows, cached by content)
run in a second :class:`~reportgen.context.RunContext` that shares the model and differs only in its images."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from ..cache import MemoKey
from ..errors import ImageSetError

if TYPE_CHECKING:
    from ..context import RunContext
    from ..features.records import FeatureStore
    from ..context import Ctx


def check_reference_folder(folder: str | Path | None) -> None:
    """A one-line error (exit 2) before any work when the folder is given but is not one."""
    if folder is not None and not Path(folder).is_dir():
        raise ImageSetError(f"--reference-images {folder}: no such folder")


def reference_context(ctx: Ctx, folder: str | Path, max_images: int | None = None):
    """A context over the reference images: same model, preprocessing, device, cache; only this section enabled
    (so the pass gathers no other technique's layers)."""
    from ..context import RunContext
    from ..imageset import discover_images

    images = discover_images(folder, ctx.pre, ctx.class_names, max_images=max_images, seed=ctx.seed,
                             progress=ctx.progress, cache=ctx.cache)
    config = dataclasses.replace(ctx.config, only=["data_issues"])
    return RunContext(model=ctx.model, device=ctx.device, pre=ctx.pre, images=images, class_names=ctx.class_names,
                      config=config, model_hash=ctx.model_hash, model_info=ctx.model_info, progress=ctx.progress,
                      cache=ctx.cache, pixel_model=ctx.pixel_model)


#: (reference context, its FeatureStore) per folder and image cap; the folder's content digest per folder
REFERENCE_FEATURES: MemoKey[tuple[RunContext, FeatureStore]] = MemoKey("failures.reference_features")
REFERENCE_STAMP: MemoKey[str] = MemoKey("failures.reference_stamp")


def reference_features(ctx: Ctx, folder: str | Path, max_images: int | None = None):
    """(reference context, its FeatureStore), memoised for the run."""
    def run():
        rctx = reference_context(ctx, folder, max_images)
        return rctx, rctx.features()
    return ctx.memo(REFERENCE_FEATURES.at(str(Path(folder).resolve()), max_images), run)


def reference_stamp(ctx: Ctx, folder: str | Path) -> str:
    """A digest of the reference folder's files (relative path, size, modification time), memoised for the run: the
    section cache key holds it, so a changed reference folder at the same path is not served from the cache."""
    import hashlib
    import os

    def stamp() -> str:
        h = hashlib.sha256(str(Path(folder).resolve()).encode())
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                p = os.path.join(root, name)
                try:
                    st = os.stat(p)
                except OSError:
                    continue
                h.update(f"{os.path.relpath(p, folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()
    return ctx.memo(REFERENCE_STAMP.at(str(folder)), stamp)
