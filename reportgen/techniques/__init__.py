"""One module per technique; each registers itself with :func:`reportgen.registry.technique`.

:func:`reportgen.registry.load_all` imports every module in this package.
"""
