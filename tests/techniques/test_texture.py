"""The texture technique (reportgen/techniques/texture.py): its own tests."""

from __future__ import annotations

import numpy as np


def test_texture_note_names_flat_and_unmatched_syntheses():

    from reportgen.techniques.texture import _gram_note

    names = ["brick with 1 layer(s)", "brick with 2 layer(s)", "grass with 1 layer(s)"]
    note = _gram_note(np.array([0.05, 0.9, 0.8]), np.array([0.002, 0.6, 0.01]), names)
    assert note.kind == "warning" and note.text.startswith("1 of 3 Gram syntheses")
    assert "Flat, not a texture: brick with 1 layer(s) (contrast 5%" in note.text
    assert "Statistics not reached: brick with 2 layer(s) (Gram err 0.600)" in note.text
    noise = _gram_note(np.array([0.9]), np.array([0.0]), names[:1], hist=np.array([0.8]))
    assert noise.kind == "warning" and noise.text.startswith("0 of 1")
    assert "Colours unlike the source's (histogram distance): brick with 1 layer(s) (0.80)" in noise.text
    good = _gram_note(np.array([0.9, 0.8]), np.array([0.01, 0.02]), names[:2], hist=np.array([0.1, 0.2]))
    assert good.kind == "info" and "Flat" not in good.text and good.text.startswith("2 of 2")
