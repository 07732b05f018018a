"""reportgen: a static HTML model-card gallery of the classic CNN visualisation techniques.

Python API::

    from reportgen import build_report
    result = build_report("resnet18", images="photos/", out="report/", weights="resnet18.pth")
    print(result.index)
"""

__version__ = "0.1.0"


def build_report(*args, **kwargs):
    """See :func:`reportgen.build.build_report`."""
    from .build import build_report as _build

    return _build(*args, **kwargs)


__all__ = ["build_report", "__version__"]
