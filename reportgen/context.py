"""RunContext: everything a technique may use, built once per run by :mod:`reportgen.build`.

Techniques receive ``(ctx, opts)`` and must not touch files: images come from ``ctx.images``,
the model from ``ctx.model`` (the user's module, eval mode, on ``ctx.device``) or
``ctx.pixel_model`` (the same model behind its normalisation: RGB in [0, 1] in, logits out).

* :class:`Ctx` -- the protocol every ``ctx`` parameter is annotated with (what a technique may read and call);
  :class:`RunContext` implements it.
* :class:`MemoKey` (:mod:`reportgen.cache`) -- a typed key of the run's memo (:meth:`RunContext.memo`), declared
  beside the code that produces its value; ``key.at(*parts)`` is the same key for one set of arguments. A plain
  string is refused.
* :class:`SectionRecord` -- what the context notes on the running section (the input sizes
  :meth:`RunContext.fit_input` changed): the build opens one per section (:meth:`RunContext.section`) and reads it
  after the section ran.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol, TypeVar, cast

import numpy as np
import torch
from torch import nn

from .inspection import layers as layers_mod
from . import sampling
from .cache import Cache, MemoKey, digest
from .config import Config, GeneralOptions
from .errors import LayerError
from .imageset import ImageSet
from .inspection.probe import ModelProbe, probe_model
from .preprocess import PixelModel, Preprocessing

if TYPE_CHECKING:
    from .features.distributed import Group
    from .features.records import FeatureStore
    from .features.split import Ranks

T = TypeVar("T")
ProgressFn = Callable[..., Iterable]


def no_progress(iterable: Iterable[T], desc: str = "", total: int | None = None) -> Iterable[T]:
    return iterable


@dataclass
class SectionRecord:
    """What the context notes on one section while it runs (opened by :meth:`RunContext.section`)."""

    id: str
    resized: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    """Input sides :meth:`RunContext.fit_input` changed in this section ((h, w) -> accepted (h, w)): the build
    states them on the section (:func:`reportgen.build.run_technique`)."""


class Ctx(Protocol):
    """What a technique (and any helper handed ``ctx``) may read and call: :class:`RunContext` implements it."""

    model: nn.Module
    device: torch.device
    pre: Preprocessing
    images: ImageSet
    class_names: list[str]
    config: Config
    model_hash: str
    model_info: dict[str, Any]
    cache: Cache | None
    pixel_model: nn.Module
    feature_store: FeatureStore | None
    group: Group | None
    ranks: Ranks | None

    @property
    def progress(self) -> ProgressFn: ...
    @property
    def general(self) -> GeneralOptions: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def seed(self) -> int: ...
    def generator(self, name: str) -> torch.Generator: ...
    def rng(self, name: str) -> np.random.Generator: ...
    def seed_for(self, name: str) -> int: ...
    @property
    def num_classes(self) -> int: ...
    def class_name(self, k: int) -> str: ...
    def layer(self, name: str) -> nn.Module: ...
    def probe(self) -> ModelProbe: ...
    def fit_input(self, x: torch.Tensor) -> torch.Tensor: ...
    def chosen_layer(self) -> str: ...
    def require_hooks(self) -> None: ...
    def first_conv(self) -> str: ...
    @property
    def output_model(self) -> nn.Module: ...
    def output_model_with(self, name: str) -> tuple[nn.Module, nn.Module]: ...
    def features(self, layers: list[str] | None = None) -> FeatureStore: ...
    def cache_key(self, *parts: Any) -> str: ...
    def memo(self, key: MemoKey[T], fn: Callable[[], T]) -> T: ...
    def to_device(self, x: torch.Tensor) -> torch.Tensor: ...


OUTPUT_MODEL: MemoKey[nn.Module] = MemoKey("context.output_model")


@dataclass
class RunContext:
    model: nn.Module
    device: torch.device
    pre: Preprocessing
    images: ImageSet
    class_names: list[str]
    config: Config
    model_hash: str = ""
    model_info: dict[str, Any] = field(default_factory=dict)
    progress: ProgressFn = no_progress
    cache: Cache | None = None
    pixel_model: nn.Module = None  # type: ignore[assignment]
    feature_store: FeatureStore | None = None
    """The run's one feature pass so far (:meth:`features` fills and extends it)."""
    group: Group | None = None
    """The torchrun process group while the feature pass is shared (:mod:`reportgen.features.distributed`),
    else None: a one-process build."""
    ranks: Ranks | None = None
    """Under torchrun, after the feature pass: the split of the per-image sections across the ranks
    (:mod:`reportgen.features.split`), else None."""
    model_probe: ModelProbe | None = None  # accepted input sizes and layer layouts (:meth:`probe`)
    _memo: dict[MemoKey[Any], Any] = field(default_factory=dict)
    _section: SectionRecord | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.pixel_model is None:
            self.pixel_model = PixelModel(self.model, self.pre).to(self.device).eval()

    # ----- options -------------------------------------------------------------------------
    @property
    def general(self) -> GeneralOptions:
        return self.config.general

    @property
    def batch_size(self) -> int:
        return max(1, int(self.config.general.batch_size))

    @property
    def seed(self) -> int:
        return int(self.config.general.seed)

    def generator(self, name: str) -> torch.Generator:
        """A CPU torch.Generator for the random stream ``name`` (see :mod:`reportgen.sampling`)."""
        return sampling.torch_generator(self.seed, name)

    def rng(self, name: str) -> np.random.Generator:
        """A numpy Generator for the random stream ``name``, e.g. ``"adversarial/targets"``."""
        return sampling.numpy_rng(self.seed, name)

    def seed_for(self, name: str) -> int:
        """An integer seed for the random stream ``name`` (for APIs that take an int)."""
        return sampling.seed_int(self.seed, name)

    # ----- classes -------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_name(self, k: int) -> str:
        return self.class_names[k] if 0 <= k < len(self.class_names) else f"class_{k}"

    # ----- layers --------------------------------------------------------------------------
    def layer(self, name: str) -> nn.Module:
        return layers_mod.resolve_layer(self.model, name)

    def probe(self) -> ModelProbe:
        """The sizes the model accepts and its layers' layouts (:mod:`reportgen.inspection.probe`), found by a few
        batch-1 forwards on first use and kept for the run."""
        if self.model_probe is None:
            self.model_probe = probe_model(self.pixel_model, self.model, self.pre.size, 3, self.device)
        return self.model_probe

    def fit_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` resized to a size the model accepts (itself when it fits): for techniques that optimise or crop
        at other sizes."""
        y = self.probe().sizes.fit(x)
        if y is not x and self._section is not None:  # noted on the running section's own record
            self._section.resized[(int(x.shape[-2]), int(x.shape[-1]))] = (int(y.shape[-2]), int(y.shape[-1]))
        return y

    @contextmanager
    def section(self, section_id: str) -> Iterator[SectionRecord]:
        """A fresh :class:`SectionRecord` for the section ``section_id``, the one the context notes on while the
        block runs (the build opens one around each technique and reads it after); the previous one is restored
        after the block, so a section run inside another notes only on its own."""
        record, outer = SectionRecord(section_id), self._section
        self._section = record
        try:
            yield record
        finally:
            self._section = outer

    def chosen_layer(self) -> str:
        """The layer named by ``--layer``, else the last convolution when it sits in the last stage (a CNN), else
        the last block with spatial structure (a transformer's last encoder block; never the patch embedding)."""
        name = self.config.general.layer
        if name:
            self.layer(name)  # validate
            return name
        self.require_hooks()
        name = self.probe().default_layer(layers_mod.last_conv(self.model))
        if name is None:
            raise LayerError(
                "the model has no layer with a spatial output and no --layer was given; pass --layer NAME "
                "(see `reportgen layers`)"
            )
        return name

    def require_hooks(self) -> None:
        from .inspection.hooks import hookable

        if not hookable(self.model):
            self.layer("<any layer>")  # raises the TorchScript explanation

    def first_conv(self) -> str:
        self.require_hooks()
        name = layers_mod.first_conv(self.model)
        if name is None:
            raise LayerError("the model has no nn.Conv2d layer to show filters of")
        return name

    @property
    def output_model(self) -> nn.Module:
        """``pixel_model`` with BatchNorm folded into the convolutions (:mod:`reportgen.inspection.folding`): the same
        logits and input gradients, faster. For techniques that use only the output; layers and hooks belong
        on ``pixel_model``. The model itself when nothing can be folded."""

        def make() -> nn.Module:
            from .inspection.folding import fold_batchnorm

            g = torch.Generator().manual_seed(0)
            example = torch.rand(2, 3, self.pre.size, self.pre.size, generator=g).to(self.device)  # RGB in [0, 1]
            folded, n = fold_batchnorm(self.model, example=cast(PixelModel, self.pixel_model).normalize(example))
            return self.pixel_model if n == 0 else PixelModel(folded, self.pre).to(self.device).eval()

        return self.memo(OUTPUT_MODEL, make)

    def output_model_with(self, name: str) -> tuple[nn.Module, nn.Module]:
        """(model, its module called ``name``) for a technique that reads one layer besides the output:
        :attr:`output_model` when that layer survives the folding (an activation does, a BatchNorm does not),
        else ``pixel_model`` and :meth:`layer`."""
        om = self.output_model
        inner = getattr(om, "model", None)
        graph = getattr(inner, "graph", None)
        if om is not self.pixel_model and inner is not None and graph is not None:
            called = {n.target for n in graph.nodes if n.op == "call_module"}
            if name in called:
                return om, layers_mod.resolve_layer(inner, name)
        return self.pixel_model, self.layer(name)

    # ----- data shared by techniques ---------------------------------------------------------
    def features(self, layers: list[str] | None = None) -> FeatureStore:
        """The one batched pass over the image set (logits, penultimate features, layer stats).

        Computed once per run (and cached across runs); see :mod:`reportgen.features.compute`.
        """
        from .features.compute import compute_features

        key = tuple(sorted(set(layers or [])))
        have = self.feature_store
        if have is not None and set(key) <= set(have.layers):
            return have
        wanted = sorted(set(key) | set(have.layers if have is not None else ()))
        self.feature_store = compute_features(self, wanted)
        return self.feature_store

    def cache_key(self, *parts: Any) -> str:
        """Digest of the model, preprocessing, image set and ``parts``."""
        return digest(self.model_hash, self.pre.to_dict(), self.images.content_hash(), *parts)

    def memo(self, key: MemoKey[T], fn: Callable[[], T]) -> T:
        """The value of ``key`` in this run: ``fn()`` on first use, kept for the run (shared between sections).
        ``key`` is a :class:`MemoKey` declared beside the value's producer; a string is refused."""
        if not isinstance(key, MemoKey):
            raise TypeError(f"ctx.memo takes a MemoKey (declared beside the code that produces the value), "
                            f"not {type(key).__name__} {key!r}")
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, non_blocking=True)

