"""Time budget: estimate each section's seconds before it runs, and scale its options down to fit ``--budget``.

:mod:`.cost` measures the model once (a timed probe batch: forward and forward+backward seconds per image, beside
the MAC count) and holds each technique's cost formula; :mod:`.plan` turns the estimates into a plan (what was
reduced, from what to what) and applies it to the run's configuration; :mod:`.cli` holds ``--budget`` and ``--plan``.
"""
