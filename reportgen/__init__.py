"""reportgen: a static HTML model-card gallery of the classic CNN visualisation techniques.

Python API::

    from reportgen import ModelOptions, RunOptions, build_report, compare_reports
    result = build_report("resnet18", images="photos/", out="report/", weights="resnet18.pth")
    print(result.index)
    # one options object for both; per-model values of a comparison in model_a / model_b
    opts = RunOptions(preset="minimal", model=ModelOptions(input_size=32, resize=32))
    compare_reports("a.py:net", "b.py:net", "cifar/", "cmp/", opts,
                    model_b=ModelOptions(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
"""

__version__ = "0.1.0"

from .options import ModelOptions, RunOptions  # noqa: E402  (light: no torch)


def build_report(*args, **kwargs):
    """See :func:`reportgen.build.build_report`."""
    from .build import build_report as _build

    return _build(*args, **kwargs)


def compare_reports(*args, **kwargs):
    """See :func:`reportgen.compare.compare_reports`."""
    from .compare import compare_reports as _compare

    return _compare(*args, **kwargs)


__all__ = ["build_report", "compare_reports", "RunOptions", "ModelOptions", "__version__"]
