"""The HTML renderer: a :class:`reportgen.report.Report` -> a static, self-contained "model card gallery".

Jinja templates live in the top-level ``templates/`` folder (one per block type under ``elements/``, pages under
``layouts/``), themes in ``themes/`` (see :mod:`reportgen._resources` for where they are found when installed).
This package never imports torch, so a cached report can be re-rendered anywhere.

* :func:`render_report` writes ``index.html``, ``sections/<id>.html`` and content-hashed ``assets/`` into
  ``out_dir`` (or one ``index.html`` with everything inlined when ``single_file``) and returns the manifest.
* :func:`available_themes` lists the built-in theme names (folders under ``themes/``); :func:`load_theme` also
  takes a path to a theme folder of one's own (see :mod:`.themes`: ``extends``, variables, template overrides).
"""

from __future__ import annotations

from .html import CSP, render_report
from .themes import available_themes, check_theme, load_theme, theme_label

__all__ = ["render_report", "available_themes", "check_theme", "load_theme", "theme_label", "CSP"]
