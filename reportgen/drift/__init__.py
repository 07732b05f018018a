"""Explanation drift: whether two runs' attribution maps of the same images differ (``maps`` keeps them small,
``compute`` compares them, ``section`` shows the comparison). Light on purpose: importing this package imports
nothing else, so a technique can use :mod:`.maps` without pulling in the comparison."""
