"""Attribution on tensors (captum-style ``attribute()``): functions of ``(model, x, target)``, no RunContext.

``model`` maps a batch ``x`` (B x C x H x W) to logits (B x K); ``target`` is an int or a length-B
sequence/tensor of class indices. Every function is batched, restores the model's train/eval and
``requires_grad`` flags (:mod:`reportgen.inspection.hooks`) and leaves no hook behind. Drawing the results is
:mod:`reportgen.attribution.visualization` (numpy only).

* :mod:`.gradients` — :func:`gradient` / :func:`saliency` (Simonyan et al. 2014), :func:`smoothgrad`
  (Smilkov et al. 2017), :func:`integrated_gradients` (Sundararajan et al. 2017) with its completeness check.
* :mod:`.guided` — :func:`guided`: the gradient under the backprop / deconvnet / guided ReLU rule
  (Zeiler & Fergus 2014; Springenberg et al. 2015); :func:`rule_gradients` for unit targets.
* :mod:`.occlusion` — :func:`occlusion` / :func:`occlusion_grid` (Zeiler & Fergus 2014), exact incremental
  inference where the model allows it (Nakandala et al. 2019).
* :mod:`.cam` — :func:`gradcam`, :func:`gradcam_plus_plus`, :func:`guided_gradcam`.
* :mod:`.metrics` — :func:`rank_correlation`, :func:`ssim` to compare maps.
"""

from .cam import (CamChoice, NoCamLayer, activation_and_gradient, choose_cam_layer, gradcam, gradcam_plus_plus,
                  guided_gradcam, last_spatial_block, normalise, upsample)
from .gradients import (
    IGResult, Target, class_scores, gradient, integrated_gradients, saliency, smoothgrad, to_map,
)
from .guided import class_target, guided, guided_backprop, rule_gradients, unit_target
from .metrics import rank_correlation, ssim
from .occlusion import coverage_average, occlusion, occlusion_grid, window_positions

__all__ = [
    "Target", "class_scores", "gradient", "saliency", "to_map", "smoothgrad", "IGResult", "integrated_gradients",
    "guided", "guided_backprop", "rule_gradients", "class_target", "unit_target",
    "occlusion", "occlusion_grid", "coverage_average", "window_positions",
    "gradcam", "gradcam_plus_plus", "guided_gradcam", "upsample", "normalise", "last_spatial_block",
    "CamChoice", "NoCamLayer", "choose_cam_layer",
    "activation_and_gradient",
    "rank_correlation", "ssim",
]
