"""What every loader returns (:class:`LoadedModel`) and the SPEC forms they accept."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..preprocess import Preprocessing


SPEC_FORMS = """Accepted model SPEC forms: demo (the embedded Fashion-MNIST CNN); a torchvision name such as
resnet18 (weights from --weights FILE or the torch hub cache); path/to/file.py:factory or package.module:factory
(called with no arguments, returns a torch.nn.Module; --weights FILE fills it); a TorchScript (.pt, .ts) or
torch.export (.pt2) archive; timm:NAME (pip install reportgen[timm]; --weights FILE for trained weights); a
Hugging Face folder written by save_pretrained (pip install reportgen[hf]). reportgen never downloads."""


@dataclass
class LoadedModel:
    """A loaded model with what is known about how to feed it."""

    model: nn.Module  # eval mode, on the CPU
    spec: str
    kind: str  # "torchvision", "factory", "torchscript", "export", "module", "demo", "timm", "huggingface"
    preprocessing: Preprocessing | None = None  # known preprocessing (weights metadata, factory, demo)
    class_names: list[str] | None = None
    weights: str | None = None  # path of the weights file used
    notes: list[str] = field(default_factory=list)  # human notes shown in the report
    fixed_input_size: int | None = None  # input side the model only accepts (exported programs)
    channels: int | None = None  # input channels when known (1: greyscale), else found from the first conv
    channels_source: str = ""  # where ``channels`` came from
    static_batch: bool = False  # the model only takes one image at a time (exported with batch 1)
    weights_source: str = ""  # where the weights came from when no file is named (default: by kind, see below)
    untrained: str = ""  # why the loader knows the weights are not trained (a random initialisation), else ""

    def weights_text(self) -> str:
        """Where the weights came from, in words, when ``weights`` names no file."""
        return self.weights_source or WEIGHTS_BY_KIND.get(self.kind, "none given")


#: where a model's weights come from when no file is named, by loader kind
WEIGHTS_BY_KIND = {
    "factory": "as the factory built them (no --weights given)",
    "torchscript": "inside the TorchScript archive",
    "export": "inside the torch.export archive",
    "module": "those of the nn.Module given",
}


def input_channels(model: nn.Module) -> tuple[int | None, str]:
    """Input channels from the first convolution's ``in_channels`` (None when there is no such layer)."""
    from ..inspection.layers import first_conv, resolve_layer

    try:
        name = first_conv(model)
        if name is None:
            return None, ""
        n = int(resolve_layer(model, name).in_channels)
    except Exception:  # exotic modules: assume RGB
        return None, ""
    return n, f"in_channels of the first convolution ({name})"
