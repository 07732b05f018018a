"""Image synthesis on top of optvis: style/texture kit, non-parametric synthesis, the transform net."""
