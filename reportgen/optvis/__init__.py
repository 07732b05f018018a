"""Image optimisation shared by the pixel-space techniques (lucent's ``optvis`` in small).

* :mod:`.objectives` — what to maximise (class logit, channel, neuron, DeepDream layer norm, L2/TV
  penalties), composable with ``+``, ``-`` and scalar ``*``;
* :mod:`.param` — how the image is parameterised (pixels in [0, 1], clamped or through a sigmoid);
* :mod:`.transforms` — seeded, differentiable jitter / pad / scale / rotate (and a Gaussian blur);
* :mod:`.regularizers` — Yosinski et al.'s between-step regularisers (blur, clip small norms,
  clip small contributions, L2 decay);
* :func:`render` — the loop, returning :class:`OptResult` (images, per-step objective history).

Example::

    from reportgen import optvis
    from reportgen.optvis import objectives as obj, transforms as T, regularizers as R
    p = optvis.pixel_image(batch=2, size=128, init="noise", generator=g)
    res = optvis.render(ctx.pixel_model, obj.class_logit([1, 2]) - 1e-3 * obj.l2(), p,
                        transforms=[T.jitter(8)], regularizers=[R.BlurEvery(4, 0.5)],
                        steps=100, lr=0.05, generator=g, layer_root=ctx.model)
"""

from . import objectives, param, regularizers, transforms
from .objectives import Objective, objective
from .param import ImageParam, PixelImage, pixel_image
from .render import OptResult, normalize_gradient, render

__all__ = [
    "objectives", "param", "regularizers", "transforms", "Objective", "objective", "ImageParam", "PixelImage",
    "pixel_image", "OptResult", "normalize_gradient", "render",
]
