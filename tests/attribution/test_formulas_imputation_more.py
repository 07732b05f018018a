"""ROAD's noisy linear imputation (``attribution/_imputation.py``) beyond test_formulas_imputation.py: the error
message for an image with every pixel removed, word for word (mutation testing, docs/mutation.md)."""

from __future__ import annotations

import numpy as np
import pytest

from reportgen.attribution._imputation import noisy_linear_imputation


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (4, 4)])
def test_everything_removed_is_refused_with_the_exact_message(shape):
    """No kept pixel: nothing to impute from; the message is exactly this sentence (no noise is drawn, no solve)."""
    x = np.random.default_rng(0).random((2, *shape))
    with pytest.raises(ValueError, match=r"^noisy linear imputation needs at least one kept pixel$"):
        noisy_linear_imputation(x, np.ones(shape, bool), noise=0.0)
