"""Robustness to ordinary image shifts: the common corruptions (``corruptions.py``: pure batched tensor functions
and the paper's parameters) and their measurement on a classifier (``evaluate.py``: batched passes, flip rates,
intervals, the most damaging corruption)."""
