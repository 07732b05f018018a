"""User-facing errors. The CLI prints their message (no traceback) and exits with status 2."""


class ReportgenError(Exception):
    """Base class: a problem with the user's input, explained in the message."""


class ConfigError(ReportgenError):
    """Bad preset, TOML file or option value."""


class ModelError(ReportgenError):
    """The model spec cannot be loaded, or the model is not an image classifier."""


class LayerError(ReportgenError, KeyError):
    """A dotted layer name that does not exist (the message lists close names)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ImageSetError(ReportgenError):
    """The image folder is missing, empty, or has no readable image."""


class OutputError(ReportgenError):
    """The output folder cannot be written."""
