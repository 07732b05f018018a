"""Calibration of a classifier's probabilities: whether its confidence matches how often it is right.

:mod:`.metrics` computes (numpy in, numbers out, no torch): reliability bins and the expected calibration
error with equal-width or equal-mass bins (Naeini et al. 2015; Nixon et al. 2019), NLL, the multi-class Brier
score and temperature scaling (Guo et al. 2017). :mod:`.diagram` draws the reliability diagram. The
``calibration`` technique (every build) and ``compare``'s calibration section both use them.
"""

from .metrics import (
    Calibration, TemperatureFit, brier, calibration, ece, fit_temperature, nll, reliability, softmax,
)

__all__ = ["Calibration", "TemperatureFit", "brier", "calibration", "ece", "fit_temperature", "nll", "reliability",
           "softmax"]
